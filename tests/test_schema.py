"""Defaults live in the schema (rectk/config.py) only: base.toml and docs/recipes.md show them.

``recipes/base.toml`` must hold exactly ``rectk.config.defaults()`` (same keys, values and TOML
types). In ``docs/recipes.md`` every ``| key | type | default | meaning |`` table under a
``## `[section]` `` heading (or ``## Top level``) must have one row per schema key of that
section, each default a code span holding the schema's value as TOML; a plugin's default is its
name, and its fields are shown in the meaning cell as `` `field` (VALUE ...) ``, every field of
the default plugin with its default. The ``[data]`` table (``| type | fields | reads |``) shows
each data set's fields the same way (``required`` for a field without a default).
"""

from __future__ import annotations

import dataclasses
import doctest
import re
import tomllib
import typing
from typing import Any

import pytest

import rectk.config
from rectk.config import RunConfig, defaults, defaults_toml
from tests.conftest import ROOT

RECIPES_MD = ROOT / "docs" / "recipes.md"
BASE_TOML = ROOT / "recipes" / "base.toml"

# Defaults shown in words rather than as a TOML value: the words, and the value they stand for.
PROSE_DEFAULTS = {
    "mesh.rules": (
        "batch->data, the rest replicated",
        [
            ["batch", "data"],
            ["vocab", ""],
            ["embed", ""],
            ["heads", ""],
            ["mlp", ""],
            ["length", ""],
        ],
    )
}

_CODE = re.compile(r"`([^`]*)`")
_FIELD = re.compile(r"`(\w+)` \(([^)]*)\)")
_REQUIRED = object()


def _differences(want: Any, got: Any, path: str = "") -> list[str]:
    """Key paths where ``got`` differs from ``want`` in keys, values or TOML types."""
    if isinstance(want, dict) and isinstance(got, dict):
        out = []
        for key in sorted(set(want) | set(got), key=str):
            sub = f"{path}.{key}" if path else str(key)
            if key not in got:
                out.append(f"{sub}: missing (schema default {want[key]!r})")
            elif key not in want:
                out.append(f"{sub}: not in the schema")
            else:
                out += _differences(want[key], got[key], sub)
        return out
    if type(want) is not type(got) or want != got:
        return [f"{path}: {got!r}, the schema's default is {want!r}"]
    return []


def _toml_value(text: str) -> Any:
    return tomllib.loads(f"v = {text}")["v"]


# ----------------------------------------------------------------------------------------------
# recipes/base.toml and the TOML rendering
# ----------------------------------------------------------------------------------------------


def test_base_toml_holds_the_schema_defaults():
    base = tomllib.loads(BASE_TOML.read_text())
    assert "base" not in base
    diff = _differences(defaults(), base)
    assert not diff, "recipes/base.toml differs from rectk/config.py:\n" + "\n".join(diff)


def test_defaults_toml_round_trips():
    assert tomllib.loads(defaults_toml()) == defaults()


def test_config_doctests():
    result = doctest.testmod(rectk.config)
    assert result.attempted > 0 and result.failed == 0


def test_differences_names_each_drift():
    want = {"a": 1, "t": {"x": 1.0, "y": "s"}}
    got = {"a": 1, "t": {"x": 1, "z": "s"}, "b": True}
    assert _differences(want, got) == [
        "b: not in the schema",
        "t.x: 1, the schema's default is 1.0",
        "t.y: missing (schema default 's')",
        "t.z: not in the schema",
    ]


# ----------------------------------------------------------------------------------------------
# docs/recipes.md
# ----------------------------------------------------------------------------------------------


def _tables(markdown: str) -> list[tuple[str, list[str], list[list[str]]]]:
    """``(section heading, header cells, rows of cells)`` for every table of a page."""
    tables: list[tuple[str, list[str], list[list[str]]]] = []
    heading, lines = "", markdown.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("## "):
            heading = line[3:].strip()
        if line.startswith("|") and i + 1 < len(lines) and lines[i + 1].startswith("|---"):
            header = _cells(line)
            rows = []
            i += 2
            while i < len(lines) and lines[i].startswith("|"):
                rows.append(_cells(lines[i]))
                i += 1
            tables.append((heading, header, rows))
            continue
        i += 1
    return tables


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def _section(heading: str) -> str | None:
    """The key prefix of a heading: "" for ``Top level``, ``a.b`` for ``[a.b]``."""
    if heading == "Top level":
        return ""
    match = re.fullmatch(r"`\[([\w.]+)\]`", heading)
    return match.group(1) if match else None


def _shown_value(text: str) -> Any:
    """A field default as shown in ``(...)``: a code span, a bare TOML value, or required."""
    text = text.strip()
    if text.startswith("`"):
        return _toml_value(text[1:].split("`", 1)[0])
    token = re.split(r"[\s,:;]", text, maxsplit=1)[0]
    return _REQUIRED if token == "required" else _toml_value(token)


def _field_problems(where: str, cell: str, fields: dict[str, Any]) -> list[str]:
    """Fields shown as `` `name` (VALUE ...) `` in ``cell``: each of ``fields``, its default."""
    problems, shown = [], {}
    for name, text in _FIELD.findall(cell):
        if name not in fields:
            problems.append(f"{where}.{name}: shown, not a field")
            continue
        shown[name] = _shown_value(text)
    for name, value in shown.items():
        want = fields[name]
        same = value is want if want is _REQUIRED else type(value) is type(want) and value == want
        if not same:
            show = "required" if value is _REQUIRED else repr(value)
            problems.append(f"{where}.{name}: shown {show}, the default is {want!r}")
    problems += [f"{where}.{name}: not shown" for name in fields if name not in shown]
    return problems


def _plugin_registry(path: str) -> Any:
    """The registry of the schema field at key ``path``, or None if it is not a plugin table."""
    cls: Any = RunConfig
    field = None
    for part in path.split("."):
        if not dataclasses.is_dataclass(cls):
            return None
        field = {f.name: f for f in dataclasses.fields(cls)}[part]
        cls = typing.get_type_hints(cls)[part]
    return None if field is None else field.metadata.get("registry")


def _plugin_fields(reg: Any, name: str) -> dict[str, Any]:
    """A registered plugin's fields and defaults (``_REQUIRED`` where there is none)."""
    from rectk.recipe import to_dict

    out = {}
    for f in dataclasses.fields(reg.get(name)):
        if f.default is not dataclasses.MISSING:
            out[f.name] = to_dict(f.default)
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = to_dict(f.default_factory())
        else:
            out[f.name] = _REQUIRED
    return out


def _recipe_doc_problems(markdown: str) -> list[str]:
    schema = defaults()
    problems: list[str] = []
    documented: set[str] = set()
    tables = _tables(markdown)
    sections = {_section(heading) for heading, _, _ in tables}
    for heading, header, rows in tables:
        section = _section(heading)
        if section is None:
            continue
        table: dict[str, Any] = schema
        for part in filter(None, section.split(".")):
            table = table[part]
        if header == ["type", "fields", "reads"]:  # the data sets and their fields
            for cells in rows:
                name = _CODE.fullmatch(cells[0])
                assert name, f"docs/recipes.md [{section}]: {cells[0]!r} is not a `name`"
                fields = _plugin_fields(_plugin_registry(section), name.group(1))
                problems += _field_problems(f"{section}:{name.group(1)}", cells[1], fields)
            continue
        if header[:3] != ["key", "type", "default"]:
            continue
        is_plugin = bool(section) and _plugin_registry(section) is not None
        for cells in rows:
            key = cells[0].strip("`")
            path = f"{section}.{key}" if section else key
            documented.add(path)
            if key not in table:
                problems.append(f"{path}: documented, not in the schema")
                continue
            want, shown = table[key], cells[2]
            if path in PROSE_DEFAULTS:
                words, value = PROSE_DEFAULTS[path]
                if shown != words or want != value:
                    problems.append(f"{path}: {shown!r} for {want!r}; update PROSE_DEFAULTS")
                continue
            code = _CODE.fullmatch(shown)
            if code is None:
                problems.append(f"{path}: default {shown!r} is not one code span")
                continue
            if isinstance(want, dict) and "type" in want:  # a plugin field: its default is its name
                if code.group(1) != want["type"]:
                    problems.append(f"{path}: shown {code.group(1)}, the default is {want['type']}")
                fields = {k: v for k, v in want.items() if k != "type"}
                problems += _field_problems(path, cells[3], fields)
                continue
            value = _toml_value(code.group(1))
            if type(value) is not type(want) or value != want:
                problems.append(f"{path}: shown {value!r}, the default is {want!r}")
            if key == "type" and is_plugin:
                fields = {k: v for k, v in table.items() if k != "type"}
                problems += _field_problems(section, cells[3], fields)
        # Every key of the section has a row; a plugin section's fields are in its `type` row.
        for key in ["type"] if is_plugin else table:
            path = f"{section}.{key}" if section else key
            if path not in documented and path not in sections:  # or a section of its own
                problems.append(f"{path}: no row in the [{section or 'top level'}] table")
    return problems


def test_recipe_doc_defaults_match_the_schema():
    problems = _recipe_doc_problems(RECIPES_MD.read_text())
    assert not problems, "docs/recipes.md disagrees with rectk/config.py:\n" + "\n".join(problems)


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        (("| `lr` | float | `1e-3` |", "| `lr` | float | `3e-4` |"), "train.lr: shown 0.0003"),
        (("| `dim` | int | `64` |", "| `dim` | int | `64.0` |"), "model.dim: shown 64.0"),
        (("`layers` (2)", "`layers` (3)"), "model.encoder.layers: shown 3"),
        (("`num_learners` (3000), ", ""), "data:university_courses.num_learners: not shown"),
        (("| `k` | int | `10` |", "| `kk` | int | `10` |"), "recommend.kk: documented"),
        (("`seed` (0), `min", "`seed` (1), `min"), "data:university_courses.seed: shown 1"),
        (("`heads` (2)", "`heads` (2), `depth` (3)"), "model.encoder.depth: shown, not a field"),
        (("| `ks` | list of ints | `[5, 10, 20]` |", "| `ks` | list | `[5, 10]` |"), "eval.ks"),
        (("| `mask_seen` | bool |", "| `hide_seen` | bool |"), "eval.mask_seen: no row"),
    ],
)
def test_recipe_doc_check_catches_drift(edit, problem):
    old, new = edit
    text = RECIPES_MD.read_text()
    assert old in text
    problems = _recipe_doc_problems(text.replace(old, new, 1))
    assert any(p.startswith(problem) for p in problems), problems
