"""Training losses over user states, the item table and targets.

Each loss config subclasses ``rectk.contracts.LossPlugin``: it is called as
``loss(head=, user_nd=, table_vd=, target_n=, weight_n=, key=)`` and returns the weighted mean
loss (a scalar). Rows with weight 0 (padding) contribute nothing. Sampled losses draw their
negatives with ``key`` (never the padding id 0) and also offer ``with_negatives(...,
negatives=...)``, the same loss on given negatives. ``prepare(item_counts=)`` is called once
before training with the training count of every item id and returns the loss to train with
(the sampled softmax's popularity sampler keeps the counts).
"""

from .binary import BCE, BPR, GBCE, gbce_beta
from .common import pair_scores, weighted_mean
from .sampling import sample_negatives
from .softmax import SampledSoftmax, SoftmaxCE

__all__ = [
    "BCE",
    "BPR",
    "GBCE",
    "SampledSoftmax",
    "SoftmaxCE",
    "gbce_beta",
    "pair_scores",
    "sample_negatives",
    "weighted_mean",
]
