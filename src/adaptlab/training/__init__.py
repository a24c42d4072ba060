"""Training: the one loop, checkpoints, schedules, the learning-rate range test, and the runner that makes a run folder."""
