"""XLA compiler options by kind of computation (passed to ``jax.jit(compiler_options=...)``).

Forward-only computations (ranking, top-k) compile with XLA's defaults, which on the CPU hand
matrix products to YNNPACK, unless the model's encoder declares
``EncoderTraits(library_dots=False)``: then they compile without those library fusions (GRU4Rec
does: its scan runs small per-step products, which those fusions slow down).
``benchmarks/eval_speed.py RECIPE`` times both, interleaved (docs/notes/2026-11-29-eval-speed.md).
The train step always keeps XLA's defaults.
"""

from __future__ import annotations

import functools

# XLA DebugOptions field: the library fusions XLA:CPU hands to YNNPACK (empty = none).
_NO_YNN = {"xla_cpu_experimental_ynn_fusion_type": ""}


@functools.cache
def no_library_dots() -> dict[str, str] | None:
    """Compiler options without XLA:CPU's YNNPACK fusions, or None (XLA's defaults).

    Empty of effect (None) off the CPU, or where this jaxlib does not know the option: it is
    tried once on a trivial computation, so a jaxlib that drops it costs speed, not a crash.
    """
    import jax
    import jax.numpy as jnp

    if jax.default_backend() != "cpu":
        return None
    try:
        jax.jit(lambda x: x + 1, compiler_options=_NO_YNN).lower(jnp.zeros(1)).compile()
    except Exception:  # an XLA build without the option: keep its defaults
        return None
    return dict(_NO_YNN)


def inference_options(library_dots: bool = True) -> dict[str, str] | None:
    """Compiler options for a forward-only computation: XLA's defaults (None), or without
    library fusions where the encoder declares ``library_dots = False``."""
    return None if library_dots else no_library_dots()


def jit_inference(fun, *, library_dots: bool = True, **kwargs):
    """``jax.jit`` for a forward-only computation, with ``inference_options(library_dots)``."""
    import jax

    return jax.jit(fun, compiler_options=inference_options(library_dots), **kwargs)
