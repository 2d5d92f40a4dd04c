"""Reranker chains on a finished run: retrieve each learner's top C candidates once, turn
them into final lists of K through each chain, and report accuracy and beyond-accuracy
metrics of the final lists side by side with the model's own top K.

Retrieval is the chunked top-k over the whole catalogue with seen items excluded (never a
learners x items matrix); each chain runs jit-compiled over fixed-size batches of learners
(``rerank.batch_size``; a chain that looks across learners amortises over one batch).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np

from rectk import registry
from rectk.contracts import RerankerPlugin
from rectk.data.pipeline import eval_batches, left_pad, seen_length
from rectk.data.split import EvalSet
from rectk.errors import RectkError
from rectk.ranking import metrics_from_ranks
from rectk.rerank.chain import rerank
from rectk.rerank.side import ItemSide

if TYPE_CHECKING:
    from rectk.predict import Loaded

MODEL = "model"  # the row of the model's own top-K in a report


@dataclasses.dataclass(frozen=True)
class Candidates:
    """Each learner's top C unseen items by the model, best first (NumPy)."""

    ids_nc: np.ndarray
    scores_nc: np.ndarray
    history_nh: np.ndarray  # 0-padded on the left
    target_n: np.ndarray  # the held-out item (0 = none, as for a learner being served)

    def __len__(self) -> int:
        return int(self.ids_nc.shape[0])


def retrieve(run: Loaded, examples: EvalSet, num: int, batch_size: int = 256) -> Candidates:
    """The model's top ``num`` unseen items for every example of ``examples``."""
    if not 1 <= num <= run.num_items:
        raise RectkError(f"rerank.candidates must lie in 1..{run.num_items}, got {num}")
    n = len(examples)
    width = seen_length(examples)
    ids = np.zeros((n, num), np.int32)
    scores = np.full((n, num), -np.inf, np.float32)
    batches = eval_batches(
        examples, max_len=run.cfg.model.max_len, batch_size=batch_size, seen_len=width
    )
    pending = [
        run.top_k(num, run.weights, {k: b[k] for k in ("user", "input", "seen")}) for b in batches
    ]
    for b, (s, i) in zip(batches, pending, strict=True):
        rows = b["index"][b["valid"]]
        scores[rows] = np.asarray(s)[b["valid"]]
        ids[rows] = np.asarray(i)[b["valid"]]
    hist = np.stack([left_pad(examples.hist.row(r), width) for r in range(n)]) if n else None
    if hist is None:
        hist = np.zeros((0, width), np.int32)
    return Candidates(
        ids_nc=ids, scores_nc=scores, history_nh=hist, target_n=np.asarray(examples.target)
    )


def final_lists(
    stages: Sequence[RerankerPlugin],
    cands: Candidates,
    side: ItemSide,
    item_emb_vd: Any,
    *,
    k: int,
    batch_size: int,
) -> np.ndarray:
    """``[N, k]`` final lists of the chain ``stages`` (0 = an empty slot)."""
    n, c = cands.ids_nc.shape
    if k > c:
        raise RectkError(f"rerank.k = {k} exceeds rerank.candidates = {c} (K <= C)")
    pad = -n % batch_size
    ids = np.pad(cands.ids_nc, ((0, pad), (0, 0)))
    scores = np.pad(cands.scores_nc, ((0, pad), (0, 0)), constant_values=-np.inf)
    hist = np.pad(cands.history_nh, ((0, pad), (0, 0)))
    ctx = side.context(hist[:batch_size], item_emb_vd)
    out = []
    for lo in range(0, n + pad, batch_size):
        rows = slice(lo, lo + batch_size)
        ids_bk, _ = rerank(
            tuple(stages),
            jnp.asarray(ids[rows]),
            jnp.asarray(scores[rows]),
            ctx._replace(history_bh=jnp.asarray(hist[rows])),
            k,
        )
        out.append(ids_bk)
    return np.concatenate([np.asarray(jax.device_get(x)) for x in out])[:n] if out else ids[:, :k]


def report(
    ids_nk: np.ndarray,
    cands: Candidates,
    side: ItemSide,
    item_emb_vd: Any,
    *,
    accuracy: Sequence[str],
    beyond: Sequence[str],
) -> dict[str, float]:
    """Accuracy (of the held-out targets within the lists) and list metrics, at K."""
    k = ids_nk.shape[1]
    hit_nk = (ids_nk == cands.target_n[:, None]) & (ids_nk > 0)
    ranks = np.where(hit_nk.any(1), hit_nk.argmax(1), k)
    out = metrics_from_ranks(ranks, [k], accuracy)
    lists = side.lists(ids_nk, cands.target_n, cands.history_nh, item_emb_vd)
    for name in beyond:
        value = registry.list_metrics.get(name)(lists, k)
        if value is not None:
            out[f"{name}@{k}"] = float(value)
    return out


def evaluate_chains(
    run: Loaded,
    examples: EvalSet,
    chains: dict[str, tuple[RerankerPlugin, ...]] | None = None,
) -> dict[str, dict[str, float]]:
    """``{"model": metrics, chain name: metrics, ...}`` on ``examples``: the model's own top
    K and each chain's final lists (``chains``: the recipe's by default)."""
    cfg = run.cfg.rerank
    side = run.require_side()
    chains = dict(cfg.chains if chains is None else chains)
    cands = retrieve(run, examples, cfg.candidates, run.cfg.eval.batch_size)
    emb = run.item_table_vd
    kwargs = {"accuracy": run.cfg.eval.metrics, "beyond": cfg.metrics}
    out = {MODEL: report(cands.ids_nc[:, : cfg.k], cands, side, emb, **kwargs)}
    for name, stages in chains.items():
        bound = side.bind(tuple(stages), name)
        ids = final_lists(bound, cands, side, emb, k=cfg.k, batch_size=cfg.batch_size)
        out[name] = report(ids, cands, side, emb, **kwargs)
    return out
