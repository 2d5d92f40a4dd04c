"""Exercise recommendation: the target-difficulty reranker, recommendations from a finished
knowledge-tracing run, and the closed-loop simulated learner."""

import jax.numpy as jnp
import numpy as np
import pytest

from rectk.contracts import RerankContext
from rectk.kt import simulator as sim
from rectk.kt.exercise import concept_topics, recommend_exercises, select_exercises
from rectk.kt.predict import load_kt_run
from rectk.kt.train import train_and_evaluate
from rectk.rerank import chain, rerank
from rectk.testing import check_reranker
from rectk_plugins.rerankers import TargetDifficulty
from rectk_plugins.rerankers.difficulty import band_fit, concept_weakness
from tests.test_kt_task import _recipe, write_pykt


def _ctx(success_v, concept_of):
    concept_of = np.asarray(concept_of)
    return RerankContext(
        history_bh=jnp.zeros((1, 1), jnp.int32),
        item_topics_vt=jnp.asarray(concept_topics(concept_of, int(concept_of.max()))),
        success_bv=jnp.asarray([success_v], jnp.float32),
    )


def test_band_fit_is_one_inside_and_falls_outside():
    fit = np.asarray(band_fit(jnp.array([0.7, 0.8, 0.85, 0.6, 0.95, jnp.nan]), 0.7, 0.85, 0.1))
    assert fit[:3].tolist() == [1.0, 1.0, 1.0]
    assert 0 < fit[3] < 1 and 0 < fit[4] < 1 and fit[5] == 0.0


def test_band_only_picks_the_candidates_inside_the_band_first():
    # items 1..6, one concept each; success of items 2 and 5 inside the band
    success = [np.nan, 0.2, 0.8, 0.99, 0.5, 0.75, 0.95]
    ctx = _ctx(success, [0, 1, 2, 3, 4, 5, 6])
    ids = jnp.asarray([[1, 2, 3, 4, 5, 6]], jnp.int32)
    scores = jnp.zeros((1, 6), jnp.float32)
    out, _ = TargetDifficulty(coverage=0.0)(ids, scores, ctx, k=3)
    assert set(np.asarray(out[0, :2]).tolist()) == {2, 5}
    assert int(out[0, 2]) == 6  # 0.95 is nearer the band than 0.5 (0.10 against 0.20)
    assert TargetDifficulty(coverage=0.0).requires() == frozenset({"success"})
    assert TargetDifficulty().requires() == frozenset({"success", "topics"})


def test_coverage_prefers_the_weakest_concept_and_spreads_the_list():
    # concept 1: items 1-2 (mastered); concept 2: items 3-4 (weak); concept 3: items 5-6
    success = [np.nan, 0.80, 0.95, 0.78, 0.30, 0.76, 0.60]
    concept_of = [0, 1, 1, 2, 2, 3, 3]
    weak = np.asarray(
        concept_weakness(jnp.asarray([success]), _ctx(success, concept_of).item_topics_vt)
    )
    assert weak[0, 2] == 1.0 and weak[0, 1] == 0.0  # concept 2 weakest, concept 1 strongest
    ids = jnp.asarray([[1, 2, 3, 4, 5, 6]], jnp.int32)
    scores = jnp.zeros((1, 6), jnp.float32)
    ctx = _ctx(success, concept_of)
    band_only, _ = TargetDifficulty(coverage=0.0)(ids, scores, ctx, k=3)
    assert np.asarray(band_only[0]).tolist() == [1, 3, 5]  # inside the band, candidate order
    covered, _ = TargetDifficulty(coverage=0.5)(ids, scores, ctx, k=3)
    assert int(covered[0, 0]) == 3  # in the band and in the weakest concept
    # then the next weakest concept in the band, not the weakest again far from the band
    assert int(covered[0, 1]) == 5


@pytest.mark.parametrize("coverage", [0.0, 1.0])
def test_target_difficulty_keeps_the_reranker_contract(coverage):
    check_reranker(TargetDifficulty(coverage=coverage, low=0.5, high=0.9))


def test_chunked_chain_splits_success_with_the_learners():
    rng = np.random.default_rng(0)
    batch, num, v = 5, 6, 20
    ids = jnp.asarray(np.stack([rng.choice(np.arange(1, v), num, replace=False) for _ in range(5)]))
    scores = jnp.asarray(rng.normal(size=(batch, num)), jnp.float32)
    ctx = RerankContext(
        history_bh=jnp.zeros((batch, 2), jnp.int32),
        item_topics_vt=jnp.asarray(rng.dirichlet(np.ones(3), v), jnp.float32),
        success_bv=jnp.asarray(rng.random((batch, v)), jnp.float32),
    )
    stages = [TargetDifficulty()]
    whole = rerank(stages, ids, scores, ctx, 3, rows_per_chunk=0)
    chunked = chain(stages, 3, rows_per_chunk=2)(ids, scores, ctx)
    assert (np.asarray(whole[0]) == np.asarray(chunked[0])).all()


def test_select_exercises_respects_allowed_and_k():
    success = np.asarray([0.75, 0.8, 0.1, 0.78], np.float32)
    concept_of = np.asarray([0, 1, 1, 2, 2])
    allowed = np.asarray([False, True, True, True])
    picked = select_exercises(success, concept_of, 2, 2, coverage=0.0, allowed_q=allowed)
    assert picked.tolist() == [4, 2]  # 0.78 nearer the band's middle than 0.8; 1 not allowed
    with pytest.raises(ValueError, match="exceeds"):
        select_exercises(success, concept_of, 2, 4, allowed_q=allowed)


# ---------------------------------------------------------------------------------------------
# The simulated learner.
# ---------------------------------------------------------------------------------------------


def _env(**law):
    rng = np.random.default_rng(0)
    concept_of = np.concatenate([[0], np.repeat(np.arange(1, 6), 4)])  # 20 questions, 5 concepts
    q = rng.integers(1, 21, 2000)
    r = (rng.random(2000) < np.linspace(0.3, 0.95, 21)[q]).astype(np.int32)
    return sim.SimulatedLearners.from_answers(q, r, concept_of, 5, **law)


def test_learning_is_largest_near_the_sweet_spot():
    env = _env()
    m = np.full(6, 0.5)
    p = env.success(m, np.arange(1, 21))
    gains = np.asarray([env.practise(m, q)[env.concept_of[q]] - 0.5 for q in range(1, 21)])
    best = np.argmax(gains)
    assert abs(p[best] - env.sweet) == np.min(np.abs(p - env.sweet))
    assert (env.practise(m, 1)[[c for c in range(6) if c != env.concept_of[1]]] == 0.5).all()
    # easier questions (higher share right in the data) are likelier right
    assert env.success(m, 20) > env.success(m, 1)


def test_simulation_is_seeded_and_the_oracle_beats_random():
    env = _env()
    policies = {
        "random": sim.random_policy,
        "easiest": sim.by_rate(env.right_rate, easiest=True),
        "hardest": sim.by_rate(env.right_rate, easiest=False),
        "oracle": None,
    }
    a = sim.simulate(env, policies, learners=40, steps=6, warmup=5, seed=1)
    b = sim.simulate(env, policies, learners=40, steps=6, warmup=5, seed=1)
    assert a == b
    assert a["oracle"]["gain"] > a["random"]["gain"] > 0
    assert a["oracle"]["gain"] > a["hardest"]["gain"]
    assert a["easiest"]["success"] > a["hardest"]["success"]
    assert all(v["se"] > 0 for v in a.values())


# ---------------------------------------------------------------------------------------------
# From a finished knowledge-tracing run.
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def kt_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("exercise")
    data = write_pykt(root / "data", learners=60, lengths=(5, 30))
    recipe = _recipe(root, data, "train.epochs=2")
    train_and_evaluate(recipe, progress=False, echo=lambda *a: None)
    return load_kt_run(root / "runs" / "kt")


def test_recommend_exercises_from_a_run(kt_run):
    q, r = kt_run.learner("u0")
    recs = recommend_exercises(kt_run, q, r, k=3, exclude=q[:1])
    assert len(set(recs.question.tolist())) == 3 and int(q[0]) not in recs.question
    p = kt_run.success(q, r)
    assert np.allclose(recs.success, p[recs.question - 1])
    assert (recs.concept == kt_run.concept_of[recs.question]).all()
    # the band alone: the first pick is the question nearest the band
    (first,) = recommend_exercises(kt_run, q, r, k=1, coverage=0.0).question
    dist = np.maximum(np.maximum(0.7 - p, p - 0.85), 0)
    assert dist[first - 1] == dist.min()


def test_kt_policies_run_in_closed_loop(kt_run):
    env = sim.SimulatedLearners.from_run(kt_run)
    policies = {"target": sim.target_band(kt_run), "kt_argmax": sim.kt_argmax(kt_run)}
    out = sim.simulate(env, policies, learners=3, steps=3, warmup=4, seed=0)
    assert set(out) == {"target", "kt_argmax"}
    assert all(np.isfinite(v["gain"]) and v["gain"] >= 0 for v in out.values())
