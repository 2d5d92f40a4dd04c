"""What the command line runs: ``train`` -> ``evaluate`` -> ``recommend`` on one run directory."""

from __future__ import annotations

import dataclasses
import functools
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from rectk import recipe as recipe_lib
from rectk import sharding as shd
from rectk import steps
from rectk.checkpoint import Checkpoints
from rectk.compiler import jit_inference
from rectk.config import RunConfig
from rectk.data.pipeline import left_pad
from rectk.data.split import Split, split
from rectk.data.types import Dataset
from rectk.errors import DataError, RectkError
from rectk.evaluate import item_chunk
from rectk.logging import MetricsLog
from rectk.model import build_model, trainable_filter
from rectk.rundir import RunDir
from rectk.trainer import (
    baseline_scores,
    evaluator,
    fit,
    fixed_rank_fn,
    rank_fn,
    setup,
    uses_mask_token,
)
from rectk.warm_start import check_source, copy_matching, source_path


def run_dir_of(cfg: RunConfig) -> RunDir:
    return RunDir(Path(cfg.run_dir) / cfg.name)


def prepare(cfg: RunConfig) -> tuple[Dataset, Split]:
    data = cfg.data.load()
    sp = split(
        data.interactions,
        cfg.split.type,
        cfg.split.valid_fraction,
        cfg.split.test_fraction,
        cold_items=cfg.split.cold_items,
        seed=cfg.split.seed,
    )
    return data, sp


def train_and_evaluate(recipe: recipe_lib.Recipe, *, progress: bool = True, echo=print) -> dict:
    """Trains (resuming if the run exists), evaluates on the test split, writes results."""
    cfg: RunConfig = recipe.config
    t0 = time.perf_counter()
    data, sp = prepare(cfg)
    rd = run_dir_of(cfg)
    inter = data.interactions
    echo(
        f"data {data.name}: {inter.num_users} users, {inter.num_items} items, {len(inter)} "
        f"interactions (version {inter.fingerprint()}); {len(sp.valid)} valid / "
        f"{len(sp.test)} test targets"
    )
    mesh = shd.make_mesh(cfg.mesh.data, cfg.mesh.model)
    s = setup(cfg, data, sp, mesh)
    # before the run directory is written, so that a source it cannot use leaves nothing behind
    init = _warm_start_unless_resuming(cfg, s, rd, inter.fingerprint())
    rd.start(recipe, data)
    rd.save_history(sp.history)
    if init is not None:
        rd.write_json("init_from.json", init)
        echo(
            f"initialised from {init['path']} (step {init['step']}): "
            f"{len(init['copied'])} parameter arrays copied, {len(init['fresh'])} fresh"
        )
    echo(
        f"model: {sum(x.size for x in jax.tree.leaves(s.state['params'])):,} trained parameters "
        f"({sum(x.size for x in jax.tree.leaves(s.state['rest'])):,} other values); "
        f"{s.total_steps} steps ({s.steps_per_epoch} per epoch) on {mesh.shape['data']} "
        f"data-parallel device(s); run directory {rd.path}"
    )
    ckpt = Checkpoints(rd.checkpoints, keep=cfg.train.keep_checkpoints)
    log = MetricsLog(rd.path)
    try:
        result = fit(s, sp, ckpt, log, progress=progress)
        train_s = time.perf_counter() - t0
        test = evaluator(s, sp.test)
        ranks = rank_fn(s)
        compiled = _compiled_shapes(ranks)
        t1 = time.perf_counter()
        scores = {"model": test.metrics(functools.partial(ranks, result.weights))}
        eval_s = time.perf_counter() - t1
        # batch shapes validation had not compiled (a benchmark subtracts their compile time)
        eval_compilations = _compiled_shapes(ranks) - compiled
        for name in cfg.eval.baselines:
            base = baseline_scores(name, s, sp.train.items, cfg.seed)
            scores[name] = test.metrics(fixed_rank_fn(s, base))
        new_items = None
        if sp.cold is not None:
            allowed = np.zeros(inter.num_items + 1, bool)
            allowed[sp.cold_items] = True
            cold = evaluator(s, sp.cold)
            cold_ranks = rank_fn(s, allowed)
            new_items = {"model": cold.metrics(functools.partial(cold_ranks, result.weights))}
            for name in sorted({*cfg.eval.baselines, "random"}):
                base = baseline_scores(name, s, sp.train.items, cfg.seed)
                new_items[name] = cold.metrics(fixed_rank_fn(s, base, allowed))
        log.write(result.last_step, {f"test/{k}": v for k, v in scores["model"].items()})
    finally:
        log.close()
        ckpt.close()
    summary = {
        "recipe_hash": recipe.hash,
        "data_fingerprint": inter.fingerprint(),
        "best_step": result.best_step,
        "last_step": result.last_step,
        "stopped": result.stopped,
        "valid": result.valid,
        "test": scores,
        "test_targets": len(sp.test),
        "new_items": new_items,
        "new_item_targets": 0 if sp.cold is None else len(sp.cold),
        "held_out_items": len(sp.cold_items),
        "init_from": rd.read_json("init_from.json") if cfg.train.init_from else None,
        "seconds": {
            "total": round(time.perf_counter() - t0, 2),
            "train": round(train_s, 2),
            "test_eval": round(eval_s, 4),
            "test_eval_compilations": eval_compilations,
            "epoch_median": float(np.median(result.epoch_seconds))
            if result.epoch_seconds
            else None,
        },
    }
    rd.write_json("results.json", summary)
    return summary


def _warm_start_unless_resuming(cfg: RunConfig, s, rd: RunDir, fingerprint: str) -> dict | None:
    """``warm_start`` for a run with ``train.init_from`` and no checkpoint yet (a resumed run
    continues from its own checkpoint)."""
    if not cfg.train.init_from:
        return None
    if rd.checkpoints.is_dir():
        ckpt = Checkpoints(rd.checkpoints, keep=cfg.train.keep_checkpoints)
        try:
            if ckpt.latest_step() is not None:
                return None
        finally:
            ckpt.close()
    return warm_start(cfg, s, fingerprint)


def warm_start(cfg: RunConfig, s, fingerprint: str) -> dict:
    """Replaces ``s.state``'s initial weights by those of the run ``train.init_from`` names
    (see ``rectk.warm_start``); returns what was done, for the run directory."""
    path = source_path(cfg)
    if path.resolve() == run_dir_of(cfg).path.resolve():
        raise RectkError(f"train.init_from = {cfg.train.init_from!r} names this run itself")
    try:
        record = RunDir(path).record()
    except RectkError as err:
        raise RectkError(
            f"train.init_from = {cfg.train.init_from!r}: {err}; train the pre-training recipe "
            f"first, with the same run_dir"
        ) from None
    source = load_run(path)
    check_source(cfg, source.cfg, record, fingerprint)
    params, report = copy_matching(s.state["params"], source.weights["params"])
    rest, rest_report = copy_matching(s.state["rest"], source.weights["rest"])
    if not report["copied"]:
        raise RectkError(
            f"train.init_from = {cfg.train.init_from!r}: no trained parameter of this model has "
            f"a counterpart in {path} (its modules are named differently)"
        )
    s.state = {**s.state, "params": params, "rest": rest}
    return {
        "path": str(path),
        "recipe_hash": record["recipe_hash"],
        "step": source.step,
        **{k: report[k] + rest_report[k] for k in ("copied", "fresh", "unused")},
    }


def format_metrics(scores: dict[str, dict[str, float]], ks) -> str:
    """A table: one row per scorer, each metric at each k."""
    cols = list(next(iter(scores.values())))
    width = max(len(n) for n in scores) + 2
    lines = ["".ljust(width) + "".join(c.rjust(11) for c in cols)]
    for name, vals in scores.items():
        lines.append(name.ljust(width) + "".join(f"{vals[c]:11.4f}" for c in cols))
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Recommending from a finished run directory (no original data needed).
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Loaded:
    cfg: RunConfig
    weights: Any
    bound: steps.Bound
    vocab: dict
    item_index: dict[str, int]
    titles: tuple[str, ...] | None
    history: Any
    num_items: int
    chunk: int
    step: int  # the checkpoint loaded: the best validation step
    _top_k: dict = dataclasses.field(default_factory=dict)

    def top_k_fn(self, k: int):
        """The jitted top-k scorer for ``k`` (compiled once per k and history length)."""
        if k not in self._top_k:
            self._top_k[k] = jit_inference(
                functools.partial(steps.model_top_k, self.bound, self.num_items, self.chunk, k),
                library_dots=self.bound.library_dots,
            )
        return self._top_k[k]


def _compiled_shapes(jitted) -> int:
    """How many input shapes ``jitted`` has compiled (0 where JAX does not say)."""
    size = getattr(jitted, "_cache_size", None)
    return int(size()) if callable(size) else 0


def load_run(path: str | Path) -> Loaded:
    rd = RunDir(path)
    rd.record()
    recipe = recipe_lib.load(rd.path / "recipe.toml")
    cfg: RunConfig = recipe.config
    vocab, catalogue = rd.load_vocab()
    num_items = len(vocab["item_ids"])
    model = build_model(
        cfg.model,
        vocab_size=num_items + 1,
        num_users=len(vocab["user_ids"]) + 1,
        catalogue=catalogue,
        rngs=nnx.Rngs(params=jax.random.key(cfg.seed)),
        mask_token=uses_mask_token(cfg),
    )
    graphdef, params, rest = nnx.split(model, trainable_filter(model), ...)  # type: ignore[misc]
    tx = steps.make_optimizer(cfg.train, max(cfg.train.steps, 2))
    abstract = jax.eval_shape(
        lambda p, r: {"params": p, "opt": tx.init(p), "step": jnp.zeros((), jnp.int32), "rest": r},
        params,
        rest,
    )
    ckpt = Checkpoints(rd.checkpoints, keep=cfg.train.keep_checkpoints)
    try:
        latest = ckpt.latest_step()
        if latest is None:
            raise RectkError(f"{rd.path} has no checkpoint yet: train it first (rectk run)")
        best = int(ckpt.restore_meta(latest).get("best_step", -1))
        step = best if best >= 0 else latest
        state, _ = ckpt.restore(step, abstract)
    finally:
        ckpt.close()
    bound = steps.Bound(graphdef=graphdef, loss=cfg.loss, tx=tx, library_dots=model.library_dots)
    return Loaded(
        cfg=cfg,
        weights={"params": state["params"], "rest": state["rest"]},
        bound=bound,
        vocab=vocab,
        item_index={r: i + 1 for i, r in enumerate(vocab["item_ids"])},
        titles=catalogue.titles if catalogue else None,
        history=rd.load_history(),
        num_items=num_items,
        chunk=item_chunk(cfg.eval.item_chunk, num_items),
        step=step,
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
    scores, ids = run.top_k_fn(k)(run.weights, batch)
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
