"""rectk's built-in plugins (import name ``rectk_plugins``).

They register exactly as an outside author's plugins do: each module below is advertised under
the ``rectk.plugins`` entry-point group in ``pyproject.toml`` and registers itself on import.
"""
