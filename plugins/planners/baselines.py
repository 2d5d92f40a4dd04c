"""Baseline planners: valid orders of the goal's prerequisite closure that ignore the model."""

from __future__ import annotations

import dataclasses

import numpy as np

from rectk import registry
from rectk.contracts import Plan, PlannerPlugin, PlanRequest
from rectk.recipe import registered

from .common import greedy_order


@registered(registry.planners, "random")
@dataclasses.dataclass(frozen=True, kw_only=True)
class RandomOrder(PlannerPlugin):
    """A random valid order of the goal's prerequisite closure: each step takes one of the
    ready items uniformly at random (seeded by the request's ``seed``)."""

    def plan(self, request: PlanRequest) -> Plan:
        rng = np.random.default_rng(request.seed)
        return Plan(path=greedy_order(request, lambda ready: ready[rng.integers(len(ready))]))


@registered(registry.planners, "popularity")
@dataclasses.dataclass(frozen=True, kw_only=True)
class PopularityOrder(PlannerPlugin):
    """A valid order of the goal's prerequisite closure, most popular first: each step takes
    the ready item taken most often in training (ties: the lower id)."""

    def plan(self, request: PlanRequest) -> Plan:
        pop_v = request.popularity_v
        return Plan(path=greedy_order(request, lambda ready: max(ready, key=lambda i: pop_v[i])))
