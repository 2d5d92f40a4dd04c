"""Rerankers: candidate lists -> final lists (the ``rerankers`` registry).

Each reranker is a frozen config (its fields are the recipe keys of its table) called as
``reranker(ids_bc, scores_bc, ctx, *, k) -> (ids_bk, scores_bk)``, pure and jit-able
(``rectk.contracts.RerankerPlugin``). ``chain`` composes them; ``rerank`` runs a chain
jit-compiled.
"""

from rectk.rerank.chain import across_learners, chain, requires, rerank

from .calibration import Calibration
from .difficulty import TargetDifficulty
from .diversity import DPP, MMR
from .exposure import Exposure
from .fair import FAIR, adjusted_mtable, fail_probability, mtable
from .filters import Dedupe, FilterSeen, Prerequisites
from .popularity import XQuAD, head_items

__all__ = [
    "DPP",
    "FAIR",
    "MMR",
    "Calibration",
    "Dedupe",
    "Exposure",
    "FilterSeen",
    "Prerequisites",
    "TargetDifficulty",
    "XQuAD",
    "across_learners",
    "adjusted_mtable",
    "chain",
    "fail_probability",
    "head_items",
    "mtable",
    "requires",
    "rerank",
]
