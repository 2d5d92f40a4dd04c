"""Docs stay true: every recipe key is documented; doctests in the machinery run."""

import doctest
import importlib
import tomllib

import pytest

from tests.conftest import ROOT


def keys(table, prefix=""):
    for k, v in table.items():
        path = f"{prefix}{k}"
        if isinstance(v, dict):
            yield from keys(v, path + ".")
        else:
            yield path


def test_every_base_key_is_documented():
    doc = (ROOT / "docs" / "recipes.md").read_text()
    base = tomllib.loads((ROOT / "recipes" / "base.toml").read_text())
    missing = []
    for path in keys(base):
        leaf = path.split(".")[-1]
        section = path.split(".")[0]
        if f"`{leaf}`" not in doc and f"({leaf})" not in doc and f"`{leaf}` (" not in doc:
            missing.append(path)
        if "." in path and f"[{section}" not in doc:
            missing.append(section)
    assert not missing, f"undocumented recipe keys: {missing}"


@pytest.mark.parametrize(
    "module", ["rectk.registry", "rectk.data.readers", "rectk.data.pipeline", "rectk.ranking"]
)
def test_doctests(module):
    mod = importlib.import_module(module)
    failures, tried = doctest.testmod(mod, optionflags=doctest.ELLIPSIS)
    assert tried > 0 and failures == 0


def test_plugin_reference_names_every_plugin_and_field():
    import dataclasses

    from rectk import registry

    doc = (ROOT / "docs" / "plugins.md").read_text()
    missing = []
    for kind, reg in registry.ALL.items():
        for name in reg.names():
            if not reg.origin(name).startswith("rectk_plugins."):
                continue  # an outside plugin installed in this environment
            if f"| `{name}` |" not in doc:
                missing.append(f"{kind}:{name}")
            cls = reg.get(name)
            if dataclasses.is_dataclass(cls):
                missing += [
                    f"{kind}:{name}.{f.name}"
                    for f in dataclasses.fields(cls)
                    if f"`{f.name}`" not in doc
                ]
    assert not missing, f"not in docs/plugins.md: {missing}"
