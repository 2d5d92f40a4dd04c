"""The training loop every task shares: resume, train, validate, checkpoint, stop.

A task (next-item ranking in ``rectk.train``, knowledge tracing in ``rectk.kt.train``) builds a
``Job``: its state's layout, a jitted step, its batches and its validation. ``fit`` runs it.

A run killed at any point and restarted with the same command ends exactly as an
uninterrupted one: each step's randomness is ``fold_in(key, step)``; every checkpoint holds the
train state, the data iterator's position and the loop's own state (``LoopState``); metrics
logged after the restored step are dropped. The host waits for the devices only where it must:
the loss is fetched at log, validation, checkpoint and epoch-end steps (every step's loss since
the last fetch is then checked for NaN/inf and for divergence, ``train.divergence`` times the
first step's loss), and each batch is placed on the devices while earlier steps run. Only
process 0 writes the run directory's files; every process writes its part of the checkpoints,
through Orbax. A damaged checkpoint is moved aside and the newest intact one resumed.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import jax

from rectk.checkpoint import Checkpoints, DamagedCheckpoint
from rectk.config import TrainConfig
from rectk.errors import RectkError, TrainingError
from rectk.logging import MetricsLog
from rectk.rundir import RunDir

T = TypeVar("T")


@dataclasses.dataclass(frozen=True, kw_only=True)
class LoopState:
    """Where the loop stands at ``step``; saved in every checkpoint beside the train state."""

    step: int = 0
    best_value: float = -math.inf  # the best validation value of the monitor so far
    best_step: int = -1
    bad_evals: int = 0  # validations since the best
    epoch_seconds: tuple[float, ...] = ()  # training time of each finished epoch
    valid: dict[str, float] = dataclasses.field(default_factory=dict)  # metrics at best_step
    stopped: str = ""  # "" while training, then "steps" or "early_stopping"
    first_loss: float | None = None  # the first step's loss: ``train.divergence``'s reference

    def validated(
        self, step: int, value: float, metrics: dict[str, float], min_delta: float = 0.0
    ) -> LoopState:
        """After a validation at ``step``: a new best only if it beats the best so far by more
        than ``min_delta`` (0: any strict improvement)."""
        if value > self.best_value + min_delta:
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


@dataclasses.dataclass(frozen=True, kw_only=True)
class Job:
    """What ``fit`` trains: a task's state layout, step, batches and validation.

    Attributes:
      abstract_state: the train state's shapes, dtypes and shardings ``{"params", "opt",
        "step", "rest"}`` (what a checkpoint restores into).
      step_fn: jitted ``(state, batch, root_key) -> (state, {"loss", "grad_norm"})``.
      batches: this process's training batches for the whole run (a grain ``MapDataset``,
        whose iterator's state checkpoints save).
      put: places one host batch on the devices (a global array per key).
      validate: ``weights -> metrics`` on the validation split (``weights = {"params",
        "rest"}``); the monitored metric must be one of its keys.
      schedule: the learning rate by optimiser update (logged as ``train/lr``).
    """

    abstract_state: dict
    step_fn: Callable
    batches: Any
    put: Callable[[dict], dict]
    validate: Callable[[dict], dict[str, float]]
    schedule: Callable[[int], Any]
    total_steps: int
    steps_per_epoch: int


@dataclasses.dataclass(frozen=True, kw_only=True)
class Fitted:
    """What ``fit`` ends with: the loop's state, the last step and the test result."""

    loop: LoopState
    step: int
    test: Any
    train_seconds: float


def fit(
    job: Job,
    tc: TrainConfig,
    rd: RunDir,
    *,
    recipe_hash: str,
    seed: int,
    monitor: str,
    state: dict | None,
    test: Callable[[dict], tuple[dict[str, float], T]],
    validate_first: bool = False,
    say: Callable[..., Any] = print,
    progress: bool = True,
    t_start: float | None = None,
) -> Fitted:
    """Trains ``job`` to its last step or early stop, then tests the best validation step's
    weights.

    ``monitor``: the validation metric whose best value picks the weights tested (and whose
    ``train.patience`` validations without improvement stop training). ``state``: the fresh (or warm-started) train state, or None to resume from the newest
    intact checkpoint of ``rd``. ``validate_first``: validate (and checkpoint) the starting
    weights at step 0, so fine-tuning keeps them unless it beats them. ``test(weights)``
    returns ``(metrics logged as test/..., the task's result)``.
    """
    t_start = time.perf_counter() if t_start is None else t_start
    primary = jax.process_index() == 0
    ckpt = Checkpoints(rd.checkpoints, keep=tc.keep_checkpoints, recipe_hash=recipe_hash)
    if primary:
        rd.check_metrics()  # drops a partial last line, left by a run killed while writing it
    log = MetricsLog(rd.path, primary=primary)
    it = iter(job.batches.to_iter_dataset())
    loop = LoopState()
    if state is None:
        try:  # the newest checkpoint that can be read; damaged ones are moved aside
            _, (state, meta) = ckpt.restore_first(
                sorted(ckpt.all_steps(), reverse=True),
                lambda step: ckpt.restore(step, job.abstract_state),
            )
        except BaseException:
            log.close()
            ckpt.close()
            raise
        loop, data_iter = LoopState.from_meta(meta)
        it.set_state(data_iter)
        say(f"resuming from the checkpoint at step {loop.step}")
        log.truncate_after(loop.step)
    else:
        log.truncate_after(-1)  # fresh: nothing logged stays

    root_key = jax.random.key(seed + 1)
    eval_every = tc.eval_every or job.steps_per_epoch
    bar = _progress(progress and primary, job.total_steps, loop.step)

    def validate(state: dict, loop: LoopState, step: int) -> tuple[LoopState, float]:
        """Validation metrics at ``step``, logged and compared with the best so far."""
        metrics = job.validate(weights_of(state))
        if monitor not in metrics:
            raise RectkError(
                f"train.monitor = {monitor!r} is not an evaluation metric; choose one of "
                f"{', '.join(sorted(metrics))}"
            )
        log.write(step, {f"valid/{k}": v for k, v in metrics.items()})
        value = metrics[monitor]
        return loop.validated(step, value, metrics, tc.min_delta), value

    try:
        if validate_first:
            loop, value = validate(state, loop, 0)
            ckpt.save(0, state, loop.to_meta(it.get_state()), metric=value)

        batches = _on_devices(it, job.put)
        unread: list[tuple[int, dict]] = []  # (step, metrics) not yet fetched from the devices
        epoch_s = 0.0
        step = loop.step
        for step in range(loop.step + 1, job.total_steps + 1) if not loop.stopped else ():
            t0 = time.perf_counter()  # an epoch's time includes its input pipeline
            batch, data_iter = next(batches)
            state, metrics = job.step_fn(state, batch, root_key)
            unread.append((step, metrics))
            last = step == job.total_steps
            validating = step % eval_every == 0 or last
            saving = validating or bool(tc.checkpoint_every and step % tc.checkpoint_every == 0)
            logging = step % tc.log_every == 0 or last
            epoch_end = step % job.steps_per_epoch == 0
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
                lr = float(job.schedule((step - 1) // tc.accumulate))
                log.write(step, {"train/loss": loss, "train/grad_norm": grad_norm, "train/lr": lr})
            if epoch_end:
                loop = dataclasses.replace(loop, epoch_seconds=(*loop.epoch_seconds, epoch_s))
                epoch_s = 0.0
            # the checkpoints keep the highest metric they are given: give it at the loop's own
            # bests only, so a near miss within min_delta never prunes the step tested
            best = None
            if validating:
                loop, metric = validate(state, loop, step)
                best = metric if loop.best_step == step else None
                bar.set_postfix(loss=f"{loss:.4f}", **{monitor: f"{metric:.4f}"})
                if tc.patience and loop.bad_evals >= tc.patience:
                    loop = dataclasses.replace(loop, stopped="early_stopping")
                elif last:
                    loop = dataclasses.replace(loop, stopped="steps")
            if saving:
                loop = dataclasses.replace(loop, step=step)
                ckpt.save(step, state, loop.to_meta(data_iter), metric=best)
            if loop.stopped:
                break
        bar.close()
        loop = dataclasses.replace(loop, step=step)

        # ---- The best validation step's weights, tested -------------------------------------
        weights = weights_of(state)
        if loop.best_step >= 0 and loop.best_step != step:
            try:
                weights = ckpt.restore_weights(loop.best_step, weights_of(job.abstract_state))
            except DamagedCheckpoint as err:
                say(f"note: {err}; the test evaluates the weights at step {step} instead")
        train_s = time.perf_counter() - t_start
        logged, result = test(weights)
        log.write(step, {f"test/{k}": v for k, v in logged.items()})
    finally:
        bar.close()
        log.close()
        ckpt.close()
    return Fitted(loop=loop, step=step, test=result, train_seconds=train_s)


def weights_of(state: dict) -> dict:
    """What scoring needs from a train state: the trained params and the rest."""
    return {"params": state["params"], "rest": state["rest"]}


def put_batch(sharding, batch_size: int, batch: dict) -> dict:
    """This process's rows of a batch, as one global array per key on the mesh."""
    return {
        k: jax.make_array_from_process_local_data(sharding, v, (batch_size, *v.shape[1:]))
        for k, v in batch.items()
    }


def batch_putter(sharding, batch_size: int) -> Callable[[dict], dict]:
    return functools.partial(put_batch, sharding, batch_size)


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


def tree_size(tree: Any) -> int:
    """The number of values in ``tree``'s arrays."""
    return sum(math.prod(x.shape) for x in jax.tree.leaves(tree))
