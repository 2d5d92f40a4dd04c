"""Building blocks shared by the encoders: dense layers with logical axes, dropout, and the
transformer layer of the attention encoders."""

from __future__ import annotations

import math
import os

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from rectk.errors import RecipeError


def dense(din: int, dout: int, axes: tuple[str, str], std: float, rngs: nnx.Rngs) -> nnx.Linear:
    """A linear layer, normal(``std``) kernel with logical ``axes``, zero bias."""
    return nnx.Linear(
        din,
        dout,
        kernel_init=nnx.with_partitioning(nnx.initializers.normal(std), axes),
        bias_init=nnx.with_partitioning(nnx.initializers.zeros_init(), (axes[1],)),
        rngs=rngs,
    )


def gelu(x: jax.Array) -> jax.Array:
    """Exact GELU, ``x * Phi(x)``, as ``0.5 x (1 + erf(x / sqrt 2))`` (PyTorch's and BERT's
    formula). ``jax.nn.gelu(approximate=False)`` evaluates ``erfc`` instead, which keeps relative
    precision in the far negative tail, where GELU is within 1e-6 of zero anyway, and is several
    times slower on a CPU (docs/notes/2026-11-29-eval-speed.md)."""
    return x * 0.5 * (1.0 + jax.lax.erf(x * np.sqrt(0.5).astype(x.dtype)))


def dropout(x: jax.Array, rate: float, rngs: nnx.Rngs | None) -> jax.Array:
    """Inverted dropout; the identity when ``rngs`` is None (evaluation)."""
    if rngs is None or rate == 0.0:
        return x
    keep = jax.random.bernoulli(rngs.dropout(), 1.0 - rate, x.shape)
    return jnp.where(keep, x / (1.0 - rate), 0.0).astype(x.dtype)


class SelfAttention(nnx.Module):
    def __init__(self, dim: int, heads: int, *, attn_dropout: float, std: float, rngs: nnx.Rngs):
        if dim % heads:
            raise ValueError(f"model.dim {dim} must be divisible by encoder.heads {heads}")
        self.heads, self.attn_dropout = heads, attn_dropout
        self.query = dense(dim, dim, ("embed", "heads"), std, rngs)
        self.key = dense(dim, dim, ("embed", "heads"), std, rngs)
        self.value = dense(dim, dim, ("embed", "heads"), std, rngs)
        self.out = dense(dim, dim, ("heads", "embed"), std, rngs)

    def __call__(
        self,
        x_btd: jax.Array,
        allowed_btt: jax.Array,
        rngs: nnx.Rngs | None,
        *,
        last_only: bool = False,
    ):
        """Attention outputs at every position, or (``last_only``) at the last one, ``[B, 1, D]``:
        its query attends to every allowed position, the others' queries are not computed."""
        if last_only:
            allowed_btt = allowed_btt[:, -1:, :]
            if rngs is None or self.attn_dropout == 0.0:  # attention weights sum to one
                return self._last_only(x_btd, allowed_btt[:, 0])
        b, _, d = x_btd.shape
        h = self.heads

        def split(y):
            return y.reshape(b, y.shape[1], h, d // h)

        q_bthk, k_bthk, v_bthk = (
            split(self.query(x_btd[:, -1:] if last_only else x_btd)),
            split(self.key(x_btd)),
            split(self.value(x_btd)),
        )
        if rngs is None:
            ctx_bthk = _inference_context(q_bthk, k_bthk, v_bthk, allowed_btt)
        else:
            logits_bhts = jnp.einsum("bthk,bshk->bhts", q_bthk, k_bthk) / jnp.sqrt(d // h).astype(
                x_btd.dtype
            )
            logits_bhts = jnp.where(
                allowed_btt[:, None], logits_bhts, jnp.finfo(logits_bhts.dtype).min
            )
            probs_bhts = jax.nn.softmax(logits_bhts.astype(jnp.float32), axis=-1)
            probs_bhts = dropout(probs_bhts.astype(x_btd.dtype), self.attn_dropout, rngs)
            ctx_bthk = jnp.einsum("bhts,bshk->bthk", probs_bhts, v_bthk)
        return self.out(ctx_bthk.reshape(b, ctx_bthk.shape[1], d))

    def _last_only(self, x_bsd: jax.Array, allowed_bs: jax.Array) -> jax.Array:
        """The last position's output without projecting every position to keys and values
        (exact where the attention weights sum to one: no attention dropout).

        Per head, ``q . (x_s Wk + bk) = (Wk q) . x_s + q . bk``, and ``q . bk`` is the same at
        every position, so the softmax drops it; with weights summing to one,
        ``sum_s p_s (x_s Wv + bv) = (sum_s p_s x_s) Wv + bv``. Products of ``[B, H, D]`` replace
        the ``[B, S, D] x [D, D]`` key and value projections, most of a last layer's work.
        """
        b, _, d = x_bsd.shape
        h = self.heads
        dtype = x_bsd.dtype
        q_bhk = self.query(x_bsd[:, -1]).reshape(b, h, d // h)
        wk_dhk = self.key.kernel[...].astype(dtype).reshape(d, h, d // h)
        wv_dhk = self.value.kernel[...].astype(dtype).reshape(d, h, d // h)
        qk_bhd = jnp.einsum("bhk,dhk->bhd", q_bhk, wk_dhk) / jnp.sqrt(d // h).astype(dtype)
        logits_bhs = jnp.einsum("bhd,bsd->bhs", qk_bhd, x_bsd)
        logits_bhs = jnp.where(allowed_bs[:, None], logits_bhs, jnp.finfo(logits_bhs.dtype).min)
        probs_bhs = jax.nn.softmax(logits_bhs.astype(jnp.float32), axis=-1).astype(dtype)
        mean_bhd = jnp.einsum("bhs,bsd->bhd", probs_bhs, x_bsd)
        assert self.value.bias is not None  # dense() layers have a bias
        ctx_bhk = jnp.einsum("bhd,dhk->bhk", mean_bhd, wv_dhk) + self.value.bias[...].astype(
            dtype
        ).reshape(h, d // h)
        return self.out(ctx_bhk.reshape(b, 1, d))


def _inference_context(
    q_bthk: jax.Array, k_bshk: jax.Array, v_bshk: jax.Array, allowed_bts: jax.Array
) -> jax.Array:
    """Softmax attention without dropout, ``[B, T, H, K]``, computed heads-major: batched
    ``[T, K] x [K, S]`` and ``[T, S] x [S, K]`` products per (learner, head), and the softmax's
    division applied to the ``[T, K]`` context instead of the ``[T, S]`` weights.

    The same values as the training path's (to float rounding), and faster on a CPU for the
    evaluation shapes; its gradient is slower, so training keeps the other form
    (docs/notes/2026-11-29-eval-speed.md).
    """
    dtype = q_bthk.dtype
    q_bhtk = q_bthk.transpose(0, 2, 1, 3) / jnp.sqrt(q_bthk.shape[-1]).astype(dtype)
    logits_bhts = jnp.matmul(q_bhtk, k_bshk.transpose(0, 2, 3, 1)).astype(jnp.float32)
    logits_bhts = jnp.where(allowed_bts[:, None], logits_bhts, jnp.finfo(jnp.float32).min)
    weights_bhts = jnp.exp(logits_bhts - logits_bhts.max(axis=-1, keepdims=True))
    ctx_bhtk = jnp.matmul(weights_bhts.astype(dtype), v_bshk.transpose(0, 2, 1, 3))
    ctx_bhtk = ctx_bhtk.astype(jnp.float32) / weights_bhts.sum(axis=-1, keepdims=True)
    return ctx_bhtk.astype(dtype).transpose(0, 2, 1, 3)


class TransformerLayer(nnx.Module):
    """Post-norm transformer layer (as in SASRec/BERT4Rec reference implementations)."""

    def __init__(
        self,
        dim: int,
        heads: int,
        inner: int,
        *,
        dropout: float,
        attn_dropout: float,
        eps: float,
        std: float,
        rngs: nnx.Rngs,
    ):
        self.attn = SelfAttention(dim, heads, attn_dropout=attn_dropout, std=std, rngs=rngs)
        self.norm1 = nnx.LayerNorm(dim, epsilon=eps, rngs=rngs)
        self.ff_in = dense(dim, inner, ("embed", "mlp"), std, rngs)
        self.ff_out = dense(inner, dim, ("mlp", "embed"), std, rngs)
        self.norm2 = nnx.LayerNorm(dim, epsilon=eps, rngs=rngs)
        self.rate = dropout

    def __call__(self, x_btd, allowed_btt, rngs, *, last_only: bool = False):
        """Every position's output, or (``last_only``) the last one's, ``[B, 1, D]``."""
        y = dropout(self.attn(x_btd, allowed_btt, rngs, last_only=last_only), self.rate, rngs)
        x_btd = self.norm1((x_btd[:, -1:] if last_only else x_btd) + y)
        y = self.ff_out(gelu(self.ff_in(x_btd)))
        return self.norm2(x_btd + dropout(y, self.rate, rngs))


def require(ok: bool, key: str, allowed: str, value) -> None:
    """An encoder field out of range: ``"KEY must be ALLOWED, got VALUE"``, which a recipe
    reports at ``model.encoder.KEY``, naming the file that gave the value."""
    if not ok:
        raise ValueError(f"{key} must be {allowed}, got {value!r}")


def check_stack_config(cfg) -> None:
    """Validates the fields a ``TransformerStack`` reads on their own (raised as a recipe
    error); ``check_stack_shape`` checks them against ``model.dim`` and ``model.max_len``."""
    require(cfg.layers >= 1, "layers", "at least 1", cfg.layers)
    require(cfg.heads >= 1, "heads", "at least 1", cfg.heads)
    require(cfg.inner >= 0, "inner", ">= 0 (0 = 4 x model.dim)", cfg.inner)
    require(0.0 <= cfg.dropout < 1.0, "dropout", "in [0, 1)", cfg.dropout)
    require(0.0 <= cfg.attn_dropout < 1.0, "attn_dropout", "in [0, 1)", cfg.attn_dropout)
    require(cfg.layer_norm_eps > 0.0, "layer_norm_eps", "positive", cfg.layer_norm_eps)
    require(cfg.init_std >= 0.0, "init_std", ">= 0", cfg.init_std)


def _memory_bytes() -> int:
    """This process's first device's memory (an accelerator's limit; the host's RAM on a CPU)."""
    stats = jax.local_devices()[0].memory_stats() or {}
    if "bytes_limit" in stats:
        return int(stats["bytes_limit"])
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def check_stack_shape(cfg, *, dim: int, max_len: int) -> None:
    """Refuses, when the encoder is built, heads that do not divide ``model.dim`` and a
    ``model.max_len`` whose attention scores cannot fit in the device's memory even for a
    single window of one layer: ``max_len**2 x heads x 4`` bytes (a batch takes
    ``train.batch_size`` times that, so this is an obvious lower bound)."""
    if dim % cfg.heads:
        fit = ", ".join(str(h) for h in range(1, min(dim, 64) + 1) if dim % h == 0)
        raise RecipeError(
            f"model.encoder.heads = {cfg.heads} must divide model.dim = {dim} (each head "
            f"attends over model.dim / heads dimensions); choose heads among {fit}, or change "
            "model.dim"
        )
    need, have = max_len**2 * cfg.heads * 4, _memory_bytes()
    if need > have:
        top = math.isqrt(have // (4 * cfg.heads))
        raise RecipeError(
            f"model.max_len = {max_len} cannot fit: one window's attention scores take "
            f"max_len^2 x heads x 4 bytes = {need / 2**30:.1f} GiB, more than the "
            f"{have / 2**30:.1f} GiB of memory of {jax.local_devices()[0].device_kind} "
            "(a batch takes "
            f"train.batch_size times that); model.max_len must be in [1, {top}] here"
        )


class TransformerStack(nnx.Module):
    """Learned positions, input LayerNorm and dropout, then ``layers`` transformer layers.

    ``cfg`` carries ``layers``, ``heads``, ``inner`` (0 = 4 x dim), ``dropout``, ``attn_dropout``,
    ``layer_norm_eps`` and ``init_std`` (the SASRec and BERT4Rec configs do). Which positions
    attend to which is the caller's ``allowed_bll``: causal for SASRec, all for BERT4Rec.
    """

    def __init__(self, cfg, *, dim: int, max_len: int, rngs: nnx.Rngs):
        check_stack_shape(cfg, dim=dim, max_len=max_len)
        init = nnx.with_partitioning(nnx.initializers.normal(cfg.init_std), ("length", "embed"))
        self.positions = nnx.Param(init(rngs.params(), (max_len, dim)))
        self.norm = nnx.LayerNorm(dim, epsilon=cfg.layer_norm_eps, rngs=rngs)
        self.layers = nnx.List(
            [
                TransformerLayer(
                    dim,
                    cfg.heads,
                    cfg.inner or 4 * dim,
                    dropout=cfg.dropout,
                    attn_dropout=cfg.attn_dropout,
                    eps=cfg.layer_norm_eps,
                    std=cfg.init_std,
                    rngs=rngs,
                )
                for _ in range(cfg.layers)
            ]
        )
        self.rate = cfg.dropout

    def __call__(self, emb_bld, allowed_bll, rngs, *, last_only: bool = False) -> jax.Array:
        """Hidden states ``[B, L, D]``; ``last_only``: the last position's only, ``[B, 1, D]``
        (the last layer then computes that position alone: what ranking needs)."""
        length = emb_bld.shape[1]
        x_bld = emb_bld + self.positions[...][None, -length:, :]
        x_bld = dropout(self.norm(x_bld), self.rate, rngs)
        for i, layer in enumerate(self.layers):
            x_bld = layer(
                x_bld, allowed_bll, rngs, last_only=last_only and i == len(self.layers) - 1
            )
        return x_bld
