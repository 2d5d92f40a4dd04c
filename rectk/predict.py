"""A finished run, loaded from its directory alone, and its recommendations.

``load_run`` restores the best validation step's weights (``params`` and ``rest`` only: the
optimiser state is never read) into a model shaped from the run's recipe and vocabulary; the
original data is not needed. ``recommend`` ranks the unseen items for a known learner or for a
new learner's raw history.
"""

from __future__ import annotations

import contextlib
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
from rectk.model import run_model, trainable_filter
from rectk.rerank.chain import rerank
from rectk.rerank.side import ItemSide
from rectk.rundir import RunDir


@dataclasses.dataclass(frozen=True, kw_only=True)
class Loaded:
    """A run: its recipe, best weights, vocabulary and learners' histories (a run still
    training, or whose best checkpoint is damaged, serves another step: see ``notice``)."""

    cfg: RunConfig
    weights: Any  # {"params", "rest"} at ``step``
    vocab: dict
    item_index: dict[str, int]  # raw item id -> model id
    titles: tuple[str, ...] | None
    history: Sequences
    num_items: int
    step: int  # the checkpoint loaded: the best validation step
    best_step: int = -1  # the best validation step so far (-1: none yet)
    finished: bool = True  # training ran to its end (results.json written)
    # jitted ``(k, weights, batch) -> (scores, ids)``, compiled once per k and history length
    top_k: Any
    item_table_vd: Any = None  # the model's item vectors [V, D] (rerankers' embeddings)
    bound: Any = None  # the scoring-only ``steps.Bound`` (model graph) the weights fit
    side: ItemSide | None = None  # item side information (items.npz), for reranker chains

    @property
    def notice(self) -> str | None:
        """What whoever is served from this run should know, or None: that training has not
        finished (a checkpoint from the middle of training is served), or that the best
        validation step's checkpoint is damaged (another is served)."""
        if not self.finished:
            if self.step == self.best_step:
                which = "the best validation so far"
            elif self.best_step < 0:
                which = "the latest checkpoint: no validation yet"
            else:
                which = f"the best validation so far, step {self.best_step}, is damaged"
            return f"training has not finished: serving step {self.step} ({which})"
        if self.best_step >= 0 and self.step != self.best_step:
            return (
                f"serving step {self.step}: the checkpoint of the best validation step "
                f"({self.best_step}) is damaged"
            )
        return None

    def learner(self, user: str) -> int:
        """The model id of a learner of the run's data; an unknown one is a ``RectkError``."""
        try:
            return self.vocab["user_ids"].index(user) + 1
        except ValueError:
            raise RectkError(
                f"unknown learner {user!r}: not in this run's data "
                "(use --history c1,c2,... for a new learner)"
            ) from None

    def require_side(self) -> ItemSide:
        """The run's item side information, or a ``RectkError`` saying how to get it."""
        if self.side is None:
            raise RectkError(
                "this run directory has no items.npz (item side information for rerankers): "
                "it was trained by an older rectk; train it again to rerank"
            )
        return self.side


def load_run(path: str | Path) -> Loaded:
    """The run in directory ``path``, at its best validation step (else its latest; a step
    whose checkpoint is damaged gives way to the newest intact one, and is moved aside unless
    the run is training)."""
    rd = RunDir(path)
    record = rd.record()
    cfg: RunConfig = recipe_lib.load(rd.path / "recipe.toml").config
    if not cfg.task.recommends:
        raise RectkError(
            f"{rd.path} is a run of task {recipe_lib.plugin_name(cfg.task)!r}, which recommends "
            "no items (knowledge tracing: rectk evaluate, rectk assess)"
        )
    vocab, catalogue = rd.load_vocab()
    num_items = len(vocab["item_ids"])

    make = functools.partial(
        run_model,
        cfg,
        vocab_size=num_items + 1,
        num_users=len(vocab["user_ids"]) + 1,
        catalogue=catalogue,
    )

    abstract = nnx.eval_shape(make)
    trainable = trainable_filter(abstract)
    graphdef, params, rest = nnx.split(abstract, trainable, ...)  # type: ignore[misc]
    step, best, weights = best_weights(rd, cfg, record, params, rest)
    bound = steps.Bound(graphdef=graphdef, library_dots=abstract.library_dots)
    chunk = item_chunk(cfg.eval.item_chunk, num_items)
    top_k = jit_inference(
        functools.partial(steps.model_top_k, bound, num_items, chunk),
        library_dots=bound.library_dots,
        static_argnums=0,
    )
    table = jax.jit(lambda w: bound.model(w["params"], w["rest"]).item_table())(weights)
    return Loaded(
        item_table_vd=table,
        bound=bound,
        side=ItemSide.load(rd.path),
        cfg=cfg,
        weights=weights,
        vocab=vocab,
        item_index={r: i + 1 for i, r in enumerate(vocab["item_ids"])},
        titles=catalogue.titles if catalogue else None,
        history=rd.load_history(),
        num_items=num_items,
        step=step,
        best_step=best,
        finished=rd.finished,
        top_k=top_k,
    )


def best_weights(rd: RunDir, cfg: RunConfig, record: dict, params, rest) -> tuple[int, int, Any]:
    """``(step, best_step, {"params", "rest"})``: a run's weights at its best validation step
    (else its latest), shaped as the abstract ``params`` and ``rest``, on one device. A damaged
    checkpoint gives way to the newest intact one, and is moved aside unless the run is
    training; a run without checkpoints is a ``RectkError``."""
    device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    target = jax.tree.map(
        lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=device),
        {"params": params, "rest": rest},
    )
    ckpt = Checkpoints(
        rd.checkpoints,
        keep=cfg.train.keep_checkpoints,
        recipe_hash=record["recipe_hash"],
        repair=rd.lock_owner() is None,  # a training's checkpoints are left where they are
    )
    try:
        latest = ckpt.latest_step()
        if latest is None:
            raise RectkError(f"{rd.path} has no checkpoint yet: train it first (rectk run)")
        best = int(ckpt.restore_meta(latest).get("best_step", -1))
        if rd.finished:  # its results name the best step even if that checkpoint is damaged
            with contextlib.suppress(RectkError, AttributeError, TypeError, ValueError):
                best = int(rd.read_json("results.json").get("best_step", best))
        step, weights = ckpt.restore_first(
            [best if best >= 0 else latest, *sorted(ckpt.all_steps(), reverse=True)],
            lambda s: ckpt.restore_weights(s, target),
        )
    finally:
        ckpt.close()
    return step, best, weights


def recommend(
    run: Loaded,
    *,
    user: str | None = None,
    history: list[str] | None = None,
    k: int = 10,
    chain: str | None = None,
    explain: bool = False,
) -> list[dict]:
    """Top-``k`` unseen items for a known learner or for a raw history of item ids.

    ``chain``: the reranker chain (a name in the recipe's ``rerank.chains``) that turns the
    model's top ``rerank.candidates`` into the final ``k``; None = the recipe's
    ``rerank.use``; "" or "none" = the model's own ranking.
    ``explain``: add to each item the history items that most raise its score, with their
    weights and a sentence (``rectk.explain.Explainer.annotate``).
    """
    if (user is None) == (history is None):
        raise RectkError("give exactly one of --user or --history")
    if user is not None:
        items = run.history.row(run.learner(user))
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
    stages = _chain(run, chain, k)
    if stages:
        cands, ids = run.top_k(run.cfg.rerank.candidates, run.weights, batch)
        side = run.require_side()
        ctx = side.context(batch["seen"], run.item_table_vd)
        ids, scores = rerank(stages, ids, cands, ctx, k)
    else:
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
    if explain:
        from rectk.explain import Explainer

        return Explainer(run).annotate(items, out)
    return out


def _chain(run: Loaded, name: str | None, k: int) -> tuple:
    """The stages of chain ``name`` (see ``recommend``), group names resolved; () = none."""
    cfg = run.cfg.rerank
    name = cfg.use if name is None else name
    if name in ("", "none"):
        return ()
    if name not in cfg.chains:
        known = ", ".join(cfg.chains) or "none declared in the run's recipe"
        raise RectkError(f"--chain {name!r}: no such reranker chain (chains: {known}; or none)")
    if k > cfg.candidates:
        raise RectkError(
            f"--k {k} exceeds rerank.candidates = {cfg.candidates}: a chain picks its "
            "final k among that many candidates"
        )
    return run.require_side().bind(cfg.chains[name], name)
