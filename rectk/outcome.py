"""Course-outcome prediction: a learner's final result from their assessments so far.

The input is an enrolment's assessment sequence (OULAD's, read by
``rectk_plugins.datasets.oulad.read_oulad``, or anything with its fields), cut at a day of the
presentation: an assessment is seen once it is due or submitted, a score once it is submitted,
so a cut-off at day 100 is what a platform knows on day 100. Each seen assessment becomes the
features :data:`FEATURES`; :class:`OutcomeModel` (a GRU over them beside their masked mean)
predicts pass (Pass or Distinction) against fail (Fail or Withdrawn) and the four results.

>>> import numpy as np
>>> seqs = Sequences(x_blf=np.zeros((2, 3, len(FEATURES)), np.float32),
...                  mask_bl=np.zeros((2, 3), bool), outcome_b=np.array([0, 3]))
>>> seqs.passed_b.tolist()
[False, True]
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from rectk.kt.metrics import auc

__all__ = [
    "FEATURES",
    "NUM_OUTCOMES",
    "OUTCOME_NAMES",
    "OutcomeConfig",
    "OutcomeModel",
    "Sequences",
    "Trained",
    "fit",
    "metrics",
    "predict",
    "sequences",
    "split_by_presentation",
]

FEATURES = (
    "score",
    "no_score",
    "submitted",
    "weight",
    "tma",
    "cma",
    "exam",
    "due",
    "late",
    "banked",
)
OUTCOME_NAMES = ("Withdrawn", "Fail", "Pass", "Distinction")  # an index >= 2 is a pass
NUM_OUTCOMES = len(OUTCOME_NAMES)
_PASS = 2


@dataclasses.dataclass(frozen=True)
class Sequences:
    """Padded assessment features ``x_blf`` [B, L, F], ``mask_bl`` [B, L] and outcomes [B]."""

    x_blf: np.ndarray
    mask_bl: np.ndarray
    outcome_b: np.ndarray

    def __len__(self) -> int:
        return len(self.outcome_b)

    @property
    def passed_b(self) -> np.ndarray:
        return self.outcome_b >= _PASS

    def take(self, rows: np.ndarray) -> Sequences:
        return Sequences(self.x_blf[rows], self.mask_bl[rows], self.outcome_b[rows])


def sequences(data: Any, *, cutoff: float | None = None, exams: bool = False) -> Sequences:
    """Every enrolment of ``data`` (an ``Oulad``) as features of the assessments seen by day
    ``cutoff`` (None: all of them).

    An assessment is seen once due (``due <= cutoff``) or submitted (``day <= cutoff``); it
    counts as submitted, and its score as known, only if submitted by then. A missing score
    is 0 with the ``no_score`` flag set (not submitted, or submitted without a score). Exams
    are left out unless ``exams``: a final exam is graded at the end and nearly decides the
    result, so it tells nothing a platform could act on.
    """
    day = np.asarray(data.day, np.float64)
    submitted = np.asarray(data.submitted, bool)
    if cutoff is not None:
        submitted = submitted & (day <= cutoff)
    seen = np.ones_like(submitted) if cutoff is None else submitted | (data.due <= cutoff)
    if not exams:
        seen &= data.kind != 2
    offsets = np.asarray(data.offsets)
    enrol = np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))
    before = np.concatenate([[0], np.cumsum(seen)])
    pos = before[:-1] - before[offsets[:-1]][enrol]
    length = np.diff(before[offsets])
    l_max = max(int(length.max(initial=0)), 1)

    score = np.where(submitted & ~np.isnan(data.score), data.score, np.nan)
    late = np.where(submitted, np.clip((day - data.due) / 30.0, -1.0, 1.0), 0.0)
    feats = np.stack(
        [
            np.nan_to_num(score / 100.0),
            np.isnan(score),
            submitted,
            data.weight / 100.0,
            data.kind == 0,
            data.kind == 1,
            data.kind == 2,
            data.due / data.course_length[enrol],
            late,
            data.banked & submitted,
        ],
        axis=-1,
    ).astype(np.float32)
    x_blf = np.zeros((len(length), l_max, len(FEATURES)), np.float32)
    x_blf[enrol[seen], pos[seen]] = feats[seen]
    mask_bl = np.arange(l_max)[None, :] < length[:, None]
    return Sequences(x_blf, mask_bl, np.asarray(data.outcome, np.int32))


def split_by_presentation(
    data: Any, *, test: tuple[str, ...] = ("2014J",), valid_share: float = 0.15, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Enrolment indices ``(train, valid, test)``: test is the presentations ``test`` (the
    latest), the rest is split by student, a seeded ``valid_share`` of them validating, so no
    student is in both train and valid. A test student may have studied an earlier
    presentation, as on a live platform."""
    is_test = np.isin(data.presentation, test)
    students = np.unique(data.student[~is_test])
    rng = np.random.default_rng(seed)
    held = rng.permutation(students)[: round(valid_share * len(students))]
    is_valid = ~is_test & np.isin(data.student, held)
    return np.flatnonzero(~is_test & ~is_valid), np.flatnonzero(is_valid), np.flatnonzero(is_test)


class OutcomeModel(nnx.Module):
    """A GRU over the assessment features, beside their masked mean, into two heads: the pass
    logit and the four outcome logits."""

    def __init__(self, num_features: int, *, dim: int = 32, rngs: nnx.Rngs):
        self.embed = nnx.Linear(num_features, dim, rngs=rngs)
        self.cell = nnx.GRUCell(dim, dim, rngs=rngs)
        self.hidden = nnx.Linear(2 * dim, dim, rngs=rngs)
        self.pass_head = nnx.Linear(dim, 1, rngs=rngs)
        self.outcome_head = nnx.Linear(dim, NUM_OUTCOMES, rngs=rngs)

    def __call__(self, x_blf: jax.Array, mask_bl: jax.Array) -> tuple[jax.Array, jax.Array]:
        h_bld = nnx.gelu(self.embed(x_blf))
        m_bl1 = mask_bl[..., None].astype(h_bld.dtype)
        carry_bd = jnp.zeros((h_bld.shape[0], h_bld.shape[-1]), h_bld.dtype)
        for t in range(h_bld.shape[1]):  # L is short (an OULAD course has at most 14)
            new_bd, _ = self.cell(carry_bd, h_bld[:, t])
            carry_bd = jnp.where(m_bl1[:, t] > 0, new_bd, carry_bd)
        mean_bd = (h_bld * m_bl1).sum(1) / jnp.maximum(m_bl1.sum(1), 1.0)
        z_bd = nnx.gelu(self.hidden(jnp.concatenate([carry_bd, mean_bd], -1)))
        return self.pass_head(z_bd)[:, 0], self.outcome_head(z_bd)


@dataclasses.dataclass(frozen=True, kw_only=True)
class OutcomeConfig:
    """Model size and training: AdamW on the sum of the two heads' cross-entropies, stopped
    early on the validation loss (``patience`` epochs without improvement)."""

    dim: int = 32
    learning_rate: float = 3e-3
    weight_decay: float = 1e-4
    batch_size: int = 256
    max_epochs: int = 40
    patience: int = 4
    seed: int = 0


@dataclasses.dataclass(frozen=True)
class Trained:
    """A fitted model: its graph and parameters, and the epoch with the best validation."""

    graphdef: Any
    params: Any
    best_epoch: int
    valid_loss: tuple[float, ...]


def _loss(graphdef, params, batch: dict) -> jax.Array:
    pass_b, outcome_bk = nnx.merge(graphdef, params)(batch["x"], batch["mask"])
    label_b = batch["outcome"]
    bce = optax.sigmoid_binary_cross_entropy(pass_b, (label_b >= _PASS).astype(jnp.float32))
    ce = optax.softmax_cross_entropy_with_integer_labels(outcome_bk, label_b)
    w = batch["weight"]
    return jnp.sum((bce + ce) * w) / jnp.maximum(jnp.sum(w), 1.0)


@functools.cache
def _optimizer(learning_rate: float, weight_decay: float) -> optax.GradientTransformation:
    """One AdamW per setting, so that ``_train_step``'s cache finds it again."""
    return optax.adamw(learning_rate, weight_decay=weight_decay)


@functools.partial(jax.jit, static_argnums=(0, 1), donate_argnums=2)
def _train_step(graphdef, tx, state: dict, batch: dict) -> tuple[dict, jax.Array]:
    """One AdamW step; compiled once per model graph, optimiser and batch shape."""
    loss, grads = jax.value_and_grad(functools.partial(_loss, graphdef))(state["params"], batch)
    updates, opt = tx.update(grads, state["opt"], state["params"])
    return {"params": optax.apply_updates(state["params"], updates), "opt": opt}, loss


_eval_loss = jax.jit(_loss, static_argnums=0)


@functools.partial(jax.jit, static_argnums=0)
def _probs(graphdef, params, x_blf, mask_bl) -> tuple[jax.Array, jax.Array]:
    pass_b, outcome_bk = nnx.merge(graphdef, params)(x_blf, mask_bl)
    return jax.nn.sigmoid(pass_b), jax.nn.softmax(outcome_bk, -1)


def _batches(seqs: Sequences, size: int, order: np.ndarray):
    """Fixed-shape batches in ``order``; the last is padded with rows of weight 0."""
    for start in range(0, len(order), size):
        rows = order[start : start + size]
        pad = np.concatenate([rows, np.repeat(rows[:1], size - len(rows))])
        yield {
            "x": seqs.x_blf[pad],
            "mask": seqs.mask_bl[pad],
            "outcome": seqs.outcome_b[pad],
            "weight": (np.arange(size) < len(rows)).astype(np.float32),
        }


def fit(train: Sequences, valid: Sequences, cfg: OutcomeConfig = OutcomeConfig()) -> Trained:
    """Trains on ``train``, keeping the parameters of the epoch with the lowest loss on
    ``valid``. Shuffling and initialisation follow ``cfg.seed``."""
    model = OutcomeModel(train.x_blf.shape[-1], dim=cfg.dim, rngs=nnx.Rngs(cfg.seed))
    graphdef, params = nnx.split(model)
    tx = _optimizer(cfg.learning_rate, cfg.weight_decay)
    state = {"params": params, "opt": tx.init(params)}
    best, best_epoch, history = params, -1, []
    valid_order = np.arange(len(valid))
    for epoch in range(cfg.max_epochs):
        order = np.random.default_rng((cfg.seed, epoch)).permutation(len(train))
        for batch in _batches(train, cfg.batch_size, order):
            state, _ = _train_step(graphdef, tx, state, batch)
        sums = [
            (float(_eval_loss(graphdef, state["params"], b)) * b["weight"].sum(), b["weight"].sum())
            for b in _batches(valid, cfg.batch_size, valid_order)
        ]
        history.append(float(sum(s for s, _ in sums) / max(sum(n for _, n in sums), 1.0)))
        if history[-1] < min(history[:-1], default=np.inf):
            best, best_epoch = jax.tree.map(jnp.copy, state["params"]), epoch
        elif epoch - best_epoch >= cfg.patience:
            break
    return Trained(graphdef, best, best_epoch, tuple(history))


def predict(
    trained: Trained, seqs: Sequences, batch_size: int = 1024
) -> tuple[np.ndarray, np.ndarray]:
    """``(pass_prob [B], outcome_prob [B, 4])`` of every row of ``seqs``."""
    out_p, out_k = [], []
    for b in _batches(seqs, batch_size, np.arange(len(seqs))):
        p, k = _probs(trained.graphdef, trained.params, b["x"], b["mask"])
        n = int(b["weight"].sum())
        out_p.append(np.asarray(p)[:n])
        out_k.append(np.asarray(k)[:n])
    return np.concatenate(out_p), np.concatenate(out_k)


def metrics(pass_prob: np.ndarray, outcome_prob: np.ndarray, outcome: np.ndarray) -> dict:
    """``auc_pass`` and ``accuracy_pass`` (threshold 0.5) of pass against fail; ``auc_macro``,
    the mean of the four one-vs-rest AUCs, and each of them (``auc_Withdrawn``, ...)."""
    passed = outcome >= _PASS
    ovr = {f"auc_{n}": auc(outcome_prob[:, k], outcome == k) for k, n in enumerate(OUTCOME_NAMES)}
    return {
        "auc_pass": auc(pass_prob, passed),
        "accuracy_pass": float(np.mean((pass_prob >= 0.5) == passed)),
        "auc_macro": float(np.nanmean(list(ovr.values()))),
        **ovr,
    }
