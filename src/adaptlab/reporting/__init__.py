"""Comparing strategies: comparisons, multi-stage pipelines, learning curves, and the report."""
