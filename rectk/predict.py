"""A finished run, loaded from its directory alone, and its recommendations.

``load_run`` restores the best validation step's weights (``params`` and ``rest`` only: the
optimiser state is never read) into a model shaped from the run's recipe and vocabulary; the
original data is not needed. ``recommend`` ranks the unseen items for a known learner or for a
new learner's raw history.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Any

import jax
import numpy as np
from flax import nnx

from rectk import recipe as recipe_lib
from rectk import steps
from rectk.checkpoint import Checkpoints
from rectk.compiler import jit_inference
from rectk.config import RunConfig
from rectk.data.pipeline import left_pad
from rectk.data.split import Sequences
from rectk.errors import DataError, RectkError
from rectk.evaluate import item_chunk
from rectk.model import build_model, trainable_filter
from rectk.rundir import RunDir


@dataclasses.dataclass(frozen=True, kw_only=True)
class Loaded:
    """A finished run: its recipe, best weights, vocabulary and learners' histories."""

    cfg: RunConfig
    weights: Any  # {"params", "rest"} at ``step``
    vocab: dict
    item_index: dict[str, int]  # raw item id -> model id
    titles: tuple[str, ...] | None
    history: Sequences
    num_items: int
    step: int  # the checkpoint loaded: the best validation step
    # jitted ``(k, weights, batch) -> (scores, ids)``, compiled once per k and history length
    top_k: Any


def load_run(path: str | Path) -> Loaded:
    """The run in directory ``path``, at its best validation step (else its latest)."""
    rd = RunDir(path)
    rd.record()
    cfg: RunConfig = recipe_lib.load(rd.path / "recipe.toml").config
    vocab, catalogue = rd.load_vocab()
    num_items = len(vocab["item_ids"])

    def make():
        return build_model(
            cfg.model,
            vocab_size=num_items + 1,
            num_users=len(vocab["user_ids"]) + 1,
            catalogue=catalogue,
            rngs=nnx.Rngs(params=jax.random.key(cfg.seed)),
            mask_token=cfg.task.mask_token,
        )

    abstract = nnx.eval_shape(make)
    trainable = trainable_filter(abstract)
    graphdef, params, rest = nnx.split(abstract, trainable, ...)  # type: ignore[misc]
    device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    target = jax.tree.map(
        lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=device),
        {"params": params, "rest": rest},
    )
    ckpt = Checkpoints(rd.checkpoints, keep=cfg.train.keep_checkpoints)
    try:
        latest = ckpt.latest_step()
        if latest is None:
            raise RectkError(f"{rd.path} has no checkpoint yet: train it first (rectk run)")
        best = int(ckpt.restore_meta(latest).get("best_step", -1))
        step = best if best >= 0 else latest
        weights = ckpt.restore_weights(step, target)
    finally:
        ckpt.close()
    bound = steps.Bound(graphdef=graphdef, library_dots=abstract.library_dots)
    chunk = item_chunk(cfg.eval.item_chunk, num_items)
    top_k = jit_inference(
        functools.partial(steps.model_top_k, bound, num_items, chunk),
        library_dots=bound.library_dots,
        static_argnums=0,
    )
    return Loaded(
        cfg=cfg,
        weights=weights,
        vocab=vocab,
        item_index={r: i + 1 for i, r in enumerate(vocab["item_ids"])},
        titles=catalogue.titles if catalogue else None,
        history=rd.load_history(),
        num_items=num_items,
        step=step,
        top_k=top_k,
    )


def recommend(
    run: Loaded, *, user: str | None = None, history: list[str] | None = None, k: int = 10
) -> list[dict]:
    """Top-``k`` unseen items for a known learner or for a raw history of item ids."""
    if (user is None) == (history is None):
        raise RectkError("give exactly one of --user or --history")
    if user is not None:
        try:
            u = run.vocab["user_ids"].index(user) + 1
        except ValueError:
            raise RectkError(
                f"unknown learner {user!r}: not in this run's data "
                f"(use --history c1,c2,... for a new learner)"
            ) from None
        items = run.history.row(u)
    else:
        unknown = [h for h in history or [] if h not in run.item_index]
        if unknown:
            raise RectkError(f"--history: unknown item id(s) {', '.join(unknown)}")
        items = np.asarray([run.item_index[h] for h in history or []], np.int32)
    if len(items) == 0:
        who = f"learner {user!r}" if user is not None else "--history"
        raise DataError(
            f"{who} has no interactions: rectk needs at least one item to recommend from"
        )
    if not 1 <= k <= run.num_items:
        raise RectkError(f"--k must lie in 1..{run.num_items}, got {k}")
    seen_len = -(-len(items) // 64) * 64
    batch = {
        "user": np.asarray([0], np.int32),
        "input": left_pad(items, run.cfg.model.max_len)[None],
        "seen": left_pad(items, seen_len)[None],
    }
    scores, ids = run.top_k(k, run.weights, batch)
    out = []
    for s, i in zip(np.asarray(scores[0]), np.asarray(ids[0]), strict=False):
        if not np.isfinite(s):
            break
        out.append(
            {
                "item": run.vocab["item_ids"][int(i) - 1],
                "title": run.titles[int(i) - 1] if run.titles else "",
                "score": float(s),
            }
        )
    return out
