"""Sequence encoders: a learner's history -> hidden states ``[B, L, D]``."""

from . import bert4rec, bpr_mf, caser, gru4rec, mean_pool, sasrec

__all__ = ["bert4rec", "bpr_mf", "caser", "gru4rec", "mean_pool", "sasrec"]
