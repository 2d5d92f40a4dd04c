"""Dataset plugins: each config's ``load()`` returns a ``rectk.data.types.Dataset``."""

from rectk_plugins.datasets import files, mooccube, registered_university

__all__ = ["files", "mooccube", "registered_university"]
