"""Knowledge distillation (``[task] type = "distill"``, ``rectk.distill``): the loss by hand,
the chunked step against the whole computation, refusals, and a tiny distilled run."""

from __future__ import annotations

import functools
import json
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rectk import recipe as recipe_lib
from rectk.distill import Distill, distill_step, distillation_loss
from rectk.errors import RecipeError, RectkError
from tests.conftest import RECIPES, TINY, weights_at

# A student smaller than the tiny teacher (model.dim 16, max_len 10), without dropout so that a
# step's loss can be recomputed by hand.
STUDENT = [
    *TINY,
    "model.dim=8",
    "model.encoder.heads=1",
    "model.encoder.dropout=0.0",
    "model.encoder.attn_dropout=0.0",
    "task.type=distill",
    "name=student",
]


def _student(teacher, tmp_path, *extra: str):
    return recipe_lib.load(
        RECIPES / "quickstart.toml",
        [*STUDENT, f"task.teacher={teacher}", f"run_dir={tmp_path / 'runs'}", *extra],
    )


# ---- The loss ---------------------------------------------------------------------------------


def _log_softmax(x):
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


S = np.array([[2.0, 0.5, -1.0, 0.0], [0.1, 0.2, 3.0, -2.0]])
T = np.array([[1.0, 2.0, 0.0, -1.0], [0.0, 0.0, 4.0, 1.0]])
TARGET = np.array([1, 2])


def test_alpha_one_is_plain_cross_entropy():
    got = distillation_loss(
        jnp.asarray(S), jnp.asarray(T), jnp.asarray(TARGET), alpha=1.0, temperature=3.0
    )
    np.testing.assert_allclose(got, -_log_softmax(S)[[0, 1], TARGET], rtol=1e-6)


@pytest.mark.parametrize("alpha,temp", [(0.0, 1.0), (0.0, 2.0), (0.3, 2.0), (0.5, 4.0)])
def test_loss_equals_hand_computation(alpha, temp):
    ce = -_log_softmax(S)[[0, 1], TARGET]
    log_p, log_q = _log_softmax(T / temp), _log_softmax(S / temp)
    kl = (np.exp(log_p) * (log_p - log_q)).sum(-1)
    want = alpha * ce + (1 - alpha) * temp**2 * kl
    got = distillation_loss(
        jnp.asarray(S), jnp.asarray(T), jnp.asarray(TARGET), alpha=alpha, temperature=temp
    )
    np.testing.assert_allclose(got, want, rtol=1e-5)


def test_soft_term_gradient_keeps_its_scale_with_temperature():
    """T**2: at high temperature the soft term's gradient is about (s - t) / V, whatever T."""
    s, t = jnp.asarray(S[:1] * 0.1), jnp.asarray(T[:1] * 0.1)

    def grad(temp):
        f = lambda x: distillation_loss(x, t, jnp.asarray([1]), alpha=0.0, temperature=temp)[0]  # noqa: E731
        return np.asarray(jax.grad(f)(s))

    np.testing.assert_allclose(grad(50.0), grad(100.0), rtol=0.02, atol=1e-5)
    # and no gradient reaches the teacher's scores
    g_t = jax.grad(
        lambda x: distillation_loss(s, x, jnp.asarray([1]), alpha=0.0, temperature=2.0)[0]
    )(t)
    assert not np.any(np.asarray(g_t))


# ---- The step ---------------------------------------------------------------------------------


def test_chunked_step_loss_equals_the_whole_computation(tiny_run, tmp_path):
    """The step's loss (scores built a few rows at a time, padding rows skipped, a teacher
    window shorter than the student's) equals the loss computed on whole [N, V] matrices."""
    from rectk.predict import load_run
    from rectk.setup import create_state, prepare, setup, train_batches
    from rectk.sharding import make_mesh

    # The student's windows (12) are longer than the teacher's (10): its first 2 positions
    # train on the true item alone.
    cfg = _student(tiny_run.path, tmp_path, "model.max_len=12").config
    data, sp = prepare(cfg)
    s = setup(cfg, data, sp, make_mesh())
    teacher = load_run(tiny_run.path)
    batch = {k: jnp.asarray(v) for k, v in next(iter(train_batches(s, sp))).items()}
    key = jax.random.key(0)

    def step_loss(chunk):
        d = Distill(
            teacher=teacher.bound,
            teacher_len=10,
            vocab_size=s.num_items + 1,
            alpha=0.3,
            temperature=2.0,
            chunk=chunk,
        )
        step = jax.jit(functools.partial(distill_step, s.bound, d))
        _, metrics = step(create_state(s), teacher.weights, batch, key)
        return float(metrics["loss"])

    @jax.jit
    def whole_scores(state, t_weights):
        """Student and teacher scores [N, V - 1] of every position, built whole."""
        student = s.bound.model(state["params"], state["rest"])
        table = student.item_table()
        h = student.encode(batch["input"], table, users_b=batch["user"]).reshape(-1, 8)
        t_model = teacher.bound.model(t_weights["params"], t_weights["rest"])
        t_table = t_model.item_table()
        t_h = t_model.encode(batch["input"][:, 2:], t_table, users_b=batch["user"])
        t_h = jnp.pad(t_h, [(0, 0), (2, 0), (0, 0)]).reshape(-1, 16)
        return student.scoring(table)[0](h, table[1:]), t_model.scoring(t_table)[0](
            t_h, t_table[1:]
        )

    s_nv, t_nv = whole_scores(create_state(s), teacher.weights)
    target = np.asarray(batch["target"]).reshape(-1)
    mixed = distillation_loss(s_nv, t_nv, jnp.maximum(target - 1, 0), alpha=0.3, temperature=2.0)
    hard = distillation_loss(s_nv, t_nv, jnp.maximum(target - 1, 0), alpha=1.0, temperature=1.0)
    seen = np.tile(np.arange(12) >= 2, len(target) // 12)
    rows = np.where(seen, mixed, hard)[target > 0]
    want = float(rows.mean())
    assert 0 < (target > 0).sum() < len(target)  # padding rows exist and are skipped
    np.testing.assert_allclose(step_loss(7), want, rtol=1e-4)
    np.testing.assert_allclose(step_loss(4096), want, rtol=1e-4)


# ---- Refusals ---------------------------------------------------------------------------------


def test_alpha_and_temperature_out_of_range_are_recipe_errors(tmp_path):
    with pytest.raises(RecipeError, match=r"task.alpha.*\[0, 1\]"):
        _student("runs/x", tmp_path, "task.alpha=2.0")
    with pytest.raises(RecipeError, match=r"task.temperature.*> 0"):
        _student("runs/x", tmp_path, "task.temperature=0.0")


def test_missing_unfinished_or_empty_teacher_is_refused(tiny_run, tmp_path):
    r = _student(tmp_path / "nowhere", tmp_path)
    with pytest.raises(RecipeError, match=r"task.teacher: .*nowhere does not exist"):
        r.config.task.run(r, progress=False)
    with pytest.raises(RecipeError, match=r"task.teacher: name the directory"):
        _student("", tmp_path).config.task.check(r.config)
    unfinished = tmp_path / "unfinished"
    shutil.copytree(tiny_run.path, unfinished)
    (unfinished / "results.json").unlink()
    with pytest.raises(RecipeError, match="has not finished training"):
        _student(unfinished, tmp_path).config.task.check(r.config)
    assert not (tmp_path / "runs").exists()  # refused before anything was written


def test_teacher_with_another_item_vocabulary_is_refused(tiny_run, tmp_path):
    """A student on other data: refused by count, naming the teacher's vocab.json."""
    lines = [f"u{u} " + " ".join(f"i{(u + j) % 30}" for j in range(6)) for u in range(40)]
    (tmp_path / "seq.txt").write_text("\n".join(lines) + "\n")
    r = recipe_lib.load(
        RECIPES / "quickstart.toml",
        [
            *[o for o in STUDENT if not o.startswith("data.")],
            "data.type=sequences",
            f"data.path={tmp_path / 'seq.txt'}",
            f"task.teacher={tiny_run.path}",
            f"run_dir={tmp_path / 'runs'}",
        ],
    )
    with pytest.raises(
        RectkError, match=r"vocab.json holds 654 item ids, the student's data .* 30"
    ):
        r.config.task.run(r, progress=False)
    assert not (tmp_path / "runs" / "student").exists()


# ---- A tiny distilled run ---------------------------------------------------------------------


@pytest.mark.slow
def test_tiny_distilled_run_finishes_without_the_teacher_in_its_checkpoints(tiny_run, tmp_path):
    from rectk.predict import load_run

    r = _student(tiny_run.path, tmp_path, "train.steps=6", "train.eval_every=3")
    summary = r.config.task.run(r, progress=False)
    path = tmp_path / "runs" / "student"
    results = json.loads((path / "results.json").read_text())
    assert results["last_step"] == 6 and np.isfinite(results["test"]["model"]["ndcg@10"])
    assert summary["best_step"] == results["best_step"]
    # The checkpoint holds the student's weights only: none of the teacher's dim-16 arrays.
    saved = weights_at(path, results["best_step"])
    shapes = {a.shape for a in jax.tree.leaves(saved)}
    assert all(16 not in shape for shape in shapes), shapes
    teacher_size = sum(a.size for a in jax.tree.leaves(load_run(tiny_run.path).weights))
    assert sum(a.size for a in jax.tree.leaves(saved)) < teacher_size
    # and the run serves like any next-item run
    run = load_run(path)
    assert run.cfg.model.dim == 8 and run.finished
