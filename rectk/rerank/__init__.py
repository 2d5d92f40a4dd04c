"""Reranking on the predict path: chains of reranker plugins over the model's candidates.

``chain``/``rerank`` compose rerankers (``rectk.contracts.RerankerPlugin``);
``ItemSide`` is a run's item side information; ``evaluate_chains`` and ``sweep`` measure
chains on a finished run.
"""

from rectk.rerank.chain import across_learners, chain, requires, rerank
from rectk.rerank.side import ItemSide

__all__ = ["ItemSide", "across_learners", "chain", "requires", "rerank"]
