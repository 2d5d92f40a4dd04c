"""One generic registry, an instance per kind of plugin, each checking its kind's contract.

Plugins arrive through the entry-point group ``rectk.plugins`` (built-ins register exactly so)
and through a recipe's ``plugins = [...]`` list of modules or module files. Discovery happens
lazily, once. A registry made with a ``contract`` (a protocol of ``rectk.contracts``) checks
each plugin against it when it registers: a plugin that breaks it fails at import with one
message naming it, and ``rectk plugins`` lists the module among those that failed.

>>> demo = Registry("demo")
>>> @demo.register("twice")
... def twice(x):
...     return 2 * x
>>> demo.get("twice")(3)
6
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import importlib
import importlib.metadata
import importlib.util
import inspect
import sys
import threading
import typing
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar

from rectk.contracts import (
    BaselinePlugin,
    DatasetPlugin,
    EncoderPlugin,
    HeadPlugin,
    ItemTowerPlugin,
    KnowledgeTracerPlugin,
    ListMetric,
    LossPlugin,
    Metric,
    PlannerPlugin,
    RerankerPlugin,
    TaskPlugin,
)
from rectk.errors import PluginError

T = TypeVar("T")
ENTRY_POINT_GROUP = "rectk.plugins"

# Modules (entry points or recipe plugin modules) that failed to import: name -> error text.
_FAILED: dict[str, str] = {}
_LOADED: set[str] = set()
_LOCK = threading.Lock()
_DISCOVERED = False


class Registry(Generic[T]):
    """Name -> plugin mapping for one kind of plugin (encoders, heads, ...).

    Args:
      kind: the singular name used in messages ("encoder").
      plural: the plural, when not ``kind + "s"``.
      contract: the kind's protocol (``rectk.contracts``); ``register`` checks plugins
        against it. None: no check.
      form: ``"class"``: plugins are classes (configs) providing the contract's members;
        ``"function"``: plugins are callables with the contract's ``__call__`` arguments.
    """

    def __init__(
        self,
        kind: str,
        plural: str | None = None,
        *,
        contract: type | None = None,
        form: Literal["class", "function"] = "class",
    ):
        self.kind = kind
        self.plural = plural or f"{kind}s"
        self.contract = contract
        self.form = form
        self._entries: dict[str, T] = {}
        self._origins: dict[str, str] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator registering ``obj`` under ``name``, after checking it against the
        contract; a broken contract or a duplicate name is a ``PluginError``."""

        def deco(obj: T) -> T:
            origin = f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', obj)}"
            if self.contract is not None:
                problems = contract_problems(obj, self.contract, form=self.form)
                if problems:
                    raise PluginError(
                        f"{self.kind} {name!r} ({origin}) breaks the {self.kind} contract: "
                        f"{'; '.join(problems)}; {self._remedy()}"
                    )
            if name in self._entries and self._origins[name] != origin:
                raise PluginError(
                    f"{self.kind} {name!r} is registered twice: by {self._origins[name]} "
                    f"and by {origin}; rename one of them"
                )
            self._entries[name] = obj
            self._origins[name] = origin
            return obj

        return deco

    def _remedy(self) -> str:
        assert self.contract is not None
        where = f"{self.contract.__module__}.{self.contract.__qualname__}"
        if self.form == "function":
            call = _format(_members(self.contract)["__call__"], "", drop_self=True)
            return f"a {self.kind} is a function {self.kind}{call} ({where})"
        return f"subclass {where}"

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


# ---------------------------------------------------------------------------------------------
# Contract checks (at registration).
# ---------------------------------------------------------------------------------------------


def _members(contract: type) -> dict[str, Any]:
    """The contract's members: public names and ``__call__``, from the protocol classes of
    its MRO (name -> the contract's function, or its attribute annotation)."""
    members: dict[str, Any] = {}
    for klass in reversed(contract.__mro__):
        if klass in (object, typing.Protocol, typing.Generic) or klass.__module__ == "abc":
            continue
        annotations = inspect.get_annotations(klass)
        for name in (*annotations, *klass.__dict__):
            if not name.startswith("_") or name == "__call__":
                members[name] = klass.__dict__.get(name, annotations.get(name))
    return members


def _attribute_type(contract: type, name: str) -> type | None:
    """The class an annotated contract attribute must be an instance of (ClassVar unwrapped)."""
    try:
        hint = typing.get_type_hints(contract).get(name)
    except Exception:  # an annotation that names a type only imported for checkers
        return None
    if typing.get_origin(hint) is typing.ClassVar:
        hint = typing.get_args(hint)[0]
    return hint if isinstance(hint, type) else None


def _format(fn: Any, name: str, *, annotations: bool = True, drop_self: bool = False) -> str:
    """``name(params)`` of a function's signature, annotations as written in the source."""
    sig = inspect.signature(fn)
    params = list(sig.parameters.values())
    if drop_self and params:
        params = params[1:]
    parts: list[str] = []
    star = False
    for p in params:
        if p.kind is p.KEYWORD_ONLY and not star:
            parts.append("*")
            star = True
        text = "*" if p.kind is p.VAR_POSITIONAL else "**" if p.kind is p.VAR_KEYWORD else ""
        text += p.name
        star = star or p.kind is p.VAR_POSITIONAL
        if annotations and p.annotation is not p.empty:
            ann = p.annotation
            text += f": {ann if isinstance(ann, str) else getattr(ann, '__name__', ann)}"
        if p.default is not p.empty:
            text += f" = {p.default!r}" if annotations else f"={p.default!r}"
        parts.append(text)
    return f"{name}({', '.join(parts)})"


def _call_problem(expected_fn: Any, found: Any, name: str, *, drop_self: bool) -> str | None:
    """Whether ``found`` accepts every argument the contract's ``expected_fn`` is called with
    (positional ones by position, keyword-only ones by name); a message when it does not."""
    try:
        expected, got = inspect.signature(expected_fn), inspect.signature(found)
    except (TypeError, ValueError):  # a builtin without a signature: nothing to check
        return None
    params = list(expected.parameters.values())[1 if drop_self else 0 :]
    args = [object() for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    kwargs = {p.name: object() for p in params if p.kind is p.KEYWORD_ONLY}
    try:
        got.bind(*args, **kwargs)
    except TypeError:
        want = _format(expected_fn, name, drop_self=drop_self)
        return f"{want} expected, found {_format(found, name, annotations=False)}"
    return None


def contract_problems(obj: Any, contract: type, *, form: str = "class") -> list[str]:
    """What ``obj`` lacks to satisfy ``contract`` (empty when nothing): missing members,
    abstract methods left unimplemented, methods that do not accept the contract's arguments,
    declared attributes of the wrong type."""
    members = _members(contract)
    if form == "function":
        if not callable(obj):
            return [f"a callable expected, found {type(obj).__name__}"]
        label = getattr(obj, "__name__", type(obj).__name__)
        problem = _call_problem(members["__call__"], obj, label, drop_self=True)
        return [problem] if problem else []
    if not isinstance(obj, type):
        return [f"a class expected, found {type(obj).__name__} {obj!r}"]
    problems: list[str] = []
    abstract = set(getattr(obj, "__abstractmethods__", ()))
    for name, spec in members.items():
        if not hasattr(obj, name):
            problems.append(f"{_format(spec, name) if inspect.isfunction(spec) else name} missing")
            continue
        if name in abstract:
            problems.append(f"{_format(spec, name)} not implemented (abstract)")
            continue
        if inspect.isfunction(spec):
            if not callable(getattr(obj, name)):
                problems.append(f"{_format(spec, name)} expected, found {getattr(obj, name)!r}")
                continue
            static = inspect.getattr_static(obj, name)
            bound = isinstance(static, staticmethod | classmethod)
            problem = _call_problem(spec, getattr(obj, name), name, drop_self=bound)
            if problem:
                problems.append(problem)
            continue
        want = _attribute_type(contract, name)
        value = getattr(obj, name)
        if want is not None and not isinstance(value, want):
            problems.append(f"{name} must be an instance of {want.__name__}, found {value!r}")
        if want is not None and dataclasses.is_dataclass(want):
            own = (
                {f.name for f in dataclasses.fields(obj)}
                if dataclasses.is_dataclass(obj)
                else set()
            )
            loose = [
                f.name
                for f in dataclasses.fields(want)
                if hasattr(obj, f.name) and f.name not in own
            ]
            if loose:
                problems.append(
                    f"{', '.join(loose)} declared as class attributes; declare "
                    f"{name} = {want.__name__}({', '.join(f'{n}=...' for n in loose)}) instead"
                )
    return problems


# ---------------------------------------------------------------------------------------------
# Discovery.
# ---------------------------------------------------------------------------------------------


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


def load_file(path: str | Path) -> bool:
    """Imports a plugin module from a Python file once (recorded under its path, as
    ``load_module`` records modules); a failure is recorded, not raised. The module is named
    ``rectk_file_plugin_<stem>_<hash of the path>`` in ``sys.modules``."""
    path = Path(path).resolve()
    key = str(path)
    with _LOCK:
        if key in _LOADED:
            return key not in _FAILED
        _LOADED.add(key)
    digest = hashlib.sha256(key.encode()).hexdigest()[:8]
    name = f"rectk_file_plugin_{path.stem}_{digest}"
    try:
        if not path.is_file():
            raise FileNotFoundError(f"no such file: {path}")
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise ImportError(f"not a Python module: {path}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up while it executes
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[name]
            raise
    except Exception as err:
        _FAILED[key] = f"{type(err).__name__}: {err}"
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


# One registry per kind of plugin, each with its contract.
datasets: Registry[type[DatasetPlugin]] = Registry("dataset", contract=DatasetPlugin)
encoders: Registry[type[EncoderPlugin]] = Registry("encoder", contract=EncoderPlugin)
item_towers: Registry[type[ItemTowerPlugin]] = Registry("item tower", contract=ItemTowerPlugin)
heads: Registry[type[HeadPlugin]] = Registry("head", contract=HeadPlugin)
losses: Registry[type[LossPlugin]] = Registry("loss", "losses", contract=LossPlugin)
metrics: Registry[Metric] = Registry("metric", contract=Metric, form="function")
baselines: Registry[type[BaselinePlugin]] = Registry("baseline", contract=BaselinePlugin)
tasks: Registry[type[TaskPlugin]] = Registry("task", contract=TaskPlugin)
rerankers: Registry[type[RerankerPlugin]] = Registry(
    "reranker", "rerankers", contract=RerankerPlugin
)
list_metrics: Registry[ListMetric] = Registry("list metric", contract=ListMetric, form="function")
knowledge_tracers: Registry[type[KnowledgeTracerPlugin]] = Registry(
    "knowledge tracer", contract=KnowledgeTracerPlugin
)
planners: Registry[type[PlannerPlugin]] = Registry("planner", contract=PlannerPlugin)

ALL: dict[str, Registry[Any]] = {
    "datasets": datasets,
    "encoders": encoders,
    "item_towers": item_towers,
    "heads": heads,
    "losses": losses,
    "metrics": metrics,
    "baselines": baselines,
    "tasks": tasks,
    "rerankers": rerankers,
    "list_metrics": list_metrics,
    "knowledge_tracers": knowledge_tracers,
    "planners": planners,
}
