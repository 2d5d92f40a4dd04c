"""Next-item training, top to bottom: set up the data, model and state, run the shared loop
(``rectk.loop.fit``: train, validate, checkpoint, stop, resume exactly), then evaluate the
best weights on the test split (the model, the baselines, new items, reranker chains) and
write ``results.json``. Process 0 holds the run directory's lock throughout, so a second
training of the same run is refused.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from rectk import sharding as shd
from rectk import steps
from rectk.checkpoint import latest_step
from rectk.config import RunConfig
from rectk.data.types import Dataset
from rectk.loop import Job, batch_putter, fit, tree_size
from rectk.predict import load_run
from rectk.recipe import Recipe
from rectk.rerank.evaluate import evaluate_chains
from rectk.rerank.side import ItemSide
from rectk.rundir import RunDir
from rectk.setup import (
    Setup,
    baseline_ranker,
    baseline_scores,
    create_state,
    evaluator,
    model_ranker,
    prepare,
    setup,
    train_batches,
)
from rectk.warm_start import warm_start

# ``(setup, data) -> (state, batch, key) -> (state, metrics)``: a task's own train step
StepFactory = Callable[[Setup, Dataset], Callable]


def train_and_evaluate(
    recipe: Recipe, *, progress: bool = True, echo=print, step_factory: StepFactory | None = None
) -> dict:
    """Trains (resuming if the run exists), evaluates on the test split, writes results.

    The run directory is locked meanwhile (a second training of the run is refused); one that
    cannot be written (permissions, a read-only or full disk) is a ``RectkError`` naming it.
    ``step_factory``: a task's own train step (distillation: ``rectk.distill``), built before
    the run directory is written, so that it may still refuse; default ``steps.train_step``.
    """
    rd = RunDir.of(recipe.config)
    with rd.writing(), rd.lock(enabled=jax.process_index() == 0):
        return _train_and_evaluate(
            recipe, progress=progress, echo=echo, step_factory=step_factory or _train_step
        )


def _train_step(s: Setup, data: Dataset) -> Callable:
    del data
    return steps.jit_train_step(s.bound, s.state_shardings, s.batch_sharding, s.replicated)


def _train_and_evaluate(recipe: Recipe, *, progress: bool, echo, step_factory: StepFactory) -> dict:
    cfg: RunConfig = recipe.config
    tc = cfg.train
    t_start = time.perf_counter()
    primary = jax.process_index() == 0
    say: Callable[..., Any] = echo if primary else _quiet

    # ---- Set up: data, mesh, then the model and state shaped and sharded --------------------
    data, sp = prepare(cfg)
    inter = data.interactions
    say(
        f"data {data.name}: {inter.num_users} users, {inter.num_items} items, {len(inter)} "
        f"interactions (version {inter.fingerprint()}); {len(sp.valid)} valid / "
        f"{len(sp.test)} test targets" + "".join(f"\n  note: {n}" for n in data.notes)
    )
    side = ItemSide.build(data, sp.train.items)
    for chain, stages in cfg.rerank.chains.items():
        side.bind(stages, chain)  # an unknown group name fails now, not after training
    mesh = shd.make_mesh(cfg.mesh.data, cfg.mesh.model)
    s = setup(cfg, data, sp, mesh)
    step_fn = step_factory(s, data)
    rd = RunDir.of(cfg)

    # ---- Initialise: this run's newest intact checkpoint > train.init_from > fresh weights --
    # (decided before the run directory is written: a source it cannot use leaves nothing)
    resume = latest_step(rd.checkpoints)  # restored below, once run.json has been checked
    init_report, state = None, None
    if resume is None:
        state = create_state(s)
        if tc.init_from:
            state, init_report = warm_start(cfg, state, inter.fingerprint())
    rd.start(recipe, data, write=primary)
    if primary:
        rd.save_history(sp.history)
        side.save(rd.path)  # what reranker chains read
    if init_report is not None:
        if primary:
            rd.write_json("init_from.json", init_report)
        say(
            f"initialised from {init_report['path']} (step {init_report['step']}): "
            f"{len(init_report['copied'])} parameter arrays copied, "
            f"{len(init_report['fresh'])} fresh"
        )
    say(
        f"model: {tree_size(s.abstract_state['params']):,} trained parameters "
        f"({tree_size(s.abstract_state['rest']):,} other values); "
        f"{s.total_steps} steps ({s.steps_per_epoch} per epoch) on {mesh.shape['data']} "
        f"data-parallel device(s); run directory {rd.path}"
    )
    valid = evaluator(s, sp.valid)
    ranks = model_ranker(s)  # validation and test share one compiled ranker
    job = Job(
        abstract_state=s.abstract_state,
        step_fn=step_fn,
        batches=train_batches(s, sp),
        put=batch_putter(s.batch_sharding, tc.batch_size),
        validate=lambda weights: valid.metrics(ranks.bind(weights)),
        schedule=s.schedule,
        total_steps=s.total_steps,
        steps_per_epoch=s.steps_per_epoch,
    )

    def test(weights: dict) -> tuple[dict[str, float], tuple]:
        """The model, the baselines and new items on held-out targets."""
        ev = evaluator(s, sp.test)
        compiled = ranks.compiled_shapes()
        t_test = time.perf_counter()
        scores = {"model": ev.metrics(ranks.bind(weights))}
        eval_s = time.perf_counter() - t_test
        # batch shapes validation had not compiled (a benchmark subtracts their compile time)
        compilations = ranks.compiled_shapes() - compiled
        for name in cfg.eval.baselines:
            base = baseline_scores(s, name, sp.train.items)
            scores[name] = ev.metrics(baseline_ranker(s, base))
        new_items = None
        if sp.cold is not None:  # items held out of training: ranked among themselves only
            allowed = np.zeros(inter.num_items + 1, bool)
            allowed[sp.cold_items] = True
            cold = evaluator(s, sp.cold)
            new_items = {"model": cold.metrics(model_ranker(s, allowed).bind(weights))}
            for name in sorted({*cfg.eval.baselines, "random"}):
                base = baseline_scores(s, name, sp.train.items)
                new_items[name] = cold.metrics(baseline_ranker(s, base, allowed))
        return scores["model"], (scores, new_items, eval_s, compilations)

    fitted = fit(
        job,
        tc,
        rd,
        recipe_hash=recipe.hash,
        seed=cfg.seed,
        monitor=cfg.monitor,
        state=state,
        test=test,
        validate_first=init_report is not None,
        say=say,
        progress=progress,
        t_start=t_start,
    )
    loop, step = fitted.loop, fitted.step
    scores, new_items, eval_s, eval_compilations = fitted.test
    train_s = fitted.train_seconds

    # ---- Results ----------------------------------------------------------------------------
    if init_report is None and tc.init_from:  # a resumed warm start: the report it wrote
        init_report = rd.read_json("init_from.json")
    summary = {
        "recipe_hash": recipe.hash,
        "data_fingerprint": inter.fingerprint(),
        "best_step": loop.best_step,
        "last_step": step,
        "stopped": loop.stopped or "steps",
        "valid": loop.valid,
        "test": scores,
        "test_targets": len(sp.test),
        "new_items": new_items,
        "new_item_targets": 0 if sp.cold is None else len(sp.cold),
        "held_out_items": len(sp.cold_items),
        "init_from": init_report,
        "seconds": {
            "total": round(time.perf_counter() - t_start, 2),
            "train": round(train_s, 2),
            "test_eval": round(eval_s, 4),
            "test_eval_compilations": eval_compilations,
            "epoch_median": float(np.median(loop.epoch_seconds)) if loop.epoch_seconds else None,
        },
    }
    if cfg.rerank.chains and jax.process_count() == 1:
        # The final lists of each chain beside the model's own, on the test split.
        t_rerank = time.perf_counter()
        summary["rerank"] = evaluate_chains(load_run(rd.path), sp.test, cfg.rerank.chains)
        summary["rerank_lists"] = {"k": cfg.rerank.k, "candidates": cfg.rerank.candidates}
        summary["seconds"] = {
            **summary["seconds"],  # type: ignore[dict-item]
            "rerank_eval": round(time.perf_counter() - t_rerank, 2),
        }
    if primary:
        rd.write_json("results.json", summary)
    return summary


def _quiet(*_args, **_kwargs) -> None:
    """``echo`` on processes other than 0."""
