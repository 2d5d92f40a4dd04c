"""Learning-path planning: valid paths on random graphs, clear errors, exact beam search, the
Junyi exercise graph and ``rectk plan`` on a trained run."""

from __future__ import annotations

import contextlib
import io
import itertools
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rectk import registry
from rectk.errors import PlanError
from rectk.plan import (
    PrerequisiteGraph,
    closure,
    dependents_prior,
    make_request,
    path_problems,
    plan_path,
    prior_scorer,
    step_log_probs,
    violations,
)
from rectk.testing import tiny_scorer
from rectk_plugins.planners import BeamSearch, PopularityOrder, RandomOrder
from tests.conftest import shared

PLANNERS = [
    BeamSearch(),
    BeamSearch(width=1),
    BeamSearch(width=3),
    RandomOrder(),
    PopularityOrder(),
]


@st.composite
def dags(draw, max_items: int = 14):
    """A random DAG under a random labelling (a prerequisite of item ``order[j]`` is some
    ``order[i]``, ``i < j``), a random history and a goal not in it."""
    n = draw(st.integers(2, max_items))
    order = draw(st.permutations(range(1, n + 1)))
    pairs = draw(
        st.lists(
            st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)).filter(lambda e: e[0] != e[1]),
            max_size=3 * n,
        )
    )
    edges = sorted({(order[max(a, b)], order[min(a, b)]) for a, b in pairs})
    graph = PrerequisiteGraph.from_pairs([f"c{i}" for i in range(1, n + 1)], edges or [])
    history = draw(st.lists(st.integers(1, n), unique=True, max_size=n - 1))
    open_ = [i for i in range(1, n + 1) if i not in history]
    goal = draw(st.lists(st.sampled_from(open_), min_size=1, max_size=3, unique=True))
    return graph, np.asarray(history, np.int64), np.asarray(goal, np.int64), draw(st.integers(0, 9))


@settings(max_examples=60, deadline=None)
@given(case=dags())
def test_every_planned_path_is_valid_reaches_the_goal_and_repeats_nothing(case):
    graph, history, goal, seed = case
    v = graph.prereq_vp.shape[0]
    request = make_request(
        graph,
        history=history,
        goal=goal,
        scorer=tiny_scorer(seed=seed, vocab_size=v),
        popularity_v=np.random.default_rng(seed).random(v).astype(np.float32),
        seed=seed,
    )
    need = set(request.required.tolist())
    for planner in PLANNERS:
        path = plan_path(planner, request).path
        assert not path_problems(request, path), (planner, path)
        assert violations(path, history, graph.prereq_vp) == 0
        assert len(set(path.tolist())) == len(path)
        assert set(goal.tolist()) <= set(path.tolist())
        assert set(path.tolist()) == need  # the shortest path: exactly the closure


@settings(max_examples=40, deadline=None)
@given(case=dags(), data=st.data())
def test_a_cycle_on_the_way_to_the_goal_is_one_clear_error(case, data):
    graph, _, goal, _ = case
    g = int(goal[0])
    on_way = closure(graph, np.array([g]), np.zeros(0, np.int64)).tolist()
    x = data.draw(st.sampled_from(on_way))  # x lies under g: x requiring g closes a cycle
    prereq = graph.prereq_vp
    pairs = [(i, int(p)) for i in range(1, prereq.shape[0]) for p in prereq[i] if p > 0]
    looped = PrerequisiteGraph.from_pairs(graph.item_ids, [*pairs, (x, g)])
    with pytest.raises(PlanError, match="cycle") as err:
        closure(looped, np.array([g]), np.zeros(0, np.int64))
    msg = str(err.value)
    loop = msg.split("cycle, ")[1].split(" (each")[0].split(" -> ")
    assert {f"c{g}", f"c{x}"} <= set(loop) and loop[0] == loop[-1] and "\n" not in msg


def test_cycle_message_names_the_courses_on_it():
    graph = PrerequisiteGraph.from_pairs(("a", "b", "c", "d"), [[4, 1], [1, 2], [2, 3], [3, 1]])
    with pytest.raises(PlanError) as err:
        closure(graph, np.array([4]), np.zeros(0, np.int64))
    assert str(err.value) == (
        "goal d is unreachable: its prerequisites form a cycle, a -> b -> c -> a "
        "(each requires the next)"
    )


def test_unreachable_goals_say_why():
    graph = PrerequisiteGraph.from_pairs(("a", "b", "c"), [[2, 1], [3, 2]], missing={1: ("ghost",)})
    with pytest.raises(PlanError, match="goal c is unreachable: a requires ghost, not in"):
        closure(graph, np.array([3]), np.zeros(0, np.int64))
    assert closure(graph, np.array([3]), np.array([1])).tolist() == [2, 3]  # a already taken
    plain = PrerequisiteGraph.from_pairs(("a", "b", "c"), [[2, 1], [3, 2]])
    scorer = prior_scorer(np.zeros(4))
    with pytest.raises(PlanError, match=r"within --max-len 2: it needs 3 items .*\(a, b, c\)"):
        make_request(plain, history=np.zeros(0), goal=np.array([3]), scorer=scorer, max_len=2)
    with pytest.raises(PlanError, match=r"unknown item id.*cc; did you mean c"):
        plain.resolve(["cc"], "--goal")
    topics = PrerequisiteGraph.from_pairs(("a", "b", "c"), [[2, 1]], concepts={"t": (2, 3)})
    assert topics.resolve(["t", "a"], "--goal").tolist() == [2, 3, 1]  # a concept: its items
    done = make_request(plain, history=np.array([1, 2, 3]), goal=np.array([3]), scorer=scorer)
    assert plan_path(BeamSearch(), done).path.tolist() == []


def test_a_planner_breaking_its_contract_is_refused():
    class Skips(BeamSearch):
        def plan(self, request):
            return super().plan(request)._replace(path=request.required[-1:])

    graph = PrerequisiteGraph.from_pairs(("a", "b"), [[2, 1]])
    request = make_request(
        graph, history=np.zeros(0), goal=np.array([2]), scorer=prior_scorer(np.zeros(3))
    )
    with pytest.raises(PlanError, match="Skips broke its contract: 1 step"):
        plan_path(Skips(), request)


def test_beam_search_is_exact_when_nothing_is_pruned():
    """Against every valid order, enumerated: the beam's path has the best summed
    log-probability, and says it is exact; a narrower beam that pruned says it is not."""
    graph = PrerequisiteGraph.from_pairs(
        [f"c{i}" for i in range(1, 9)], [[3, 1], [4, 1], [5, 2], [6, 3], [6, 5], [7, 4]]
    )
    scorer = tiny_scorer(seed=3, vocab_size=9)
    history = np.array([8])
    request = make_request(graph, history=history, goal=np.array([6, 7]), scorer=scorer)
    best = max(
        sum(step_log_probs(scorer, history, np.asarray(p)))
        for p in itertools.permutations(request.required.tolist())
        if violations(np.asarray(p), history, graph.prereq_vp) == 0
    )
    plan = BeamSearch(width=200).plan(request)
    assert plan.exact and plan.objective == pytest.approx(best)
    assert sum(step_log_probs(scorer, history, plan.path)) == pytest.approx(best)
    narrow = BeamSearch(width=1).plan(request)
    assert not narrow.exact and narrow.objective <= best + 1e-9


def test_planners_are_a_plugin_kind():
    assert {"beam", "random", "popularity"} <= set(registry.planners.names())
    with pytest.raises(ValueError, match="width"):
        BeamSearch(width=0)


# ---- Junyi exercises ----------------------------------------------------------------------


def test_junyi_exercise_graph_plans_and_names_its_cycles():
    from rectk_plugins.datasets.junyi import read_junyi_exercises

    graph = read_junyi_exercises(shared("junyi-exercises", "junyi_Exercise_table.csv"))
    assert graph.item_ids[0] == "parabola_intuition_1"  # the byte-order mark is not in the id
    assert len(graph.item_ids) == 835 and "conic-sections" in graph.concepts
    scorer = prior_scorer(dependents_prior(graph.prereq_vp))
    goal = graph.resolve(["multiplying_fractions"], "--goal")
    request = make_request(graph, history=np.zeros(0), goal=goal, scorer=scorer)
    plan = plan_path(BeamSearch(width=4), request)
    assert len(plan.path) >= 3 and not path_problems(request, plan.path)
    with pytest.raises(PlanError, match="cycle, simplifying_radicals -> "):
        closure(graph, graph.resolve(["simplificate_ractional_formula"], "--goal"), np.zeros(0))


# ---- rectk plan ---------------------------------------------------------------------------


def _plan_cli(args: list[str]) -> tuple[int, str, str]:
    from rectk.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["plan", *args])
    return code, out.getvalue(), err.getvalue()


def test_rectk_plan_on_a_trained_run(tiny_run):
    from rectk.plan import run_graph
    from rectk.predict import load_run

    run = load_run(tiny_run.path)
    graph = run_graph(run)
    deep = max(
        range(1, len(graph.item_ids) + 1),
        key=lambda i: len(closure(graph, np.array([i]), np.zeros(0, np.int64))),
    )
    goal = graph.name(deep)
    code, out, err = _plan_cli(["--run", str(tiny_run.path), "--user", "learner_0001",
                                "--goal", goal, "--json"])  # fmt: skip
    assert code == 0, err
    got = json.loads(out)
    path = [graph.index[s["item"]] for s in got["path"]]
    history = run.history.row(1)
    assert path[-1] == deep or deep in history
    assert violations(np.asarray(path, np.int64), history, graph.prereq_vp) == 0
    assert got["log_prob"] == pytest.approx(sum(s["log_prob"] for s in got["path"]))

    code, _, err = _plan_cli(["--run", str(tiny_run.path), "--history", "nope", "--goal", goal])
    assert code == 2 and "rectk: error: --history: unknown item id(s) nope" in err
    code, _, err = _plan_cli(["--run", str(tiny_run.path), "--history", goal, "--goal", goal,
                              "--planner", "bogus"])  # fmt: skip
    assert code == 2 and "unknown planner 'bogus'" in err
