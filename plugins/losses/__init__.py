"""Training losses over user states, the item table and targets.

A loss config is called as ``loss(head=, user_nd=, table_vd=, target_n=, weight_n=, key=)``
and returns the weighted mean loss (a scalar). Rows with weight 0 (padding) contribute nothing.
Sampled losses draw their negatives with ``key`` (never the padding id 0) and also offer
``with_negatives(..., negatives=...)``, the same loss on given negatives. A loss may define
``prepare(*, item_counts)``: the trainer calls it once with the training count of every item
id and trains with the callable it returns.
"""

from rectk_plugins.losses.binary import BCE, BPR, GBCE, gbce_beta
from rectk_plugins.losses.common import pair_scores, weighted_mean
from rectk_plugins.losses.sampling import sample_negatives
from rectk_plugins.losses.softmax import SampledSoftmax, SoftmaxCE

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
