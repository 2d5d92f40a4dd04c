"""XLA compiler options by kind of computation (passed to ``jax.jit(compiler_options=...)``).

Forward-only computations (ranking, top-k) on the CPU compile without XLA:CPU's
experimental YNNPACK fusions: on our 2-core CPU they made the SASRec encoder of an ml-100k
evaluation batch 2.2x slower (25 ms against 11 ms per batch of 256 learners, identical ranks),
while the train step was as fast or faster with them, so training keeps XLA's defaults.
``benchmarks/eval_speed.py`` measures both settings.
"""

from __future__ import annotations

import functools

# XLA DebugOptions field: the library fusions XLA:CPU hands to YNNPACK (empty = none).
_NO_YNN = {"xla_cpu_experimental_ynn_fusion_type": ""}


@functools.cache
def inference_options() -> dict[str, str] | None:
    """Compiler options for forward-only computations on the default backend, or None.

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


def jit_inference(fun, **kwargs):
    """``jax.jit`` for a forward-only computation, with ``inference_options``."""
    import jax

    return jax.jit(fun, compiler_options=inference_options(), **kwargs)
