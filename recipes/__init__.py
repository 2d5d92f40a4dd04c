"""The recipes shipped with rectk, installed as the package ``rectk_recipes``.

A recipe outside the repository builds on one with ``base = "rectk:NAME"`` (``NAME.toml`` in
this folder); see docs/recipes.md.
"""
