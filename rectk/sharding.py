"""Device mesh and shardings: logical axis names (inside modules) -> mesh axes (from recipes)."""

from __future__ import annotations

import os
from collections.abc import Sequence

from rectk.errors import RectkError

_HOST_FLAG = "--xla_force_host_platform_device_count"


def set_cpu_devices(count: int = 0) -> None:
    """Split the host CPU into ``count`` XLA devices (0 = XLA's default: one device).

    One XLA CPU device already runs its operations on every core, so one device is the usual
    fast choice on a CPU (``benchmarks/ce_chunks.py``; docs/notes/2026-11-29-ce-chunks.md);
    several devices are for exercising data parallelism.
    Must run before JAX initialises its backends; a count already in ``XLA_FLAGS`` wins.
    """
    flags = os.environ.get("XLA_FLAGS", "")
    if count <= 0 or _HOST_FLAG in flags:
        return
    os.environ["XLA_FLAGS"] = f"{flags} {_HOST_FLAG}={int(count)}".strip()


def make_mesh(data: int = -1, model: int = 1, devices: Sequence | None = None):
    """A ``data`` x ``model`` mesh with Auto axes (Explicit axes break ``nnx.Embed`` gathers)."""
    import jax
    from jax.sharding import AxisType

    devices = list(devices if devices is not None else jax.devices())
    n = len(devices)
    if model < 1 or n % model:
        raise RectkError(f"mesh.model = {model} must divide the {n} available devices")
    if data == -1:
        data = n // model
    if data * model > n or data < 1:
        raise RectkError(f"mesh {data} x {model} needs {data * model} devices, {n} available")
    return jax.make_mesh(
        (data, model),
        ("data", "model"),
        axis_types=(AxisType.Auto, AxisType.Auto),
        devices=devices[: data * model],
    )


def table_rows(vocab_size: int, model: int) -> int:
    """Rows of the item table: ``vocab_size`` rounded up to a multiple of ``mesh.model``.

    A sharded dimension must divide evenly, so with ``model = N`` the table gains up to
    ``N - 1`` padding rows past the last item; they are never items (rankers skip ids past
    the catalogue, and the train step scores them out of every loss: ``steps.train_step``).
    The count depends on the recipe alone, so a run trained sharded loads on one device.

    >>> table_rows(655, 1), table_rows(655, 4), table_rows(656, 8)
    (655, 656, 656)
    """
    return -(-vocab_size // max(1, model)) * max(1, model)


def mesh_rules(rules: Sequence[tuple[str, str]], model: int) -> dict[str, str]:
    """The recipe's rules as a dict; with ``model > 1`` and no rule naming the ``model``
    axis, ``vocab`` maps to ``model`` (a vocabulary-parallel item table, the axis's use).

    >>> mesh_rules([("batch", "data"), ("vocab", "")], 4)["vocab"]
    'model'
    >>> mesh_rules([("batch", "data"), ("vocab", "")], 1)["vocab"]
    ''
    """
    table = dict(rules)
    if model > 1 and "model" not in table.values():
        table["vocab"] = "model"
    return table


def to_mesh_spec(logical, rules: dict[str, str]):
    """A PartitionSpec of logical names mapped to mesh axes (unknown names replicate)."""
    from jax.sharding import PartitionSpec as P

    out: list = []
    for name in logical:
        if name is None:
            out.append(None)
        elif isinstance(name, tuple):
            axes = tuple(a for a in (rules.get(n, "") for n in name) if a)
            out.append(axes or None)
        else:
            out.append(rules.get(name, "") or None)
    return P(*out)


def state_shardings(abstract_state, mesh, rules: Sequence[tuple[str, str]]):
    """NamedShardings for an (abstract) nnx.State from its logical partition specs (the rules
    as ``mesh_rules`` completes them for the mesh's ``model`` axis)."""
    import jax
    from flax import nnx
    from jax.sharding import NamedSharding, PartitionSpec

    table = mesh_rules(rules, mesh.shape.get("model", 1))
    specs = nnx.get_partition_spec(abstract_state)
    return jax.tree.map(
        lambda s: NamedSharding(
            mesh, to_mesh_spec(s, table) if isinstance(s, PartitionSpec) else PartitionSpec()
        ),
        specs,
        is_leaf=lambda x: isinstance(x, PartitionSpec) or x is None,
    )


def batch_sharding(mesh):
    """Leading (batch) dimension split over the ``data`` axis."""
    from jax.sharding import NamedSharding, PartitionSpec

    return NamedSharding(mesh, PartitionSpec("data"))


def replicated(mesh):
    from jax.sharding import NamedSharding, PartitionSpec

    return NamedSharding(mesh, PartitionSpec())
