"""Measuring: task metrics, generation, forgetting, cost (memory, size, versions), episodic evaluation, diagnosis."""
