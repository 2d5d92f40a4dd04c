"""Tasks: what a recipe trains and evaluates."""

from __future__ import annotations

import dataclasses

from rectk import registry
from rectk.recipe import registered


@registered(registry.tasks, "next_item")
@dataclasses.dataclass(frozen=True, kw_only=True)
class NextItem:
    """Next-item (next-course) recommendation from a learner's history: train on every
    (prefix -> next item) target, evaluate by full ranking on held-out last items."""

    def run(self, recipe, *, progress: bool = True) -> dict:
        from rectk.run import train_and_evaluate

        return train_and_evaluate(recipe, progress=progress)
