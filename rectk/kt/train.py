"""Knowledge-tracing training: pyKT's protocol through the shared loop (``rectk.loop.fit``).

The recipe's ``[task]`` (``knowledge_tracing``) fixes the protocol: train on every
cross-validation fold but ``task.valid_fold``, validate on it, test on the data set's test
learners. Each learner's answers are cut into consecutive chunks of ``task.maxlen`` (a last
chunk shorter than ``task.min_len`` is dropped) and every answer but a chunk's first is
predicted from the chunk's answers before it: the training loss (binary cross-entropy), the
validation metrics and the test metrics (``auc``, ``accuracy``). With ``task.window_test``,
the test also reports pyKT's window view (``window_auc``, ``window_accuracy``): every answer but
a learner's first, from up to ``maxlen - 1`` answers before it. A multi-concept question is one
answer (never in the context of its own prediction), its first concept the model's concept.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import Mesh

from rectk import sharding as shd
from rectk import steps
from rectk.checkpoint import latest_step
from rectk.config import RunConfig
from rectk.contracts import KTBuildContext
from rectk.data.kt import KTData
from rectk.data.types import Dataset
from rectk.kt import batches as kb
from rectk.kt.metrics import binary_metrics
from rectk.kt.predict import save_answers
from rectk.loop import Job, batch_putter, fit, tree_size
from rectk.recipe import Recipe
from rectk.rundir import RunDir
from rectk.setup import StateLayout, run_length, state_layout


@dataclasses.dataclass(frozen=True, kw_only=True)
class KTSetup:
    """A knowledge-tracing run's model, state layout and jitted functions."""

    cfg: RunConfig
    mesh: Mesh
    layout: StateLayout
    compute_dtype: Any
    schedule: optax.Schedule
    steps_per_epoch: int
    total_steps: int
    epochs: int

    @property
    def state_shardings(self) -> dict:
        return jax.tree.map(lambda a: a.sharding, self.layout.abstract_state)


def model_factory(cfg: RunConfig, kt: Any) -> Callable[[], nnx.Module]:
    """Builds the recipe's tracer for the vocabularies of ``kt`` (a ``KTData``, or anything
    with its ``num_questions``, ``num_concepts`` and ``has_questions``), ``model.dim`` and
    ``task.maxlen``."""

    def make():
        ctx = KTBuildContext(
            dim=cfg.model.dim,
            num_questions=kt.num_questions + 1,
            num_concepts=kt.num_concepts + 1,
            max_len=cfg.task.maxlen,
            rngs=nnx.Rngs(cfg.seed),
            has_questions=kt.has_questions,
        )
        return cfg.model.tracer.build(ctx)

    return make


def kt_setup(cfg: RunConfig, kt: KTData, train_rows: int, mesh: Mesh) -> KTSetup:
    """The tracer's state shaped and sharded, and the run's length in steps."""
    steps_per_epoch, total = run_length(cfg, mesh, train_rows)
    layout = state_layout(model_factory(cfg, kt), nnx.Param, cfg, mesh, total)
    return KTSetup(
        cfg=cfg,
        mesh=mesh,
        layout=layout,
        compute_dtype=jnp.bfloat16 if cfg.train.dtype == "bfloat16" else jnp.float32,
        schedule=steps.make_schedule(cfg.train, total),
        steps_per_epoch=steps_per_epoch,
        total_steps=total,
        epochs=math.ceil(total / steps_per_epoch),
    )


def _logits(model, batch: dict, rngs) -> jax.Array:
    return model(
        batch["question"], batch["concept"], batch["response"], batch["mask"], rngs=rngs
    ).astype(jnp.float32)


def train_step(s: KTSetup, state: dict, batch: dict, root_key: jax.Array):
    """One optimiser step on the mean cross-entropy of the batch's weighted answers."""
    key = jax.random.fold_in(root_key, state["step"])

    def loss_fn(params):
        model = nnx.merge(
            s.layout.graphdef, steps.cast_floats(params, s.compute_dtype), state["rest"]
        )
        logit_bl = _logits(model, batch, nnx.Rngs(dropout=key))
        bce = optax.sigmoid_binary_cross_entropy(logit_bl, batch["response"].astype(jnp.float32))
        w = batch["weight"]
        return jnp.sum(bce * w) / jnp.maximum(jnp.sum(w), 1.0)

    return steps.update(s.layout.tx, state, batch, loss_fn)


def probabilities(graphdef, weights: dict, batch: dict) -> jax.Array:
    """Success probabilities ``[B, L]`` of a batch's answers (no dropout): the model of
    ``graphdef`` with ``weights = {"params", "rest"}``."""
    model = nnx.merge(graphdef, weights["params"], weights["rest"])
    return jax.nn.sigmoid(_logits(model, batch, None))


def predictor(s: KTSetup) -> Callable[[dict, dict], jax.Array]:
    """Jitted ``(weights, batch) -> success probabilities [B, L]``, on the run's mesh."""
    batch_sh = shd.batch_sharding(s.mesh)
    weights_sh = {"params": s.state_shardings["params"], "rest": s.state_shardings["rest"]}
    return jax.jit(
        functools.partial(probabilities, s.layout.graphdef), in_shardings=(weights_sh, batch_sh)
    )


# The most answers one evaluation batch holds (rows x width): 64 full 200-answer chunks. Wide
# batches of attention models hold [rows, heads, width, width] scores per layer.
EVAL_TOKENS = 64 * 200


@dataclasses.dataclass(frozen=True)
class AnswerSet:
    """Stretches of answers to score, padded into rows; ``weight`` marks those predicted."""

    arrays: dict

    def __len__(self) -> int:
        return int(self.arrays["weight"].sum())

    @classmethod
    def concat(cls, *sets: AnswerSet) -> AnswerSet:
        return cls({k: np.concatenate([a.arrays[k] for a in sets]) for k in kb.KEYS})

    def predictions(
        self, predict, weights: dict, batch_size: int, multiple: int = 1
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(probabilities, responses)`` of the weighted answers, in row order; batches of
        ``batch_size`` rows, fewer where they are wide (at most ``EVAL_TOKENS`` answers)."""
        prob = np.zeros(self.arrays["weight"].shape, np.float32)
        batches = kb.eval_batches(
            self.arrays, batch_size, max_tokens=EVAL_TOKENS, multiple=multiple
        )
        for rows, batch in batches:
            p = np.asarray(predict(weights, batch))[: len(rows)]
            prob[rows, : p.shape[1]] = p
        keep = self.arrays["weight"] > 0
        return prob[keep], self.arrays["response"][keep]

    def metrics(
        self, predict, weights: dict, batch_size: int, multiple: int = 1
    ) -> dict[str, float]:
        return binary_metrics(*self.predictions(predict, weights, batch_size, multiple))


def chunk_set(kt: KTData, learners: np.ndarray, maxlen: int, min_len: int) -> AnswerSet:
    """pyKT's chunk view of ``learners``: every answer but a chunk's first."""
    return AnswerSet(kb.stretch_arrays(kt, kt.chunks(learners, maxlen, min_len), maxlen))


def window_set(kt: KTData, learners: np.ndarray, maxlen: int, min_len: int) -> AnswerSet:
    """pyKT's window view of ``learners``: every answer but a learner's first, from up to
    ``maxlen - 1`` answers before it (learners shorter than ``min_len`` left out, as pyKT)."""
    learners = learners[kt.lengths[learners] >= min_len]
    first, later = kb.window_cuts(kt, kt.targets(learners, "windows", maxlen), maxlen)
    return AnswerSet.concat(
        AnswerSet(kb.stretch_arrays(kt, first, maxlen)),
        AnswerSet(kb.stretch_arrays(kt, later, maxlen, last_only=True)),
    )


def train_and_evaluate(recipe: Recipe, *, progress: bool = True, echo=print) -> dict:
    """Trains a knowledge tracer (resuming if the run exists), tests it, writes results."""
    rd = RunDir.of(recipe.config)
    with rd.writing(), rd.lock(enabled=jax.process_index() == 0):
        return _train_and_evaluate(recipe, progress=progress, echo=echo)


def _train_and_evaluate(recipe: Recipe, *, progress: bool, echo) -> dict:
    cfg: RunConfig = recipe.config
    task, tc = cfg.task, cfg.train
    t_start = time.perf_counter()
    primary = jax.process_index() == 0
    say: Callable[..., Any] = echo if primary else (lambda *a, **k: None)

    data: Dataset = cfg.data.load()
    kt: KTData = data.answers
    folds = kt.split(task.valid_fold)
    train = chunk_set(kt, folds.train, task.maxlen, task.min_len)
    valid = chunk_set(kt, folds.valid, task.maxlen, task.min_len)
    test_sets = {"": chunk_set(kt, folds.test, task.maxlen, task.min_len)}
    if task.window_test:
        test_sets["window_"] = window_set(kt, folds.test, task.maxlen, task.min_len)
    rows = train.arrays["weight"].shape[0]
    say(
        f"data {data.name}: {kt.num_learners} learners, {kt.num_questions} questions, "
        f"{kt.num_concepts} concepts, {len(kt)} answers (version "
        f"{data.interactions.fingerprint()}); {len(folds.train)} / {len(folds.valid)} / "
        f"{len(folds.test)} train / valid / test learners (valid fold {task.valid_fold}); "
        f"{rows} training chunks, {len(valid)} valid / {len(test_sets[''])} test answers"
        + "".join(f"\n  note: {n}" for n in data.notes)
    )
    mesh = shd.make_mesh(cfg.mesh.data, cfg.mesh.model)
    s = kt_setup(cfg, kt, rows, mesh)
    rd = RunDir.of(cfg)
    resume = latest_step(rd.checkpoints)
    state = s.layout.create() if resume is None else None
    rd.start(recipe, data, write=primary)
    if primary:
        save_answers(rd, kt)  # what a finished run predicts and assesses from
    say(
        f"model {type(cfg.model.tracer).plugin_name}: "
        f"{tree_size(s.layout.abstract_state['params']):,} trained parameters; "
        f"{s.total_steps} steps ({s.steps_per_epoch} per epoch); run directory {rd.path}"
    )
    predict = predictor(s)
    eval_bs = cfg.eval.batch_size + (-cfg.eval.batch_size) % mesh.shape["data"]
    job = Job(
        abstract_state=s.layout.abstract_state,
        step_fn=steps.jit_state_step(
            functools.partial(train_step, s),
            s.state_shardings,
            shd.batch_sharding(mesh),
            shd.replicated(mesh),
        ),
        batches=kb.train_dataset(
            train.arrays,
            batch_size=tc.batch_size,
            epochs=s.epochs,
            seed=cfg.seed,
            process_index=jax.process_index(),
            process_count=jax.process_count(),
            group_by_length=tc.group_by_length,
        ),
        put=batch_putter(shd.batch_sharding(mesh), tc.batch_size),
        validate=lambda weights: valid.metrics(predict, weights, eval_bs, mesh.shape["data"]),
        schedule=s.schedule,
        total_steps=s.total_steps,
        steps_per_epoch=s.steps_per_epoch,
    )

    def test(weights: dict) -> tuple[dict[str, float], tuple[dict[str, float], float]]:
        t0 = time.perf_counter()
        scores: dict[str, float] = {}
        for prefix, answers in test_sets.items():
            scores.update(
                {
                    prefix + k: v
                    for k, v in answers.metrics(
                        predict, weights, eval_bs, mesh.shape["data"]
                    ).items()
                }
            )
        return scores, (scores, time.perf_counter() - t0)

    fitted = fit(
        job,
        tc,
        rd,
        recipe_hash=recipe.hash,
        seed=cfg.seed,
        monitor=cfg.monitor,
        state=state,
        test=test,
        say=say,
        progress=progress,
        t_start=t_start,
    )
    loop = fitted.loop
    scores, eval_s = fitted.test
    summary = {
        "recipe_hash": recipe.hash,
        "data_fingerprint": data.interactions.fingerprint(),
        "task": "knowledge_tracing",
        "best_step": loop.best_step,
        "last_step": fitted.step,
        "stopped": loop.stopped or "steps",
        "valid": loop.valid,
        "test": {"model": scores},
        "test_targets": len(test_sets[""]),
        "test_note": f"{len(test_sets[''])} answers of {len(folds.test)} test learners, "
        f"pyKT's {task.maxlen}-answer chunks"
        + (
            f"; window_*: {len(test_sets['window_'])} answers, pyKT's windows"
            if task.window_test
            else ""
        ),
        "seconds": {
            "total": round(time.perf_counter() - t_start, 2),
            "train": round(fitted.train_seconds, 2),
            "test_eval": round(eval_s, 4),
            "epoch_median": float(np.median(loop.epoch_seconds)) if loop.epoch_seconds else None,
        },
    }
    if primary:
        rd.write_json("results.json", summary)
    return summary
