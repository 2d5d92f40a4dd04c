"""Dataset plugins: each config's ``load()`` returns a ``rectk.data.types.Dataset``."""

from . import files, junyi, kt_files, mooccube, synthetic, university

__all__ = ["files", "junyi", "kt_files", "mooccube", "synthetic", "university"]
