"""Dataset plugins: each config's ``load()`` returns a ``rectk.data.types.Dataset``."""

from . import files, mooccube, university

__all__ = ["files", "mooccube", "university"]
