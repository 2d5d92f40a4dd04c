"""Data: containers, readers, splits, input pipelines, the learner simulator."""
