"""The examples in docstrings run and give what they show."""

import doctest
import importlib

import pytest

MODULES = [
    "rectk.registry",
    "rectk.testing",
    "rectk_plugins.datasets.university.simulator",
    "rectk_plugins.datasets.university.courses",
    "rectk_plugins.datasets.university.catalogue_io",
    "rectk.data.readers",
    "rectk.data.pipeline",
    "rectk.ranking",
    "rectk.plan",
    "rectk.resources",
    "rectk.warm_start",
    "rectk_plugins.text",
    "rectk_plugins.text.bert",
    "rectk_plugins.losses.common",
    "rectk_plugins.losses.binary",
    "rectk_plugins.tasks",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
