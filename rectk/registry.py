"""One generic registry, an instance per kind of plugin.

Plugins arrive through the entry-point group ``rectk.plugins`` (built-ins register exactly so)
and through a recipe's ``plugins = [...]`` list of modules. Discovery happens lazily, once.

>>> demo = Registry("demo")
>>> @demo.register("twice")
... def twice(x):
...     return 2 * x
>>> demo.get("twice")(3)
6
"""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata
import threading
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from rectk.errors import PluginError

T = TypeVar("T")
ENTRY_POINT_GROUP = "rectk.plugins"

# Modules (entry points or recipe plugin modules) that failed to import: name -> error text.
_FAILED: dict[str, str] = {}
_LOADED: set[str] = set()
_LOCK = threading.Lock()
_DISCOVERED = False


class Registry(Generic[T]):
    """Name -> plugin mapping for one kind of plugin (encoders, heads, ...)."""

    def __init__(self, kind: str, plural: str | None = None):
        self.kind = kind
        self.plural = plural or f"{kind}s"
        self._entries: dict[str, T] = {}
        self._origins: dict[str, str] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator registering ``obj`` under ``name``; a duplicate name is an error."""

        def deco(obj: T) -> T:
            origin = f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', obj)}"
            if name in self._entries and self._origins[name] != origin:
                raise PluginError(
                    f"{self.kind} {name!r} is registered twice: by {self._origins[name]} "
                    f"and by {origin}; rename one of them"
                )
            self._entries[name] = obj
            self._origins[name] = origin
            return obj

        return deco

    def get(self, name: str) -> T:
        """The plugin called ``name``; an unknown name lists the known ones."""
        discover()
        if name not in self._entries:
            raise PluginError(self._unknown_message(name))
        return self._entries[name]

    def _unknown_message(self, name: str) -> str:
        known = sorted(self._entries)
        msg = f"unknown {self.kind} {name!r}; known {self.plural}: {', '.join(known) or '(none)'}"
        close = difflib.get_close_matches(name, known, n=3)
        if close:
            msg += f". Did you mean {' or '.join(repr(c) for c in close)}?"
        if _FAILED:
            fails = "; ".join(f"{mod}: {err}" for mod, err in sorted(_FAILED.items()))
            msg += f". Plugins that failed to import: {fails}"
        return msg

    def names(self) -> list[str]:
        discover()
        return sorted(self._entries)

    def origin(self, name: str) -> str:
        return self._origins[name]

    def __contains__(self, name: object) -> bool:
        discover()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


def load_module(module: str) -> bool:
    """Imports a plugin module once; a failure is recorded, not raised."""
    with _LOCK:
        if module in _LOADED:
            return module not in _FAILED
        _LOADED.add(module)
    try:
        importlib.import_module(module)
    except Exception as err:  # a broken plugin must not break the others
        _FAILED[module] = f"{type(err).__name__}: {err}"
        return False
    return True


def discover() -> None:
    """Loads every module advertised under the ``rectk.plugins`` entry-point group, once."""
    global _DISCOVERED
    if _DISCOVERED:
        return
    _DISCOVERED = True
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        load_module(ep.value.split(":")[0])


def failed_plugins() -> dict[str, str]:
    """Modules that failed to import, with their error."""
    discover()
    return dict(_FAILED)


# One registry per kind of plugin.
datasets: Registry[Any] = Registry("dataset")
encoders: Registry[Any] = Registry("encoder")
item_towers: Registry[Any] = Registry("item tower")
heads: Registry[Any] = Registry("head")
losses: Registry[Any] = Registry("loss", "losses")
samplers: Registry[Any] = Registry("sampler")
rerankers: Registry[Any] = Registry("reranker")
metrics: Registry[Any] = Registry("metric")
tasks: Registry[Any] = Registry("task")

ALL: dict[str, Registry[Any]] = {
    "datasets": datasets,
    "encoders": encoders,
    "item_towers": item_towers,
    "heads": heads,
    "losses": losses,
    "samplers": samplers,
    "rerankers": rerankers,
    "metrics": metrics,
    "tasks": tasks,
}
