"""Recipes: layered TOML files validated into frozen, typed config objects.

A recipe may name a ``base`` recipe (a path relative to itself, or ``rectk:NAME`` for a recipe
shipped with rectk); tables merge key by key, and ``--set a.b=c`` overrides come last. A plugin table (one whose schema field is a registry, like
``[model.encoder]``) picks its plugin with ``type = "..."``; its other keys are that plugin's
config fields. When a layer changes a plugin table's ``type``, that table is replaced, not merged.
Recipes are closed: an unknown key, a wrong type or a missing field is one error that names the
file the key came from and its key path.

A recipe is code: its ``plugins`` list is imported (after the TOML has been read and its
structure checked, before validation). Load only recipes you trust (``docs/trust.md``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.resources
import json
import re
import tomllib
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, TypeVar

from rectk.errors import PluginError, RecipeError
from rectk.registry import Registry, failed_plugins, load_file, load_module

BASE_KEY = "base"
SHIPPED = "rectk:"  # ``base = "rectk:NAME"``: the recipe NAME.toml shipped with rectk
P = TypeVar("P")


def plugin(registry: Registry[Any], default: str, **defaults: Any) -> Any:
    """A schema field holding a plugin config chosen by ``type`` from ``registry``."""
    meta = {"registry": registry, "default_type": default, "default_fields": defaults}
    return dataclasses.field(default=None, metadata=meta)


def plugin_names(registry: Registry[Any], default: tuple[str, ...]) -> Any:
    """A schema field holding a list of names registered in ``registry`` (like
    ``eval.baselines``); an unknown name is an error naming the file and key."""
    return dataclasses.field(default=default, metadata={"names_in": registry})


def plugin_chains(registry: Registry[Any]) -> Any:
    """A schema field holding named lists of plugin tables (``[[rerank.chains.NAME]]``, each
    with its ``type``): ``{name: (plugin config, ...)}``, in the order the recipe lists them.
    An empty list is an error naming its key."""
    return dataclasses.field(default_factory=dict, metadata={"chains_of": registry})


def plugin_name(cfg: Any) -> str:
    """The registered name of a plugin config instance."""
    return type(cfg).plugin_name  # set by ``registered``


def registered(registry: Registry[type[P]], name: str) -> Callable[[type[P]], type[P]]:
    """Class decorator: registers a frozen config dataclass as plugin ``name`` (checked
    against the registry's contract, see ``rectk.registry.Registry.register``)."""

    def deco(cls: type[P]) -> type[P]:
        cls.plugin_name = name  # type: ignore[attr-defined]
        return registry.register(name)(cls)

    return deco


def shipped_recipes() -> Path:
    """The folder of the recipes shipped with rectk (the package ``rectk_recipes``; in a
    source checkout where it is not installed, ``recipes/`` beside ``rectk/``)."""
    try:
        return Path(str(importlib.resources.files("rectk_recipes")))
    except ModuleNotFoundError:
        return Path(__file__).resolve().parents[1] / "recipes"


# ----------------------------------------------------------------------------------------------
# Loading and layering.
# ----------------------------------------------------------------------------------------------


def _read_toml(path: Path) -> dict[str, Any]:
    """A recipe file's TOML data; anything else (missing, a folder, binary or non-UTF-8 bytes,
    invalid TOML) is one error naming the file, and the line where there is one."""
    if path.is_dir():
        raise RecipeError(f"{path}: is a folder, not a recipe file (name the .toml file)")
    if not path.is_file():
        what = "not a regular file" if path.exists() else "recipe file not found"
        raise RecipeError(f"{what}: {path}")
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise RecipeError(f"{path}: cannot read the recipe: {err.strerror or err}") from None
    if b"\0" in raw:
        raise RecipeError(f"{path}: a binary file (it holds NUL bytes), not a TOML recipe")
    try:
        text = raw.decode("utf-8").removeprefix("\ufeff")  # an editor's byte-order mark
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        raise RecipeError(
            f"{path}, line {line}: not UTF-8 text (byte 0x{raw[err.start]:02x}); a recipe is "
            "TOML in UTF-8: save the file as UTF-8"
        ) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise RecipeError(f"{path}: not valid TOML: {err}") from None
    except RecursionError:
        raise RecipeError(f"{path}: not valid TOML: arrays or tables nested too deeply") from None


def _merge(base: dict, over: dict, src: dict, over_src: str, prefix: str) -> dict:
    """Merges ``over`` into a copy of ``base``; ``src`` records each key path's file."""
    out = dict(base)
    for key, val in over.items():
        path = f"{prefix}{key}"
        old = out.get(key)
        replace = (
            isinstance(val, dict)
            and isinstance(old, dict)
            and ("type" in val and val.get("type") != old.get("type"))
        )
        if isinstance(val, dict) and isinstance(old, dict) and not replace:
            out[key] = _merge(old, val, src, over_src, path + ".")
        else:
            for k in list(src):
                if k == path or k.startswith(path + "."):
                    del src[k]
            out[key] = val
            _record(val, path, src, over_src)
    return out


def _record(val: Any, path: str, src: dict, file: str) -> None:
    src[path] = file
    if isinstance(val, dict):
        for k, v in val.items():
            _record(v, f"{path}.{k}", src, file)


def _load_layers(path: Path, src: dict, seen: tuple[Path, ...] = ()) -> dict:
    path = path.resolve()
    if path in seen:
        chain = " -> ".join(str(p) for p in (*seen, path))
        raise RecipeError(f"recipe bases form a cycle: {chain}")
    data = _read_toml(path)
    base = data.pop(BASE_KEY, None)
    merged: dict = {}
    if base is not None:
        if not isinstance(base, str):
            raise RecipeError(f"{path}: key 'base' must be a path string, got {base!r}")
        merged = _load_layers(_base_path(path, base), src, (*seen, path))
    return _merge(merged, data, src, str(path), "")


def _base_path(recipe: Path, base: str) -> Path:
    """A ``base`` value as a file: ``rectk:NAME`` is a shipped recipe, anything else a path
    relative to the recipe naming it."""
    if not base.startswith(SHIPPED):
        return recipe.parent / base
    name = base.removeprefix(SHIPPED).removesuffix(".toml")
    folder = shipped_recipes()
    path = folder / f"{name}.toml"
    if not name or "/" in name or not path.is_file():
        known = ", ".join(p.stem for p in sorted(folder.glob("*.toml")))
        raise RecipeError(
            f"{recipe}: key 'base': no shipped recipe {base!r}; shipped recipes: "
            f"{known or '(none)'} (write rectk:NAME, or a path relative to this file)"
        )
    return path


def parse_override(text: str) -> tuple[list[str], Any]:
    """``a.b=VALUE`` -> (["a", "b"], value); VALUE is TOML, or a bare string."""
    if "=" not in text:
        raise RecipeError(f"--set {text!r}: expected KEY=VALUE, like train.steps=100")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise RecipeError(f"--set {text!r}: malformed key {key!r}")
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    return key.split("."), value


def _apply_override(data: dict, keys: list[str], value: Any, src: dict) -> dict:
    nested: Any = value
    for k in reversed(keys):
        nested = {k: nested}
    return _merge(data, nested, src, "--set", "")


# ----------------------------------------------------------------------------------------------
# Validation into typed dataclasses.
# ----------------------------------------------------------------------------------------------


class _Ctx:
    def __init__(self, src: dict[str, str], default_file: str):
        self.src = src
        self.default_file = default_file

    def where(self, path: str) -> str:
        probe = re.sub(r"\[\d+\]", "", path)  # a list item comes from the list's file
        while probe:
            if probe in self.src:
                return self.src[probe]
            probe = probe.rpartition(".")[0]
        return self.default_file

    def error(self, path: str, msg: str) -> RecipeError:
        return RecipeError(f"{self.where(path)}: key '{path}': {msg}")


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " or ".join(repr(a) for a in typing.get_args(tp))
    if origin in (tuple, list):
        return "list"
    if origin is dict:
        return "table"
    if dataclasses.is_dataclass(tp):
        return "table"
    return getattr(tp, "__name__", str(tp))


def _convert(tp: Any, val: Any, path: str, ctx: _Ctx) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return val
    if origin is Literal:
        if val not in args:
            raise ctx.error(path, f"expected {_type_name(tp)}, got {val!r}")
        return val
    if origin in (typing.Union, types.UnionType):
        errors = []
        for arm in args:
            if arm is type(None):
                continue
            try:
                return _convert(arm, val, path, ctx)
            except RecipeError as err:
                errors.append(str(err))
        raise ctx.error(path, f"expected {' or '.join(_type_name(a) for a in args)}, got {val!r}")
    if tp is bool:
        if not isinstance(val, bool):
            raise ctx.error(path, f"expected true or false, got {val!r}")
        return val
    if tp is int:
        if isinstance(val, bool) or not isinstance(val, int):
            raise ctx.error(path, f"expected an integer, got {val!r}")
        return val
    if tp is float:
        if isinstance(val, bool) or not isinstance(val, int | float):
            raise ctx.error(path, f"expected a number, got {val!r}")
        return float(val)
    if tp is str:
        if not isinstance(val, str):
            raise ctx.error(path, f"expected a string, got {val!r}")
        return val
    if origin in (tuple, list):
        if not isinstance(val, list | tuple):
            raise ctx.error(path, f"expected a list, got {val!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(args[0], v, f"{path}[{i}]", ctx) for i, v in enumerate(val))
        if args and len(args) != len(val):
            raise ctx.error(path, f"expected a list of {len(args)} items, got {val!r}")
        return tuple(
            _convert(a, v, f"{path}[{i}]", ctx)
            for i, (a, v) in enumerate(zip(args, val, strict=False))
        )
    if origin is dict:
        if not isinstance(val, dict):
            raise ctx.error(path, f"expected a table, got {val!r}")
        kt, vt = args
        return {
            _convert(kt, k, f"{path}.{k}", ctx): _convert(vt, v, f"{path}.{k}", ctx)
            for k, v in val.items()
        }
    if dataclasses.is_dataclass(tp):
        if not isinstance(val, dict):
            raise ctx.error(path, f"expected a table, got {val!r}")
        return _build(tp, val, path, ctx)
    raise ctx.error(path, f"unsupported schema type {tp!r}")  # a bug in a schema, not input


def _build(cls: Any, data: dict, prefix: str, ctx: _Ctx) -> Any:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    join = (lambda k: f"{prefix}.{k}") if prefix else (lambda k: k)
    _refuse_unknown(data, fields, join, ctx)
    kwargs = {}
    for name, f in fields.items():
        path = join(name)
        reg = f.metadata.get("registry")
        if reg is not None:
            kwargs[name] = _build_plugin(f, data.get(name), path, ctx)
            continue
        if "chains_of" in f.metadata:
            if name in data:
                kwargs[name] = _build_chains(f.metadata["chains_of"], data[name], path, ctx)
            continue
        if name in data:
            kwargs[name] = _convert(hints[name], data[name], path, ctx)
            if "names_in" in f.metadata:
                _check_names(f.metadata["names_in"], kwargs[name], path, ctx)
        elif dataclasses.is_dataclass(hints[name]):  # a nested table: its own defaults
            kwargs[name] = _build(hints[name], {}, path, ctx)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ctx.error(path, f"missing required key (expected {_type_name(hints[name])})")
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as err:  # __post_init__ checks
        raise _check_error(ctx, prefix, fields, str(err)) from None


def _refuse_unknown(data: dict, fields: dict, join: Callable[[str], str], ctx: _Ctx) -> None:
    unknown = sorted(set(data) - set(fields))
    if unknown:
        key = unknown[0]
        import difflib

        close = difflib.get_close_matches(key, list(fields), n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise ctx.error(join(key), f"unknown key{hint} (known: {', '.join(sorted(fields))})")


def _check_structure(cls: Any, data: dict, prefix: str, ctx: _Ctx) -> None:
    """What needs no plugin: the schema's own tables hold only known keys, values of the
    right type and tables where tables belong. Runs before a recipe's ``plugins`` are
    imported (and before any plugin is discovered), so a malformed recipe imports nothing;
    a plugin table's own keys, names checked against a registry and range checks wait for
    ``_build``."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    join = (lambda k: f"{prefix}.{k}") if prefix else (lambda k: k)
    _refuse_unknown(data, fields, join, ctx)
    for name, f in fields.items():
        if name not in data:
            continue
        path, val = join(name), data[name]
        if "registry" in f.metadata:
            if not isinstance(val, dict):
                raise ctx.error(path, f"expected a table with a 'type' key, got {val!r}")
        elif "chains_of" in f.metadata:
            continue  # tables of plugin tables: checked by _build_chains
        elif dataclasses.is_dataclass(hints[name]):
            if not isinstance(val, dict):
                raise ctx.error(path, f"expected a table, got {val!r}")
            _check_structure(hints[name], val, path, ctx)
        else:
            _convert(hints[name], val, path, ctx)


def _check_error(ctx: _Ctx, prefix: str, fields: dict, msg: str) -> RecipeError:
    """A ``__post_init__`` message as a recipe error. One that starts with one of this table's
    keys (``"train.lr must be ..."``) is placed at that key, so it names the file (or
    ``--set``) that gave the value."""
    head, _, rest = msg.partition(" ")
    own = head.rpartition(".")[2] if "." in head else head
    if rest.startswith("must ") and own in fields and head in (f"{prefix}.{own}", own):
        return ctx.error(f"{prefix}.{own}" if prefix else own, rest)
    # A check across tables names the nested key it is about: ``"rerank.chains.x[0] ..."``.
    if not prefix and "." in head and re.sub(r"\[\d+\]", "", head.split(".")[0]) in fields:
        return ctx.error(head, rest)
    return ctx.error(prefix or "(top level)", msg)


def _check_names(reg: Registry[Any], names: Any, path: str, ctx: _Ctx) -> None:
    for i, name in enumerate(names):
        try:
            reg.get(name)
        except PluginError as err:
            raise ctx.error(f"{path}[{i}]", str(err)) from None


def _build_plugin(f: dataclasses.Field, val: Any, path: str, ctx: _Ctx) -> Any:
    reg: Registry[Any] = f.metadata["registry"]
    if val is None:
        val = {"type": f.metadata["default_type"], **f.metadata["default_fields"]}
    if not isinstance(val, dict):
        raise ctx.error(path, f"expected a table with a 'type' key, got {val!r}")
    if "type" not in val:  # fields given for the default plugin
        val = {"type": f.metadata["default_type"], **f.metadata["default_fields"], **val}
    val = dict(val)
    name = val.pop("type", None)
    if not isinstance(name, str):
        raise ctx.error(f"{path}.type", f"expected the name of a {reg.kind} plugin (a string)")
    try:
        cls = reg.get(name)
    except PluginError as err:
        raise ctx.error(f"{path}.type", str(err)) from None
    return _build(cls, val, path, ctx)


_CHAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*\Z")


def _build_chains(reg: Registry[Any], val: Any, path: str, ctx: _Ctx) -> dict[str, tuple]:
    """``{name: [plugin table, ...]}`` -> ``{name: (plugin config, ...)}``."""
    if not isinstance(val, dict):
        raise ctx.error(path, f"expected a table of named lists of {reg.kind} tables, got {val!r}")
    out = {}
    for name, tables in val.items():
        where = f"{path}.{name}"
        if not _CHAIN_NAME.match(name):
            raise ctx.error(where, "a chain name must be letters, digits, '_' or '-'")
        if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
            raise ctx.error(
                where, f"expected a list of {reg.kind} tables ([[{where}]] with type = ...)"
            )
        if not tables:
            raise ctx.error(
                where, f"an empty chain: give at least one {reg.kind} table, or leave it out"
            )
        field = plugin(reg, "")  # no default: every table names its type
        out[name] = tuple(
            _build_plugin(field, {"type": None, **t}, f"{where}[{i}]", ctx)
            for i, t in enumerate(tables)
        )
    return out


def to_dict(cfg: Any, *, plugin_table: bool = False) -> Any:
    """A config object as plain TOML-able data (plugin tables carry their ``type``)."""
    if dataclasses.is_dataclass(cfg):
        out: dict[str, Any] = {}
        name = getattr(type(cfg), "plugin_name", None)
        if plugin_table and name is not None:
            out["type"] = name
        for f in dataclasses.fields(cfg):
            value = getattr(cfg, f.name)
            if "chains_of" in f.metadata:
                out[f.name] = {
                    k: [to_dict(s, plugin_table=True) for s in v] for k, v in value.items()
                }
                continue
            out[f.name] = to_dict(value, plugin_table="registry" in f.metadata)
        return out
    if isinstance(cfg, tuple | list):
        return [to_dict(v) for v in cfg]
    if isinstance(cfg, dict):
        return {k: to_dict(v) for k, v in cfg.items()}
    return cfg


@dataclasses.dataclass(frozen=True)
class Recipe:
    """A validated recipe: the typed config, its resolved form and hash, and its origin."""

    config: Any
    resolved: dict[str, Any]
    hash: str
    path: str


def recipe_hash(resolved: dict[str, Any]) -> str:
    canon = json.dumps(resolved, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canon.encode()).hexdigest()[:16]


def load(path: str | Path, overrides: typing.Sequence[str] = (), schema: Any = None) -> Recipe:
    """Loads, layers, overrides and validates a recipe file."""
    if schema is None:
        from rectk.config import RunConfig as schema
    path = Path(path)
    src: dict[str, str] = {}
    data = _load_layers(path, src)
    for text in overrides:
        keys, value = parse_override(text)
        data = _apply_override(data, keys, value, src)
    return build(data, src, str(path), schema)


def build(data: dict, src: dict[str, str], where: str, schema: Any = None) -> Recipe:
    """Validates merged recipe layers ``data`` (``src``: the file each key came from;
    ``where``: the recipe's path, or a name such as ``"<dict>"``) into a ``Recipe``: what
    ``load`` does once a file's layers and overrides are merged."""
    if schema is None:
        from rectk.config import RunConfig as schema
    ctx = _Ctx(src, str(Path(where).resolve()) if not where.startswith("<") else where)
    _check_structure(schema, data, "", ctx)  # before anything is imported
    if isinstance(data.get("plugins"), list):
        data = {**data, "plugins": _load_plugins(data["plugins"], ctx)}
    config = _build(schema, data, "", ctx)
    resolved = to_dict(config)
    return Recipe(config=config, resolved=resolved, hash=recipe_hash(resolved), path=where)


def _load_plugins(entries: list[Any], ctx: _Ctx) -> list[Any]:
    """Imports a recipe's ``plugins``: module names, or Python files (entries ending in
    ``.py``) relative to the recipe that lists them, which become absolute paths."""
    out: list[Any] = []
    for entry in entries:
        if isinstance(entry, str) and entry.endswith(".py"):
            origin = ctx.where("plugins")
            folder = Path(origin).parent if origin != "--set" else Path.cwd()
            file = (folder / entry).resolve()
            if not load_file(file):
                raise ctx.error(
                    "plugins", f"could not import {entry!r} ({file}): {failed_plugins()[str(file)]}"
                )
            entry = str(file)
        elif isinstance(entry, str) and not load_module(entry):
            why = failed_plugins()[entry]
            if why.startswith("ModuleNotFoundError"):
                why += (
                    " (a module name is looked up on the Python path, which the rectk command "
                    "keeps free of the current folder: install the module, or name its file, "
                    f'plugins = ["./{entry.replace(".", "/")}.py"], relative to the recipe)'
                )
            raise ctx.error("plugins", f"could not import {entry!r}: {why}")
        out.append(entry)
    return out


def from_dict(cls: Any, data: dict, where: str = "<dict>") -> Any:
    """Validates ``data`` into ``cls`` (used for plugin configs built in code and in tests)."""
    return _build(cls, data, "", _Ctx({}, where))
