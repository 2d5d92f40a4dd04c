"""Sequence encoders: a learner's history -> hidden states ``[B, L, D]``."""

from rectk_plugins.encoders import sasrec

__all__ = ["sasrec"]
