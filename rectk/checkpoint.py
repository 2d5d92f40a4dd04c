"""Orbax checkpoints: atomic saves of the train state and the trainer/data-iterator state,
keeping the latest N and the best by the validation metric."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as policies


class Checkpoints:
    """``save(step, state, meta, metric)`` / ``restore(step, abstract_state)``.

    A save lands whole or not at all (Orbax writes to a temporary folder and renames it), so a
    run killed mid-save leaves the previous checkpoints intact.
    """

    def __init__(self, directory: Path, *, keep: int, monitor: str):
        self.monitor = monitor
        options = ocp.CheckpointManagerOptions(
            enable_async_checkpointing=False,
            preservation_policy=policies.AnyPreservationPolicy(
                [
                    policies.LatestN(n=max(1, keep)),
                    policies.BestN(
                        get_metric_fn=lambda m: m[monitor],
                        n=1,
                        keep_checkpoints_without_metrics=False,
                    ),
                ]
            ),
        )
        self._mngr = ocp.CheckpointManager(
            Path(directory).absolute(), options=options, item_names=("state", "meta")
        )

    def latest_step(self) -> int | None:
        return self._mngr.latest_step()

    def all_steps(self) -> list[int]:
        return list(self._mngr.all_steps())

    def save(self, step: int, state: Any, meta: dict, metric: float | None = None) -> None:
        metrics = None if metric is None else {self.monitor: float(metric)}
        self._mngr.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)
            ),
            metrics=metrics,
            force=True,
        )
        self._mngr.wait_until_finished()

    def restore(self, step: int, abstract_state: Any) -> tuple[Any, dict]:
        out = self._mngr.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore()
            ),
        )
        return out["state"], dict(out["meta"])

    def restore_meta(self, step: int) -> dict:
        out = self._mngr.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
        return dict(out["meta"])

    def close(self) -> None:
        self._mngr.close()


def abstract_like(tree: Any) -> Any:
    """Shape/dtype/sharding skeleton of ``tree`` to restore into."""
    return jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, "sharding", None)),
        tree,
    )
