"""Planners: a learner's history and goal -> an ordered learning path (the ``planners``
registry, ``rectk.contracts.PlannerPlugin``).

``beam`` orders the goal's prerequisite closure by a trained model's scores; ``random`` (a
seeded random valid order) and ``popularity`` (the most taken ready item first) are the
baselines it is measured against (``benchmarks/plan_quality.py``, ``docs/planning.md``).
"""

from .baselines import PopularityOrder, RandomOrder
from .beam import BeamSearch
from .common import greedy_order, ready_items

__all__ = ["BeamSearch", "PopularityOrder", "RandomOrder", "greedy_order", "ready_items"]
