"""What the built-in planners share: the items ready to take, and a greedy walk."""

from __future__ import annotations

from collections.abc import Callable, Collection

import numpy as np

from rectk.contracts import PlanRequest


def ready_items(request: PlanRequest, taken: Collection[int], path: Collection[int]) -> list[int]:
    """The required items not in ``path`` whose prerequisites are all in ``taken``, in the
    order of ``request.required``."""
    prereq_vp = request.prereq_vp
    return [
        i
        for i in request.required.tolist()
        if i not in path and all(p in taken for p in prereq_vp[i].tolist() if p > 0)
    ]


def greedy_order(request: PlanRequest, pick: Callable[[list[int]], int]) -> np.ndarray:
    """The required items, each step taking ``pick(ready)`` among the ready ones."""
    taken = set(request.history.tolist())
    path: list[int] = []
    while len(path) < len(request.required):
        item = pick(ready_items(request, taken, path))
        path.append(item)
        taken.add(item)
    return np.asarray(path, np.int64)
