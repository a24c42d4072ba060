"""Using finished runs: prediction and generation, many adapters on one backbone, merging, model cards."""
