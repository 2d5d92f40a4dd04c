"""Training, top to bottom: set up, initialise, loop (train, validate, checkpoint, stop), then
test evaluation and results.

A run killed at any point and restarted with the same command ends exactly as an
uninterrupted one: each step's randomness is ``fold_in(key, step)``; every checkpoint holds the
train state, the data iterator's position and the loop's own state (``LoopState``); metrics
logged after the restored step are dropped. The host waits for the devices only where it must:
the loss is fetched at log, validation, checkpoint and epoch-end steps (every step's loss since
the last fetch is then checked for NaN/inf and for divergence, ``train.divergence`` times the
first step's loss), and each batch is placed on the devices while earlier steps run. Only
process 0 prints and writes the run directory's files; every process writes its part of the
checkpoints, through Orbax. Process 0 holds the run directory's lock throughout, so a second
training of the same run is refused; a damaged checkpoint is moved aside and the newest intact
one resumed.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from collections.abc import Callable, Iterator
from typing import Any

import jax
import numpy as np

from rectk import sharding as shd
from rectk import steps
from rectk.checkpoint import Checkpoints, DamagedCheckpoint, latest_step
from rectk.config import RunConfig
from rectk.errors import RectkError, TrainingError
from rectk.logging import MetricsLog
from rectk.predict import load_run
from rectk.recipe import Recipe
from rectk.rerank.evaluate import evaluate_chains
from rectk.rerank.side import ItemSide
from rectk.rundir import RunDir
from rectk.setup import (
    baseline_ranker,
    baseline_scores,
    create_state,
    evaluator,
    model_ranker,
    prepare,
    setup,
    train_batches,
    weights_of,
)
from rectk.warm_start import warm_start


@dataclasses.dataclass(frozen=True, kw_only=True)
class LoopState:
    """Where the loop stands at ``step``; saved in every checkpoint beside the train state."""

    step: int = 0
    best_value: float = -math.inf  # the best validation value of ``train.monitor`` so far
    best_step: int = -1
    bad_evals: int = 0  # validations since the best
    epoch_seconds: tuple[float, ...] = ()  # training time of each finished epoch
    valid: dict[str, float] = dataclasses.field(default_factory=dict)  # metrics at best_step
    stopped: str = ""  # "" while training, then "steps" or "early_stopping"
    first_loss: float | None = None  # the first step's loss: ``train.divergence``'s reference

    def validated(self, step: int, value: float, metrics: dict[str, float]) -> LoopState:
        """After a validation at ``step`` (only a strict improvement is a new best)."""
        if value > self.best_value:
            return dataclasses.replace(
                self, best_value=value, best_step=step, bad_evals=0, valid=dict(metrics)
            )
        return dataclasses.replace(self, bad_evals=self.bad_evals + 1)

    def to_meta(self, data_iter: Any) -> dict:
        """The checkpoint's JSON item: these fields and the data iterator's state."""
        return {**dataclasses.asdict(self), "data_iter": data_iter}

    @classmethod
    def from_meta(cls, meta: dict) -> tuple[LoopState, Any]:
        """The loop state and data iterator's state a checkpoint holds."""
        names = {f.name for f in dataclasses.fields(cls)}
        loop = cls(**{k: v for k, v in meta.items() if k in names})
        return dataclasses.replace(loop, epoch_seconds=tuple(loop.epoch_seconds)), meta["data_iter"]


def train_and_evaluate(recipe: Recipe, *, progress: bool = True, echo=print) -> dict:
    """Trains (resuming if the run exists), evaluates on the test split, writes results.

    The run directory is locked meanwhile (a second training of the run is refused); one that
    cannot be written (permissions, a read-only or full disk) is a ``RectkError`` naming it.
    """
    rd = RunDir.of(recipe.config)
    with rd.writing(), rd.lock(enabled=jax.process_index() == 0):
        return _train_and_evaluate(recipe, progress=progress, echo=echo)


def _train_and_evaluate(recipe: Recipe, *, progress: bool, echo) -> dict:
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
    rd = RunDir.of(cfg)

    # ---- Initialise: this run's newest intact checkpoint > train.init_from > fresh weights --
    # (decided before the run directory is written: a source it cannot use leaves nothing)
    resume = latest_step(rd.checkpoints)  # restored below, once run.json has been checked
    init_report = None
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
        f"model: {_size(s.abstract_state['params']):,} trained parameters "
        f"({_size(s.abstract_state['rest']):,} other values); "
        f"{s.total_steps} steps ({s.steps_per_epoch} per epoch) on {mesh.shape['data']} "
        f"data-parallel device(s); run directory {rd.path}"
    )
    ckpt = Checkpoints(rd.checkpoints, keep=tc.keep_checkpoints, recipe_hash=recipe.hash)
    if primary:
        rd.check_metrics()  # drops a partial last line, left by a run killed while writing it
    log = MetricsLog(rd.path, primary=primary)
    it = iter(train_batches(s, sp).to_iter_dataset())
    loop = LoopState()
    if resume is not None:
        try:  # the newest checkpoint that can be read; damaged ones are moved aside
            _, (state, meta) = ckpt.restore_first(
                sorted(ckpt.all_steps(), reverse=True),
                lambda step: ckpt.restore(step, s.abstract_state),
            )
        except BaseException:
            log.close()
            ckpt.close()
            raise
        loop, data_iter = LoopState.from_meta(meta)
        it.set_state(data_iter)
        say(f"resuming from the checkpoint at step {loop.step}")
    log.truncate_after(loop.step if resume is not None else -1)  # fresh: nothing logged stays

    step_fn = steps.jit_train_step(s.bound, s.state_shardings, s.batch_sharding, s.replicated)
    root_key = jax.random.key(cfg.seed + 1)
    valid = evaluator(s, sp.valid)
    ranks = model_ranker(s)  # validation and test share one compiled ranker
    eval_every = tc.eval_every or s.steps_per_epoch
    bar = _progress(progress and primary, s.total_steps, loop.step)

    def validate(state: dict, loop: LoopState, step: int) -> tuple[LoopState, float]:
        """Validation metrics at ``step``, logged and compared with the best so far."""
        metrics = valid.metrics(functools.partial(ranks, weights_of(state)))
        if tc.monitor not in metrics:
            raise RectkError(
                f"train.monitor = {tc.monitor!r} is not an evaluation metric; choose one of "
                f"{', '.join(sorted(metrics))}"
            )
        log.write(step, {f"valid/{k}": v for k, v in metrics.items()})
        value = metrics[tc.monitor]
        return loop.validated(step, value, metrics), value

    try:
        # A warm start is validated first: fine-tuning keeps its starting weights unless it
        # beats them on validation.
        if init_report is not None:
            loop, value = validate(state, loop, 0)
            ckpt.save(0, state, loop.to_meta(it.get_state()), metric=value)

        # ---- Loop: train, validate, checkpoint, stop ----------------------------------------
        batches = _on_devices(it, functools.partial(_put, s.batch_sharding, tc.batch_size))
        unread: list[tuple[int, dict]] = []  # (step, metrics) not yet fetched from the devices
        epoch_s = 0.0
        step = loop.step
        for step in range(loop.step + 1, s.total_steps + 1) if not loop.stopped else ():
            t0 = time.perf_counter()  # an epoch's time includes its input pipeline
            batch, data_iter = next(batches)
            state, metrics = step_fn(state, batch, root_key)
            unread.append((step, metrics))
            last = step == s.total_steps
            validating = step % eval_every == 0 or last
            saving = validating or bool(tc.checkpoint_every and step % tc.checkpoint_every == 0)
            logging = step % tc.log_every == 0 or last
            epoch_end = step % s.steps_per_epoch == 0
            if logging or saving or epoch_end:  # the only places the host waits
                host = jax.device_get(unread)
                fetched = _finite(host, ckpt, rd)
                loop = _diverged(host, loop, tc.divergence, ckpt, rd)
                unread = []
                jax.block_until_ready(state)
                loss, grad_norm = fetched["loss"], fetched["grad_norm"]
                bar.set_postfix(loss=f"{loss:.4f}")
            epoch_s += time.perf_counter() - t0
            bar.update(1)
            if logging:
                lr = float(s.schedule((step - 1) // tc.accumulate))
                log.write(step, {"train/loss": loss, "train/grad_norm": grad_norm, "train/lr": lr})
            if epoch_end:
                loop = dataclasses.replace(loop, epoch_seconds=(*loop.epoch_seconds, epoch_s))
                epoch_s = 0.0
            metric = None
            if validating:
                loop, metric = validate(state, loop, step)
                bar.set_postfix(loss=f"{loss:.4f}", **{tc.monitor: f"{metric:.4f}"})
                if tc.patience and loop.bad_evals >= tc.patience:
                    loop = dataclasses.replace(loop, stopped="early_stopping")
                elif last:
                    loop = dataclasses.replace(loop, stopped="steps")
            if saving:
                loop = dataclasses.replace(loop, step=step)
                ckpt.save(step, state, loop.to_meta(data_iter), metric=metric)
            if loop.stopped:
                break
        bar.close()
        loop = dataclasses.replace(loop, step=step)

        # ---- The best validation step's weights ---------------------------------------------
        weights = weights_of(state)
        if loop.best_step >= 0 and loop.best_step != step:
            try:
                weights = ckpt.restore_weights(loop.best_step, weights_of(s.abstract_state))
            except DamagedCheckpoint as err:
                say(f"note: {err}; the test evaluates the weights at step {step} instead")
        train_s = time.perf_counter() - t_start

        # ---- Test: the model and the baselines on held-out targets --------------------------
        test = evaluator(s, sp.test)
        compiled = _compiled_shapes(ranks)
        t_test = time.perf_counter()
        scores = {"model": test.metrics(functools.partial(ranks, weights))}
        eval_s = time.perf_counter() - t_test
        # batch shapes validation had not compiled (a benchmark subtracts their compile time)
        eval_compilations = _compiled_shapes(ranks) - compiled
        for name in cfg.eval.baselines:
            base = baseline_scores(s, name, sp.train.items)
            scores[name] = test.metrics(baseline_ranker(s, base))
        new_items = None
        if sp.cold is not None:  # items held out of training: ranked among themselves only
            allowed = np.zeros(inter.num_items + 1, bool)
            allowed[sp.cold_items] = True
            cold = evaluator(s, sp.cold)
            new_items = {
                "model": cold.metrics(functools.partial(model_ranker(s, allowed), weights))
            }
            for name in sorted({*cfg.eval.baselines, "random"}):
                base = baseline_scores(s, name, sp.train.items)
                new_items[name] = cold.metrics(baseline_ranker(s, base, allowed))
        log.write(step, {f"test/{k}": v for k, v in scores["model"].items()})
    finally:
        bar.close()
        log.close()
        ckpt.close()

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


# ---------------------------------------------------------------------------------------------
# Helpers of the loop.
# ---------------------------------------------------------------------------------------------


def _put(sharding, batch_size: int, batch: dict) -> dict:
    """This process's rows of a batch, as one global array per key on the mesh."""
    return {
        k: jax.make_array_from_process_local_data(sharding, v, (batch_size, *v.shape[1:]))
        for k, v in batch.items()
    }


def _on_devices(it, put: Callable[[dict], dict]) -> Iterator[tuple[dict, Any]]:
    """``it``'s batches placed on the devices one batch ahead of the loop, each with the
    iterator's state after it (what a checkpoint at that step saves)."""
    ahead = None
    for batch in it:
        placed = (put(batch), it.get_state())
        if ahead is not None:
            yield ahead
        ahead = placed
    if ahead is not None:
        yield ahead


def _finite(fetched: list[tuple[int, dict]], ckpt: Checkpoints, rd: RunDir) -> dict[str, float]:
    """The latest step's metrics; raises if any step's loss since the last fetch is not
    finite, naming the first such step and the last good checkpoint kept."""
    for step, metrics in fetched:
        loss = float(metrics["loss"])
        if not math.isfinite(loss):
            raise TrainingError(
                f"the training loss became {loss} at step {step}; training stopped. "
                + _kept(ckpt, rd)
                + " Lower train.lr, set train.clip_norm, or check the data for extreme values."
            )
    return {k: float(v) for k, v in fetched[-1][1].items()}


def _diverged(
    fetched: list[tuple[int, dict]], loop: LoopState, limit: float, ckpt: Checkpoints, rd: RunDir
) -> LoopState:
    """``loop`` with its reference loss (the first step's) set once; raises if a fetched
    step's loss exceeds ``limit`` times it (``limit`` 0, or a reference not above 0: no check),
    naming the first such step and the last good checkpoint kept."""
    if loop.first_loss is None:
        loop = dataclasses.replace(loop, first_loss=float(fetched[0][1]["loss"]))
    first = loop.first_loss
    if not limit or first is None or first <= 0.0:
        return loop
    for step, metrics in fetched:
        loss = float(metrics["loss"])
        if loss > limit * first:
            raise TrainingError(
                f"the training loss diverged: {loss:.6g} at step {step}, more than "
                f"train.divergence = {limit:g} times the first step's loss ({first:.6g}); "
                "training stopped. "
                + _kept(ckpt, rd)
                + " Lower train.lr, set train.clip_norm, or raise train.divergence (0 = off)."
            )
    return loop


def _kept(ckpt: Checkpoints, rd: RunDir) -> str:
    kept = ckpt.latest_step()
    if kept is None:
        return "No checkpoint had been written yet."
    return f"The last good checkpoint (step {kept}) is kept in {rd.checkpoints}."


def _progress(enabled: bool, total: int, start: int):
    from tqdm import tqdm

    return tqdm(
        total=total,
        initial=start,
        disable=not enabled,
        desc="train",
        unit="step",
        dynamic_ncols=True,
        leave=False,
    )


def _size(tree: Any) -> int:
    return sum(math.prod(x.shape) for x in jax.tree.leaves(tree))


def _compiled_shapes(jitted) -> int:
    """How many input shapes ``jitted`` has compiled."""
    return int(jitted._cache_size())


def _quiet(*_args, **_kwargs) -> None:
    """``echo`` on processes other than 0."""
