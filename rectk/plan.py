"""Learning-path planning: a goal's prerequisite closure, path checks, and planning from a run.

A learner with history ``h`` wants to reach goal items ``G``. An item may be taken once every
one of its prerequisites is taken, so every valid path to ``G`` holds the goal's prerequisite
closure not yet taken (``closure``), and a path of exactly those items is the shortest. The
planner (a ``PlannerPlugin`` of ``registry.planners``) orders them, or chooses otherwise within
the contract; ``plan_path`` checks what it returns. A cycle among the prerequisites, a
prerequisite missing from the catalogue, or a closure longer than ``max_len`` makes the goal
unreachable: a ``PlanError`` naming the items at fault.

>>> g = PrerequisiteGraph.from_pairs(("a", "b", "c"), [[2, 1], [3, 2]])
>>> closure(g, np.array([3]), np.array([1])).tolist()  # c needs b needs a; a is taken
[2, 3]
>>> violations(np.array([3, 2]), np.array([1]), g.prereq_vp)  # c before its prerequisite b
1
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from rectk.contracts import PathScorer, Plan, PlannerPlugin, PlanRequest
from rectk.errors import PlanError

if TYPE_CHECKING:
    from rectk.predict import Loaded


@dataclasses.dataclass(frozen=True, kw_only=True)
class PrerequisiteGraph:
    """Items and their prerequisites, dense ids ``1..V-1`` (0 is padding).

    Attributes:
      item_ids: raw id of each dense id ``i``, at ``item_ids[i - 1]``.
      prereq_vp: int32 ``[V, P]`` prerequisite ids per item, 0 = none.
      titles: a title per item (as ``item_ids``), or None.
      concepts: concept name -> its items (a goal may name a concept: all of its items).
      missing: item -> the prerequisites it names that the catalogue lacks (it cannot be
        taken).
    """

    item_ids: tuple[str, ...]
    prereq_vp: np.ndarray
    titles: tuple[str, ...] | None = None
    concepts: Mapping[str, tuple[int, ...]] = dataclasses.field(default_factory=dict)
    missing: Mapping[int, tuple[str, ...]] = dataclasses.field(default_factory=dict)

    @classmethod
    def from_pairs(cls, item_ids: Sequence[str], pairs_e2: Any, **fields: Any) -> PrerequisiteGraph:
        """From dense ``(item, prerequisite)`` pairs."""
        from rectk.rerank.side import prerequisite_table

        pairs = np.asarray(pairs_e2, np.int64).reshape(-1, 2)
        return cls(
            item_ids=tuple(item_ids),
            prereq_vp=prerequisite_table(pairs, len(item_ids) + 1),
            **fields,
        )

    @functools.cached_property
    def index(self) -> dict[str, int]:
        """Raw id -> dense id."""
        return {r: i for i, r in enumerate(self.item_ids, 1)}

    def name(self, item: int) -> str:
        return self.item_ids[int(item) - 1]

    def resolve(self, ids: Sequence[str], what: str) -> np.ndarray:
        """Dense ids of raw item ids or concept names (a concept: all of its items, in order);
        a ``PlanError`` naming the unknown ones, with close matches."""
        out: list[int] = []
        unknown = []
        for raw in ids:
            if raw in self.index:
                out.append(self.index[raw])
            elif raw in self.concepts:
                out.extend(self.concepts[raw])
            else:
                unknown.append(raw)
        if unknown:
            close = difflib.get_close_matches(unknown[0], [*self.index, *self.concepts], n=3)
            hint = f"; did you mean {' or '.join(close)}?" if close else ""
            kinds = "item or concept" if self.concepts else "item"
            raise PlanError(f"{what}: unknown {kinds} id(s) {', '.join(unknown)}{hint}")
        return np.asarray(list(dict.fromkeys(out)), np.int64)


def closure(graph: PrerequisiteGraph, goal: np.ndarray, taken: np.ndarray) -> np.ndarray:
    """The goal items and their prerequisites, transitively, not in ``taken``: int ``[R]`` in
    a valid order (depth first: each item right after its prerequisites, goals in the order
    given). A prerequisite cycle or a missing prerequisite on the way is a ``PlanError``
    naming the items on it."""
    prereq_vp = graph.prereq_vp
    done = set(np.asarray(taken).tolist())
    state: dict[int, int] = {}  # 1: on the current walk, 2: placed
    order: list[int] = []
    for g in np.asarray(goal).tolist():
        if g in done or state.get(g) == 2:
            continue
        stack = [(g, iter(prereq_vp[g][prereq_vp[g] > 0].tolist()))]
        state[g] = 1
        while stack:
            node, rest = stack[-1]
            if node in graph.missing:
                raise PlanError(
                    f"goal {graph.name(g)} is unreachable: {graph.name(node)} requires "
                    f"{', '.join(graph.missing[node])}, not in the catalogue"
                )
            nxt = next((p for p in rest if p not in done and state.get(p) != 2), None)
            if nxt is None:
                stack.pop()
                state[node] = 2
                order.append(node)
            elif state.get(nxt) == 1:
                walk = [n for n, _ in stack]
                loop = [*walk[walk.index(nxt) :], nxt]
                raise PlanError(
                    f"goal {graph.name(g)} is unreachable: its prerequisites form a cycle, "
                    f"{' -> '.join(graph.name(n) for n in loop)} (each requires the next)"
                )
            else:
                state[nxt] = 1
                stack.append((nxt, iter(prereq_vp[nxt][prereq_vp[nxt] > 0].tolist())))
    return np.asarray(order, np.int64)


def violations(path: np.ndarray, history: np.ndarray, prereq_vp: np.ndarray) -> int:
    """How many steps of ``path`` come before one of their prerequisites is taken."""
    taken = set(np.asarray(history).tolist())
    bad = 0
    for item in np.asarray(path).tolist():
        need = prereq_vp[item][prereq_vp[item] > 0].tolist()
        bad += not taken.issuperset(need)
        taken.add(item)
    return bad


def path_problems(request: PlanRequest, path: np.ndarray) -> list[str]:
    """What makes ``path`` break the planner contract for ``request`` (empty: nothing)."""
    path = np.asarray(path)
    v = request.prereq_vp.shape[0]
    if path.ndim != 1 or not np.issubdtype(path.dtype, np.integer):
        return [f"the path must be a 1-D integer array, found {path.dtype} {path.shape}"]
    items = path.tolist()
    out = []
    if any(not 1 <= i < v for i in items):
        return [f"item ids must lie in 1..{v - 1}: {items}"]
    if len(set(items)) != len(items):
        out.append(f"an item appears twice: {items}")
    if set(items) & set(request.history.tolist()):
        out.append("it repeats items of the history")
    if not set(request.goal.tolist()) <= set(items) | set(request.history.tolist()):
        out.append("it does not reach every goal item")
    if len(items) > request.max_len:
        out.append(f"it is {len(items)} long, more than max_len = {request.max_len}")
    bad = violations(path, request.history, request.prereq_vp)
    if bad:
        out.append(f"{bad} step(s) come before their prerequisites")
    return out


def make_request(
    graph: PrerequisiteGraph,
    *,
    history: np.ndarray,
    goal: np.ndarray,
    scorer: PathScorer,
    popularity_v: np.ndarray | None = None,
    max_len: int | None = None,
    seed: int = 0,
) -> PlanRequest:
    """The ``PlanRequest`` of a learner and a goal; an unreachable goal is a ``PlanError``."""
    history = np.asarray(history, np.int64)
    goal = np.asarray(goal, np.int64)
    if goal.size == 0:
        raise PlanError("--goal: give at least one item id")
    required = closure(graph, goal, history)
    limit = len(required) if max_len is None else max_len
    if len(required) > limit:
        names = ", ".join(graph.name(i) for i in required[:8])
        more = f" and {len(required) - 8} more" if len(required) > 8 else ""
        raise PlanError(
            f"the goal is unreachable within --max-len {limit}: it needs {len(required)} items "
            f"not yet taken ({names}{more})"
        )
    v = graph.prereq_vp.shape[0]
    return PlanRequest(
        prereq_vp=graph.prereq_vp,
        history=history,
        goal=goal,
        required=required,
        max_len=limit,
        scorer=scorer,
        popularity_v=np.zeros(v, np.float32) if popularity_v is None else popularity_v,
        seed=seed,
    )


def plan_path(planner: PlannerPlugin, request: PlanRequest) -> Plan:
    """``planner``'s plan for ``request``, checked: a path breaking the contract (invalid,
    missing a goal, too long) is a ``PlanError`` naming the planner."""
    plan = planner.plan(request)
    problems = path_problems(request, plan.path)
    if problems:
        raise PlanError(
            f"planner {type(planner).__name__} broke its contract: {'; '.join(problems)}"
        )
    return plan


# ---------------------------------------------------------------------------------------------
# Scorers: a finished run's model, or a fixed prior where a graph has no model.
# ---------------------------------------------------------------------------------------------


def prior_scorer(scores_v: np.ndarray) -> PathScorer:
    """The same scores ``[V]`` for every history (a graph without a trained model)."""
    fixed_v = np.asarray(scores_v, np.float32)

    def score(history_bh: np.ndarray) -> np.ndarray:
        return np.broadcast_to(fixed_v, (len(history_bh), fixed_v.shape[0]))

    return score


def dependents_prior(prereq_vp: np.ndarray) -> np.ndarray:
    """``log(1 + number of items that require the item)`` ``[V]``: items that unlock more come
    first (the fallback score where a graph has no trained model)."""
    v = prereq_vp.shape[0]
    counts = np.bincount(prereq_vp[prereq_vp > 0].ravel(), minlength=v)[:v]
    return np.log1p(counts).astype(np.float32)


def _next_scores(bound, vocab_size: int, weights, input_bl, users_b):
    """The model's next-item scores ``[B, V]`` (as ranking scores them)."""
    import jax.numpy as jnp

    from rectk import steps

    user_bd, score_chunk, _ = steps._model_scorer(
        bound, weights, {"input": input_bl, "user": users_b}
    )
    return score_chunk(user_bd, jnp.arange(vocab_size))


def run_scorer(run: Loaded, *, user: int = 0) -> PathScorer:
    """The next-item scores of ``run``'s model for learner ``user`` (0: a new learner);
    batches are padded to a power of two, so a planner compiles a few shapes only."""
    from rectk.compiler import jit_inference
    from rectk.data.pipeline import left_pad

    fn = jit_inference(
        functools.partial(_next_scores, run.bound, run.num_items + 1),
        library_dots=run.bound.library_dots,
    )
    max_len = run.cfg.model.max_len

    def score(history_bh: np.ndarray) -> np.ndarray:
        b = len(history_bh)
        rows = 1 << max(0, (b - 1).bit_length())
        input_bl = np.zeros((rows, max_len), np.int32)
        for r, h in enumerate(history_bh):
            input_bl[r] = left_pad(np.asarray(h)[np.asarray(h) > 0], max_len)
        users_b = np.full(rows, user, np.int32)
        return np.asarray(fn(run.weights, input_bl, users_b), np.float32)[:b]

    return score


def run_graph(run: Loaded) -> PrerequisiteGraph:
    """A finished run's items and prerequisite graph (its ``items.npz``)."""
    side = run.require_side()
    if side.prereq_vp is None:
        raise PlanError("this run's data set has no prerequisite graph: nothing to plan")
    return PrerequisiteGraph(
        item_ids=tuple(run.vocab["item_ids"]), prereq_vp=side.prereq_vp, titles=run.titles
    )


def plan_for_run(
    run: Loaded,
    *,
    goal: Sequence[str],
    user: str | None = None,
    history: Sequence[str] | None = None,
    max_len: int | None = None,
    planner: PlannerPlugin,
) -> dict[str, Any]:
    """A learning path to ``goal`` for a learner of ``run`` (``user``) or a raw ``history``,
    ordered by the run's model: the path's items, titles and model log-probabilities."""
    if (user is None) == (history is None):
        raise PlanError("give exactly one of --user or --history")
    graph = run_graph(run)
    u = 0
    if user is not None:
        u = run.learner(user)
        taken = np.asarray(run.history.row(u), np.int64)
    else:
        taken = graph.resolve(list(history or []), "--history")
    goals = graph.resolve(list(goal), "--goal")
    if max_len is not None and max_len < 1:
        raise PlanError(f"--max-len must be at least 1, got {max_len}")
    scorer = run_scorer(run, user=u)
    request = make_request(
        graph,
        history=taken,
        goal=goals,
        scorer=scorer,
        popularity_v=run.require_side().pop_v,
        max_len=max_len,
    )
    plan = plan_path(planner, request)
    steps_ = step_log_probs(scorer, taken, plan.path)
    return {
        "goal": [graph.name(g) for g in goals],
        "already_taken": [graph.name(g) for g in goals if g in set(taken.tolist())],
        "exact": bool(plan.exact),
        "log_prob": float(sum(steps_)),
        "path": [
            {
                "item": graph.name(i),
                "title": graph.titles[int(i) - 1] if graph.titles else "",
                "log_prob": float(lp),
            }
            for i, lp in zip(plan.path.tolist(), steps_, strict=True)
        ],
    }


def step_log_probs(scorer: PathScorer, history: np.ndarray, path: np.ndarray) -> list[float]:
    """The scorer's log-probability of each step of ``path`` (a softmax over the items not yet
    taken), given the history and the steps before it."""
    if len(path) == 0:
        return []
    prefixes = [np.concatenate([history, path[:t]]).astype(np.int64) for t in range(len(path))]
    width = max(1, max(len(p) for p in prefixes))
    hist_bh = np.stack([np.pad(p, (width - len(p), 0)) for p in prefixes])
    scores_bv = np.array(scorer(hist_bh), np.float64)
    out = []
    for t, item in enumerate(np.asarray(path).tolist()):
        row = scores_bv[t]
        row[0] = -np.inf
        row[prefixes[t]] = -np.inf
        out.append(float(row[item] - np.logaddexp.reduce(row[np.isfinite(row)])))
    return out
