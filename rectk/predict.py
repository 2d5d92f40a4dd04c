"""A finished run, loaded from its directory alone, and its recommendations.

``load_run`` restores the best validation step's weights (``params`` and ``rest`` only: the
optimiser state is never read) into a model shaped from the run's recipe and vocabulary; the
original data is not needed. ``recommend`` ranks the unseen items for a known learner or for a
new learner's raw history; ``recommend_many`` does so for many learners, in fixed-size batches.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from collections.abc import Sequence
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
from rectk.data.pipeline import left_pad, padded_length
from rectk.data.split import Sequences
from rectk.errors import DataError, RectkError
from rectk.evaluate import item_chunk
from rectk.model import run_model, trainable_filter
from rectk.rerank.chain import rerank
from rectk.rerank.side import ItemSide
from rectk.rundir import RunDir

_SHOWN = 5  # unknown learners named in an error


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
    table = jax.jit(functools.partial(steps.item_table, bound))(weights)
    if abstract.encodes_items:  # a fine-tuned text encoder: rank against its table, encoded once
        top_k = functools.partial(top_k, table_vd=table)
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
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
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
        items = _learner_items(run, user)
    else:
        items = _history_items(run, history or [], "--history")
    _check_k(run, k)
    stages = _chain(run, chain, k)
    scores, ids = _top_k(run, _batch(run, [items], _seen_len([items])), k, stages)
    out = rows(run, ids[0], scores[0])
    if explain:
        from rectk.explain import Explainer

        return Explainer(run).annotate(items, out)
    return out


def recommend_many(
    run: Loaded,
    *,
    users: Sequence[str] | None = None,
    histories: Sequence[Sequence[str]] | None = None,
    k: int = 10,
    chain: str | None = None,
    batch_size: int = 256,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` unseen items for many learners: ``(ids_nk, scores_nk)``, model item ids
    (``rows`` names them; 0 with score -inf marks an empty slot) in the order given.

    ``users``: learner ids of the run's data; ``histories``: raw item-id histories of (new)
    learners; neither: every learner of the run. ``chain`` as in ``recommend``. Learners go
    through the jitted top-k (and the chain) ``batch_size`` at a time, the last batch padded,
    so one shape compiles. Each learner's list is the one ``recommend`` gives (its scores to
    float32 rounding: XLA's kernels for other batch sizes sum in another order), except under
    a chain that looks across learners (exposure), which amortises over each batch.

    Raises:
      RectkError: an unknown learner (the first few named) or item, or a ``k`` or ``chain``
        ``recommend`` refuses too.
    """
    if users is not None and histories is not None:
        raise RectkError("give users or histories, not both")
    if histories is not None:
        seqs = [_history_items(run, h, f"histories[{n}]") for n, h in enumerate(histories)]
    else:
        seqs = [run.history.row(u) for u in _learners(run, users)]
    if batch_size < 1:
        raise RectkError(f"the batch size must be at least 1, got {batch_size}")
    _check_k(run, k)
    stages = _chain(run, chain, k)
    ids_nk = np.zeros((len(seqs), k), np.int32)
    scores_nk = np.full((len(seqs), k), -np.inf, np.float32)
    if not seqs:
        return ids_nk, scores_nk
    size, seen_len = min(batch_size, len(seqs)), _seen_len(seqs)
    from tqdm import tqdm

    bar = tqdm(
        total=len(seqs),
        disable=not progress,
        desc="recommend",
        unit="learner",
        dynamic_ncols=True,
        leave=False,
    )
    with bar:
        for start in range(0, len(seqs), size):
            part = seqs[start : start + size]
            real = len(part)
            part = part + [part[0]] * (size - real)  # pad: one shape for every batch
            scores, ids = _top_k(run, _batch(run, part, seen_len), k, stages, real=real)
            ids_nk[start : start + real] = ids[:real]
            scores_nk[start : start + real] = scores[:real]
            bar.update(real)
    return ids_nk, scores_nk


def rows(run: Loaded, ids_k: np.ndarray, scores_k: np.ndarray) -> list[dict]:
    """One learner's list as ``{"item", "title", "score"}`` rows, up to its first empty
    slot."""
    out = []
    for s, i in zip(np.asarray(scores_k), np.asarray(ids_k), strict=False):
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


def table(
    run: Loaded, learners: Sequence[Any], ids_nk: np.ndarray, scores_nk: np.ndarray
) -> dict[str, np.ndarray]:
    """``recommend_many``'s lists as columns: ``learner`` (from ``learners``), ``rank``
    (1-based), ``item``, ``title``, ``score``; a row per slot up to a list's first empty
    one (as ``rows``), learner by learner."""
    keep_nk = np.cumprod(np.isfinite(scores_nk), axis=1).astype(bool)
    n, r = np.nonzero(keep_nk)
    ids = ids_nk[n, r] - 1
    titles = np.asarray(run.titles if run.titles else [""] * run.num_items, object)
    return {
        "learner": np.asarray(learners, object)[n],
        "rank": (r + 1).astype(np.int64),
        "item": np.asarray(run.vocab["item_ids"], object)[ids],
        "title": titles[ids],
        "score": scores_nk[n, r].astype(np.float64),
    }


def _learner_items(run: Loaded, user: str) -> np.ndarray:
    """A known learner's history; none is a ``DataError``."""
    items = run.history.row(run.learner(user))
    if len(items) == 0:
        raise DataError(
            f"learner {user!r} has no interactions: rectk needs at least one item to recommend from"
        )
    return items


def _history_items(run: Loaded, history: Sequence[str], who: str) -> np.ndarray:
    """A raw history as model ids; an unknown item or none is an error naming ``who``."""
    unknown = [h for h in history if h not in run.item_index]
    if unknown:
        raise RectkError(f"{who}: unknown item id(s) {', '.join(unknown)}")
    if not history:
        raise DataError(
            f"{who} has no interactions: rectk needs at least one item to recommend from"
        )
    return np.asarray([run.item_index[h] for h in history], np.int32)


def _learners(run: Loaded, users: Sequence[str] | None) -> list[int]:
    """The model ids of ``users`` (None: every learner); unknown ones are one error naming the
    first few, and a learner without history is a ``DataError``."""
    if users is None:
        ids = list(range(1, len(run.vocab["user_ids"]) + 1))
    else:
        index = {u: n + 1 for n, u in enumerate(run.vocab["user_ids"])}
        unknown = list(dict.fromkeys(u for u in users if u not in index))
        if len(unknown) == 1:
            run.learner(unknown[0])  # the single-learner message
        if unknown:
            shown = ", ".join(map(repr, unknown[:_SHOWN])) + (
                ", ..." if len(unknown) > _SHOWN else ""
            )
            raise RectkError(
                f"unknown learners {shown} ({len(unknown)} in all): not in this run's data"
            )
        ids = [index[u] for u in users]
    lengths = run.history.lengths
    empty = [u for u in ids if lengths[u] == 0]
    if empty:
        _learner_items(run, run.vocab["user_ids"][empty[0] - 1])
    return ids


def _check_k(run: Loaded, k: int) -> None:
    if not 1 <= k <= run.num_items:
        raise RectkError(f"--k must lie in 1..{run.num_items}, got {k}")


def _seen_len(seqs: Sequence[np.ndarray]) -> int:
    """The seen-item width of a batch: its longest history rounded up to 64 (few shapes)."""
    return padded_length(max(len(s) for s in seqs))


def _batch(run: Loaded, seqs: Sequence[np.ndarray], seen_len: int) -> dict[str, np.ndarray]:
    """The model's input for histories ``seqs``: left-padded to ``model.max_len`` and, as
    the items to mask, to ``seen_len``."""
    return {
        "user": np.zeros(len(seqs), np.int32),
        "input": np.stack([left_pad(s, run.cfg.model.max_len) for s in seqs]),
        "seen": np.stack([left_pad(s, seen_len) for s in seqs]),
    }


def _top_k(
    run: Loaded, batch: dict, k: int, stages: tuple, *, real: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``(scores_bk, ids_bk)`` of a batch: the model's top ``k``, or the chain ``stages`` on
    its top ``rerank.candidates``. Rows from ``real`` on are padding: their candidates are
    emptied, so that a chain looking across learners ignores them."""
    if stages:
        cands, ids = run.top_k(run.cfg.rerank.candidates, run.weights, batch)
        if real is not None and real < len(cands):
            pad_b = np.arange(len(cands)) >= real
            cands = np.where(pad_b[:, None], -np.inf, cands)
            ids = np.where(pad_b[:, None], 0, ids)
        side = run.require_side()
        ctx = side.context(batch["seen"], run.item_table_vd)
        ids, scores = rerank(stages, ids, cands, ctx, k)
    else:
        scores, ids = run.top_k(k, run.weights, batch)
    return np.asarray(scores), np.asarray(ids)


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
