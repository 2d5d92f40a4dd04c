"""The model-ordered planner: beam search over the valid orders of the goal's closure."""

from __future__ import annotations

import dataclasses

import numpy as np

from rectk import registry
from rectk.contracts import Plan, PlannerPlugin, PlanRequest
from rectk.recipe import registered

from .common import ready_items


@registered(registry.planners, "beam")
@dataclasses.dataclass(frozen=True, kw_only=True)
class BeamSearch(PlannerPlugin):
    """Orders the goal's prerequisite closure (the shortest path's items) to maximise the
    model's log-probability of the path: the sum over steps of the log-softmax of the
    scorer's next-item scores over the items not yet taken, each step given the history and
    the steps before it. Constrained beam search: a step extends each of the ``width`` best
    partial paths by every ready item (prerequisites met), and keeps the ``width`` best.

    Every complete path has the same length, so partial paths compare fairly. The score of a
    step depends on the order of what came before (a sequence model), so partial paths with
    the same items cannot be merged (no dynamic programme over sets): the exact answer is the
    full enumeration, which the search is whenever no step had more than ``width`` partial
    paths; the plan then says ``exact``. Each step scores the beam in one batched call.
    """

    width: int = 64

    def __post_init__(self) -> None:
        if self.width < 1:
            raise ValueError(f"width must be at least 1, got {self.width!r}")

    def plan(self, request: PlanRequest) -> Plan:
        history = request.history.tolist()
        beams: list[tuple[float, tuple[int, ...]]] = [(0.0, ())]
        pruned = False
        for _ in range(len(request.required)):
            width = len(history) + len(beams[0][1])
            hist_bh = np.zeros((len(beams), max(1, width)), np.int64)
            for b, (_, path) in enumerate(beams):
                if width:
                    hist_bh[b] = [*history, *path]
            scores_bv = np.array(request.scorer(hist_bh), np.float64)
            grown = []
            for b, (logp, path) in enumerate(beams):
                taken = {*history, *path}
                row = scores_bv[b]
                row[0] = -np.inf
                row[list(taken)] = -np.inf
                log_z = np.logaddexp.reduce(row[np.isfinite(row)])
                grown += [
                    (logp + float(row[i] - log_z), (*path, i))
                    for i in ready_items(request, taken, taken)
                ]
            grown.sort(key=lambda c: (-c[0], c[1]))
            pruned |= len(grown) > self.width
            beams = grown[: self.width]
        logp, path = beams[0]
        return Plan(path=np.asarray(path, np.int64), objective=logp, exact=not pruned)
