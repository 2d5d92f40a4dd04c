"""Data: containers, readers, splits, input pipelines."""
