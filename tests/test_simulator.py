"""The learner simulator and the university_courses data set (rectk_plugins.datasets.university)."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import re
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from rectk.data.types import Catalogue, Dataset, Interactions
from rectk.errors import RecipeError
from rectk_plugins.datasets.university import (
    LearnerSimulator,
    SimulatorConfig,
    UniversityCourses,
    choice_probabilities,
    course_group,
    course_levels,
    load_university_courses,
    parse_course_level,
    path_log_probability,
    read_course_catalogue,
)

ROOT = Path(__file__).resolve().parents[1]
BUNDLED = ROOT / "plugins" / "datasets" / "university" / "data"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "university-courses"


@pytest.fixture(scope="module")
def catalogue() -> Catalogue:
    return read_course_catalogue(BUNDLED / "cs_courses.csv", BUNDLED / "cs_edges.csv")


@pytest.fixture(scope="module")
def default_run(catalogue) -> tuple[LearnerSimulator, Interactions, float]:
    """The default simulation (3000 learners) and the seconds it took, set-up included."""
    start = time.perf_counter()
    sim = LearnerSimulator(catalogue, SimulatorConfig())
    inter = sim.simulate()
    return sim, inter, time.perf_counter() - start


def _histories(inter: Interactions) -> dict[int, list[int]]:
    seqs: dict[int, list[int]] = defaultdict(list)
    for u, i in zip(inter.user.tolist(), inter.item.tolist(), strict=True):
        seqs[u].append(i)
    return seqs


# ----------------------------------------------------------------------------------------------
# Course features
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("course_id", "level"),
    [
        ("cmu_15-221", 2),
        ("mit_6.641", 5),
        ("mit_6.0001", 1),
        ("mit_6.01", 1),
        ("mit_6.UR", None),
        ("mit_6.S04", None),
        ("psu_CSE 551", 5),
        ("psu_CMPSC 431W", 4),
        ("iowa_CS:3110", 3),
        ("purdue_CS 50300", 5),
        ("caltech_CS 1", 1),
        ("caltech_CMS/CS/EE 144", 1),
        ("stanford_CS 106A", 1),
        ("stanford_CS 92SI", 1),
        ("princeton_COS  432,ELE  432", 4),
        ("msu_CSE 914", 5),
        ("no-number", None),
    ],
)
def test_parse_course_level(course_id, level):
    assert parse_course_level(course_id) == level


def test_course_group_and_levels(catalogue):
    assert course_group("mit_6.006") == "mit"
    assert course_group("princeton_COS  109,EGR  109") == "princeton"
    assert course_group("plain") == ""
    levels = course_levels(catalogue.item_ids)
    assert levels.shape == (len(catalogue.item_ids),)
    assert set(levels.tolist()) <= {1, 2, 3, 4, 5}
    by_group: dict[str, set[int]] = defaultdict(set)
    for course, level in zip(catalogue.item_ids, levels.tolist(), strict=True):
        by_group[course_group(course)].add(level)
    assert len(by_group) == 11
    # Caltech and Purdue numbers do not spread by leading digit: ranked into five levels.
    assert by_group["caltech"] == by_group["purdue"] == {1, 2, 3, 4, 5}
    assert levels[catalogue.item_ids.index("cmu_15-221")] == 2
    assert levels[catalogue.item_ids.index("mit_6.UR")] == 5  # MIT's median level


def test_topics_and_prerequisite_features(default_run, catalogue):
    sim, _, _ = default_run
    v, t = len(catalogue.item_ids) + 1, sim.config.num_topics
    assert sim.topic_vt.shape == (v, t)
    np.testing.assert_allclose(sim.topic_vt[1:].sum(axis=1), 1.0)
    assert np.all(sim.topic_vt >= 0)
    # Every topic is the main one of several courses.
    assert np.bincount(sim.topic_vt[1:].argmax(axis=1), minlength=t).min() >= 5
    # Two data-structures courses share a main topic; circuits are elsewhere.
    main = sim.topic_vt.argmax(axis=1)
    idx = {c: i + 1 for i, c in enumerate(catalogue.item_ids)}
    assert main[idx["illinois_CS 225"]] == main[idx["maryland_CMSC 420"]]
    assert main[idx["illinois_CS 225"]] != main[idx["mit_6.002"]]
    assert sim.num_prereq_v.sum() == len(catalogue.prerequisites)
    assert abs(sim.popularity_v[1:].mean()) < 1e-9


# ----------------------------------------------------------------------------------------------
# Simulated histories
# ----------------------------------------------------------------------------------------------


def test_default_histories_are_well_formed(default_run, catalogue):
    sim, inter, _ = default_run
    cfg = sim.config
    assert inter.num_users == cfg.num_learners == 3000
    assert inter.user_ids[0] == "learner_0001" and inter.user_ids[-1] == "learner_3000"
    assert inter.item_ids == catalogue.item_ids
    assert inter.value is None
    assert inter.user.dtype == inter.item.dtype == np.int32
    assert inter.time.dtype == np.float64
    assert np.all(inter.time == np.round(inter.time))
    assert inter.item.min() >= 1 and inter.item.max() <= len(catalogue.item_ids)
    assert np.all(np.diff(inter.user) >= 0)  # sorted by learner
    same = np.diff(inter.user) == 0
    assert np.all(np.diff(inter.time)[same] > 0)  # times strictly increase per learner
    seqs = _histories(inter)
    assert sorted(seqs) == list(range(1, 3001))
    lengths = np.array([len(s) for s in seqs.values()])
    assert lengths.min() >= cfg.min_courses and lengths.max() <= cfg.max_courses
    assert 11 <= lengths.mean() <= 15
    assert all(len(set(s)) == len(s) for s in seqs.values())  # no course twice
    # Most courses come from the learner's home university.
    home = sim.initial_states()[0].group_b
    share = np.mean(sim.group_v[inter.item] == home[inter.user - 1])
    assert 0.85 <= share <= 0.95
    assert len(np.unique(inter.item)) >= 600  # nearly the whole catalogue is used


def test_simulation_is_fast(default_run, catalogue):
    *_, seconds = default_run
    if seconds >= 5.0:  # one retry, in case the machine was busy
        start = time.perf_counter()
        LearnerSimulator(catalogue, SimulatorConfig()).simulate()
        seconds = time.perf_counter() - start
    assert seconds < 5.0, f"3000 learners took {seconds:.1f} s"


def test_same_seed_same_bytes_other_seed_differs(default_run, catalogue):
    sim, inter, _ = default_run
    again = LearnerSimulator(catalogue, SimulatorConfig()).simulate()
    for name in ("user", "item", "time"):
        assert getattr(again, name).tobytes() == getattr(inter, name).tobytes()
    assert again.user_ids == inter.user_ids and again.fingerprint() == inter.fingerprint()
    assert sim.simulate().fingerprint() == inter.fingerprint()  # simulate() can be repeated
    small = LearnerSimulator(catalogue, SimulatorConfig(num_learners=300)).simulate()
    other = LearnerSimulator(catalogue, SimulatorConfig(num_learners=300, seed=1)).simulate()
    assert other.fingerprint() != small.fingerprint()
    assert not np.array_equal(other.item[:50], small.item[:50])
    assert not np.array_equal(other.time[:50], small.time[:50])


def test_fewer_learners_share_course_features(default_run, catalogue):
    sim, _, _ = default_run
    small = LearnerSimulator(catalogue, SimulatorConfig(num_learners=10))
    np.testing.assert_array_equal(small.topic_vt, sim.topic_vt)
    np.testing.assert_array_equal(small.popularity_v, sim.popularity_v)


def _violations(inter: Interactions, catalogue: Catalogue) -> int:
    prereqs: dict[int, set[int]] = defaultdict(set)
    for course, prereq in catalogue.prerequisites.tolist():
        prereqs[course].add(prereq)
    count = 0
    for seq in _histories(inter).values():
        seen: set[int] = set()
        for item in seq:
            count += not prereqs[item] <= seen
            seen.add(item)
    return count


def test_strict_prerequisites_are_always_respected(catalogue):
    cfg = SimulatorConfig(num_learners=600, prerequisite_strictness=1.0, seed=3)
    inter = LearnerSimulator(catalogue, cfg).simulate()
    assert _violations(inter, catalogue) == 0
    lengths = np.bincount(inter.user)[1:]
    assert lengths.min() >= cfg.min_courses  # nobody runs out of courses


def test_strictness_sets_the_violation_rate(default_run, catalogue):
    _, inter, _ = default_run
    rate = _violations(inter, catalogue) / len(inter)  # default strictness 0.9
    assert 0.02 <= rate <= 0.1
    loose = LearnerSimulator(
        catalogue, SimulatorConfig(num_learners=600, prerequisite_strictness=0.0)
    ).simulate()
    assert _violations(loose, catalogue) / len(loose) > 0.3


def _hit_rates(inter: Interactions, k: int = 10) -> dict[str, float]:
    """HR@k on each learner's held-out last course, trained on the courses before it.

    ``popularity``: most-taken courses. ``markov``: counts of previous -> next course, scored
    from the learner's last course. ``markov_from_first``: the same counts, scored from the
    learner's first course. ``markov_shuffled``: counts from randomly reordered histories.
    Seen courses are never recommended; ties go to the more popular course.
    """
    v = inter.num_items + 1
    seqs = _histories(inter)
    rng = np.random.default_rng(0)
    pop_v = np.zeros(v)
    trans_vv = np.zeros((v, v))
    shuffled_vv = np.zeros((v, v))
    for seq in seqs.values():
        train = seq[:-1]
        np.add.at(pop_v, train, 1.0)
        np.add.at(trans_vv, (train[:-1], train[1:]), 1.0)
        perm = rng.permutation(train)
        np.add.at(shuffled_vv, (perm[:-1], perm[1:]), 1.0)
    tie_break_v = 1e-3 * pop_v / pop_v.max()
    hits = dict.fromkeys(("popularity", "markov", "markov_from_first", "markov_shuffled"), 0)
    for seq in seqs.values():
        history, target = seq[:-1], seq[-1]
        candidates = {
            "popularity": pop_v,
            "markov": trans_vv[history[-1]] + tie_break_v,
            "markov_from_first": trans_vv[history[0]] + tie_break_v,
            "markov_shuffled": shuffled_vv[history[-1]] + tie_break_v,
        }
        for name, scores in candidates.items():
            scores = scores.copy()
            scores[0] = -np.inf
            scores[history] = -np.inf
            hits[name] += target in np.argsort(-scores, kind="stable")[:k]
    return {name: h / len(seqs) for name, h in hits.items()}


def test_order_is_learnable_but_not_trivial(default_run):
    _, inter, _ = default_run
    hr = _hit_rates(inter)
    print("HR@10", {name: round(value, 3) for name, value in hr.items()})
    # A sequence model beats popularity clearly ...
    assert hr["markov"] >= hr["popularity"] + 0.25
    assert hr["markov"] >= 3 * hr["popularity"]
    # ... but not trivially: room is left for better models.
    assert hr["markov"] <= 0.75
    # Order matters: the last course says more than the first, and true order beats shuffled.
    assert hr["markov"] >= hr["markov_from_first"] + 0.15
    assert hr["markov"] >= hr["markov_shuffled"] + 0.04


# ----------------------------------------------------------------------------------------------
# The choice model as an API
# ----------------------------------------------------------------------------------------------


def test_choice_probabilities_batch(default_run):
    sim, _, _ = default_run
    states, _ = sim.initial_states()
    first = states.take(np.arange(8))
    v = sim.num_items + 1
    taken = np.zeros((8, v), bool)
    taken[:, 1:40] = True
    probs = sim.choice_probabilities(first, taken)
    assert probs.shape == (8, v)
    np.testing.assert_array_equal(choice_probabilities(sim, first, taken), probs)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)
    assert np.all(probs[:, 0] == 0) and np.all(probs[taken] == 0)
    assert np.all(probs >= 0)
    # The same numbers one learner at a time (1-D taken, B = 1).
    for b in range(8):
        one = sim.choice_probabilities(first.take(np.array([b])), taken[b])
        assert one.shape == (v,)
        np.testing.assert_allclose(one, probs[b], rtol=1e-12, atol=1e-15)
    with pytest.raises(ValueError, match="expected"):
        sim.choice_probabilities(first, taken[:, :10])


def test_choice_probabilities_follow_the_story(catalogue):
    cfg = SimulatorConfig(num_learners=1, prerequisite_strictness=1.0, other_group_prob=0.0)
    sim = LearnerSimulator(catalogue, cfg)
    state = sim.initial_state(group="cmu", level=1.0)
    taken = np.zeros(sim.num_items + 1, bool)
    probs = sim.choice_probabilities(state, taken)
    allowed = (sim.group_v == sim.groups.index("cmu")) & (sim.num_prereq_v == 0)
    assert probs[~allowed].sum() == 0 and probs[allowed].sum() == pytest.approx(1.0)
    # Once 15-112 is taken, 15-122 (which needs only it) opens.
    idx = {c: i + 1 for i, c in enumerate(catalogue.item_ids)}
    assert probs[idx["cmu_15-122"]] == 0
    taken[idx["cmu_15-112"]] = True
    after = sim.choice_probabilities(sim.advance(state, [idx["cmu_15-112"]]), taken)
    assert after[idx["cmu_15-122"]] > 0
    # Higher temperature spreads the choice.
    hot = LearnerSimulator(catalogue, dataclasses.replace(cfg, temperature=5.0))
    hot_probs = hot.choice_probabilities(state, np.zeros_like(taken))
    assert hot_probs.max() < probs.max()
    # A tiny temperature still gives a proper distribution.
    cold = LearnerSimulator(catalogue, dataclasses.replace(cfg, temperature=1e-3))
    cold_probs = cold.choice_probabilities(state, np.zeros_like(taken))
    assert cold_probs.sum() == pytest.approx(1.0) and cold_probs.max() > 0.99


def test_path_log_probability(catalogue):
    cfg = SimulatorConfig(num_learners=1, prerequisite_strictness=1.0)
    sim = LearnerSimulator(catalogue, cfg)
    idx = {c: i + 1 for i, c in enumerate(catalogue.item_ids)}
    state = sim.initial_state(group="cmu")
    good = [idx["cmu_15-112"], idx["cmu_15-122"]]
    assert np.isfinite(sim.path_log_probability(state, good))
    assert path_log_probability(sim, state, good) == sim.path_log_probability(state, good)
    # The sum of each step's log-probability under the choice model, the state advancing.
    taken = np.zeros(sim.num_items + 1, bool)
    first = choice_probabilities(sim, state, taken)[good[0]]
    taken[good[0]] = True
    second = choice_probabilities(sim, sim.advance(state, [good[0]]), taken)[good[1]]
    assert path_log_probability(sim, state, good) == pytest.approx(np.log(first * second))
    assert path_log_probability(sim, state, [good[0], good[0]]) == float("-inf")
    assert sim.path_log_probability(state, good[::-1]) == float("-inf")
    assert sim.path_log_probability(state, []) == 0.0


def test_tiny_catalogue_and_stopping_early():
    cat = Catalogue(
        item_ids=("a_101", "a_201", "b_101"),
        titles=("Intro", "Next", "Other"),
        descriptions=("", "", ""),
        prerequisites=np.array([[2, 1]], np.int32),
    )
    cfg = SimulatorConfig(
        num_learners=5, min_courses=3, max_courses=5, num_topics=2, prerequisite_strictness=1.0
    )
    inter = LearnerSimulator(cat, cfg).simulate()
    seqs = _histories(inter)
    assert all(sorted(s) == [1, 2, 3] for s in seqs.values())  # all taken, then stop
    assert all(s.index(1) < s.index(2) for s in seqs.values())


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("num_learners", 0),
        ("min_courses", 0),
        ("max_courses", 2),
        ("temperature", 0.0),
        ("prerequisite_strictness", 1.5),
        ("other_group_prob", -0.1),
        ("recency_decay", 1.0),
        ("start_level_probs", (0.0, 0.0)),
        ("step_days", 0.0),
    ],
)
def test_bad_config_is_a_recipe_error(field, value):
    with pytest.raises(RecipeError, match=field):
        SimulatorConfig(**{"min_courses": 3, field: value})


def test_unknown_group_is_a_recipe_error(default_run):
    sim, _, _ = default_run
    with pytest.raises(RecipeError, match="unknown group 'hogwarts'"):
        sim.initial_state(group="hogwarts")


def test_docs_show_the_config_defaults():
    """docs/simulator.md's parameter table, the loader and the recipe plugin: one set of values."""
    text = (ROOT / "docs" / "simulator.md").read_text()
    table = text.split("## Parameters and defaults", 1)[1].split("\n\n## ", 1)[0]
    shown = {
        m.group(1): ast.literal_eval(m.group(2))
        for m in re.finditer(r"^\| `(\w+)` \| ([^|]+?) \|", table, re.M)
    }
    want = {f.name: f.default for f in dataclasses.fields(SimulatorConfig)}
    assert shown == want
    plugin = {f.name: f.default for f in dataclasses.fields(UniversityCourses)}
    loader = inspect.signature(load_university_courses).parameters
    assert {k: p.default for k, p in loader.items()} == plugin
    assert plugin == {k: want[k] for k in plugin}


# ----------------------------------------------------------------------------------------------
# The data-set function
# ----------------------------------------------------------------------------------------------


def test_load_university_courses(default_run):
    data = load_university_courses(num_learners=200, seed=5, max_courses=12)
    assert isinstance(data, Dataset)
    assert data.name == "university_courses"
    assert "cs_courses.csv" in data.source and "CC BY-NC-SA 4.0" in data.source
    cat = data.catalogue
    assert cat is not None and len(cat.item_ids) == 654 and cat.prerequisites.shape == (861, 2)
    inter = data.interactions
    assert inter.num_users == 200 and inter.item_ids == cat.item_ids
    lengths = np.bincount(inter.user)[1:]
    assert lengths.min() >= 6 and lengths.max() <= 12
    again = load_university_courses(num_learners=200, seed=5, max_courses=12)
    assert again.interactions.fingerprint() == inter.fingerprint()
    # The defaults are the default simulation.
    _, default_inter, _ = default_run
    full = load_university_courses()
    assert full.interactions.fingerprint() == default_inter.fingerprint()
    with pytest.raises(RecipeError, match="max_courses"):
        load_university_courses(min_courses=8, max_courses=4)
