"""A BERT-family text encoder (BERT, MiniLM, ...) as Flax NNX modules.

The modules mirror Hugging Face's ``BertModel`` closely enough that its weights load one to one
(see :mod:`rectk_plugins.text.weights`): embeddings (word + position + token type, then LayerNorm),
``num_layers`` post-norm transformer layers, and no pooler (use :func:`mean_pool` or
:func:`cls_pool`). There is no dropout: the encoder is meant for inference and fine-tuning with
dropout 0, so there is no train/eval switch.

Options:

* ``dtype``: the compute dtype (``jnp.bfloat16`` with float32 parameters is mixed precision).
  LayerNorm statistics, the softmax and the pooling always run in float32.
* ``remat``: wrap every layer with :func:`flax.nnx.remat` to trade compute for memory on long texts.
* ``lora_rank > 0``: low-rank adapters on the attention projections named by ``lora_targets``.
  Their parameters are :class:`flax.nnx.LoRAParam` (a subclass of ``nnx.Param``), so a trainer
  selects only them with ``nnx.LoRAParam`` and the frozen base with
  ``nnx.All(nnx.Param, nnx.Not(nnx.LoRAParam))``. B starts at zero, so a fresh adapter leaves the
  output unchanged.

Parameters carry logical axis names (``vocab``, ``embed``, ``heads``, ``mlp``) as
``out_sharding`` metadata; the mapping to mesh axes is supplied from outside. Shape letters:
B batch, T tokens, D hidden size, N heads, H head size, F intermediate size, V vocabulary.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from ..encoders.layers import gelu

LORA_TARGETS = ("query", "key", "value", "output")

_ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "gelu": gelu,  # erf-based, as PyTorch's (and so Hugging Face's) "gelu"
    "gelu_new": lambda x: jax.nn.gelu(x, approximate=True),
    "gelu_pytorch_tanh": lambda x: jax.nn.gelu(x, approximate=True),
    "relu": jax.nn.relu,
    "silu": jax.nn.silu,
    "swish": jax.nn.silu,
}


@dataclasses.dataclass(frozen=True, kw_only=True)
class BertConfig:
    """Shape and numerics of a BERT encoder, as read from a Hugging Face ``config.json``.

    >>> cfg = BertConfig(vocab_size=32, hidden_size=8, num_layers=1, num_heads=2,
    ...                  intermediate_size=16)
    >>> cfg.head_dim
    4
    """

    vocab_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    max_positions: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    hidden_act: str = "gelu"

    def __post_init__(self) -> None:
        for name in (
            "vocab_size",
            "hidden_size",
            "num_layers",
            "num_heads",
            "intermediate_size",
            "max_positions",
            "type_vocab_size",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"BertConfig.{name} must be a positive integer, got {value!r}")
        if self.hidden_size % self.num_heads:
            raise ValueError(
                f"BertConfig.hidden_size={self.hidden_size} is not divisible by "
                f"num_heads={self.num_heads}"
            )
        if self.hidden_act not in _ACTIVATIONS:
            raise ValueError(
                f"BertConfig.hidden_act={self.hidden_act!r} is not supported; "
                f"expected one of {sorted(_ACTIVATIONS)}"
            )

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @classmethod
    def from_hf_dict(cls, hf: Mapping[str, Any]) -> BertConfig:
        """Builds the config from the keys of a Hugging Face ``BertConfig`` dictionary.

        Raises:
            ValueError: a needed key is missing, has the wrong type, or the model is not a
                plain BERT encoder with absolute positions.
        """
        position_type = hf.get("position_embedding_type", "absolute")
        if position_type != "absolute":
            raise ValueError(
                f"position_embedding_type={position_type!r} is not supported; expected 'absolute'"
            )
        keys = {
            "vocab_size": "vocab_size",
            "hidden_size": "hidden_size",
            "num_layers": "num_hidden_layers",
            "num_heads": "num_attention_heads",
            "intermediate_size": "intermediate_size",
            "max_positions": "max_position_embeddings",
            "type_vocab_size": "type_vocab_size",
            "layer_norm_eps": "layer_norm_eps",
            "hidden_act": "hidden_act",
        }
        required = ("vocab_size", "hidden_size", "num_layers", "num_heads", "intermediate_size")
        missing = [keys[k] for k in required if keys[k] not in hf]
        if missing:
            raise ValueError(f"missing key(s) {missing}")
        kwargs = {field: hf[key] for field, key in keys.items() if key in hf}
        if "layer_norm_eps" in kwargs:
            kwargs["layer_norm_eps"] = float(kwargs["layer_norm_eps"])
        return cls(**kwargs)


def _param(
    init: nnx.Initializer,
    key: jax.Array,
    shape: tuple[int, ...],
    dtype: Any,
    axes: tuple[str | None, ...],
    param_type: type[nnx.Param] = nnx.Param,
) -> nnx.Param:
    """A parameter annotated with logical axis names, sharded later from outside."""
    return param_type(nnx.with_partitioning(init, axes)(key, shape, dtype), eager_sharding=False)


class LayerNorm(nnx.Module):
    """LayerNorm over the last axis; statistics in float32, output in the compute dtype."""

    def __init__(self, features: int, *, eps: float, dtype: Any, param_dtype: Any):
        self.eps = eps
        self.dtype = dtype
        self.scale = _param(
            nnx.initializers.ones, jax.random.key(0), (features,), param_dtype, ("embed",)
        )
        self.bias = _param(
            nnx.initializers.zeros, jax.random.key(0), (features,), param_dtype, ("embed",)
        )

    def __call__(self, x_btd: jax.Array) -> jax.Array:
        x_btd = x_btd.astype(jnp.float32)
        mean_bt1 = x_btd.mean(-1, keepdims=True)
        var_bt1 = jnp.square(x_btd - mean_bt1).mean(-1, keepdims=True)
        y_btd = (x_btd - mean_bt1) * jax.lax.rsqrt(var_bt1 + self.eps)
        y_btd = y_btd * self.scale[...].astype(jnp.float32) + self.bias[...].astype(jnp.float32)
        return y_btd.astype(self.dtype)


class Dense(nnx.Module):
    """``x @ kernel + bias``, optionally plus a LoRA adapter ``(alpha / rank) * x @ A @ B``.

    The kernel is stored ``[in, out]`` (a torch ``Linear`` weight transposed).
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        axes: tuple[str, str],
        dtype: Any,
        param_dtype: Any,
        lora_rank: int = 0,
        lora_alpha: float = 8.0,
        rngs: nnx.Rngs,
    ):
        self.dtype = dtype
        key = rngs.params()
        self.kernel = _param(
            nnx.initializers.normal(0.02),
            key,
            (in_features, out_features),
            param_dtype,
            axes,
        )
        self.bias = _param(
            nnx.initializers.zeros, rngs.params(), (out_features,), param_dtype, (axes[1],)
        )
        self.lora_rank = lora_rank
        self.lora_scale = lora_alpha / lora_rank if lora_rank else 0.0
        if lora_rank:
            # A as torch's kaiming_uniform(a=sqrt(5)) (as in PEFT); B zero: the adapter starts off.
            # Its key derives from the kernel's, so the base weights do not depend on lora_rank.
            a_init = nnx.initializers.variance_scaling(1 / 3, "fan_in", "uniform")
            self.lora_a = _param(
                a_init,
                jax.random.fold_in(key, 1),
                (in_features, lora_rank),
                param_dtype,
                (axes[0], None),
                nnx.LoRAParam,
            )
            self.lora_b = _param(
                nnx.initializers.zeros,
                key,
                (lora_rank, out_features),
                param_dtype,
                (None, axes[1]),
                nnx.LoRAParam,
            )

    def __call__(self, x_bti: jax.Array) -> jax.Array:
        x_bti = x_bti.astype(self.dtype)
        y_bto = x_bti @ self.kernel[...].astype(self.dtype) + self.bias[...].astype(self.dtype)
        if self.lora_rank:
            z_btr = x_bti @ self.lora_a[...].astype(self.dtype)
            delta_bto = z_btr @ self.lora_b[...].astype(self.dtype)
            y_bto = y_bto + (self.lora_scale * delta_bto).astype(self.dtype)
        return y_bto


class BertEmbeddings(nnx.Module):
    """Word + absolute position + token-type embeddings, then LayerNorm."""

    def __init__(self, config: BertConfig, *, dtype: Any, param_dtype: Any, rngs: nnx.Rngs):
        d = config.hidden_size
        init = nnx.initializers.normal(0.02)
        self.dtype = dtype
        self.word = _param(
            init, rngs.params(), (config.vocab_size, d), param_dtype, ("vocab", "embed")
        )
        self.position = _param(
            init, rngs.params(), (config.max_positions, d), param_dtype, (None, "embed")
        )
        self.token_type = _param(
            init, rngs.params(), (config.type_vocab_size, d), param_dtype, (None, "embed")
        )
        self.norm = LayerNorm(d, eps=config.layer_norm_eps, dtype=dtype, param_dtype=param_dtype)

    def __call__(self, input_ids_bt: jax.Array, token_type_ids_bt: jax.Array | None) -> jax.Array:
        t = input_ids_bt.shape[1]
        x_btd = jnp.take(self.word[...], input_ids_bt, axis=0).astype(jnp.float32)
        x_btd = x_btd + self.position[...][:t].astype(jnp.float32)[None]
        if token_type_ids_bt is None:
            x_btd = x_btd + self.token_type[...][0].astype(jnp.float32)
        else:
            x_btd = x_btd + jnp.take(self.token_type[...], token_type_ids_bt, axis=0).astype(
                jnp.float32
            )
        return self.norm(x_btd)


class BertSelfAttention(nnx.Module):
    """Multi-head self-attention, its output projection and the residual LayerNorm."""

    def __init__(
        self,
        config: BertConfig,
        *,
        dtype: Any,
        param_dtype: Any,
        lora_rank: int,
        lora_alpha: float,
        lora_targets: Sequence[str],
        rngs: nnx.Rngs,
    ):
        d = config.hidden_size
        self.num_heads = config.num_heads
        self.dtype = dtype

        def dense(name: str, axes: tuple[str, str]) -> Dense:
            rank = lora_rank if name in lora_targets else 0
            return Dense(
                d,
                d,
                axes=axes,
                dtype=dtype,
                param_dtype=param_dtype,
                lora_rank=rank,
                lora_alpha=lora_alpha,
                rngs=rngs,
            )

        self.query = dense("query", ("embed", "heads"))
        self.key = dense("key", ("embed", "heads"))
        self.value = dense("value", ("embed", "heads"))
        self.output = dense("output", ("heads", "embed"))
        self.norm = LayerNorm(d, eps=config.layer_norm_eps, dtype=dtype, param_dtype=param_dtype)

    def __call__(self, x_btd: jax.Array, mask_bt: jax.Array) -> jax.Array:
        b, t, d = x_btd.shape
        n = self.num_heads
        h = d // n
        q_btnh = self.query(x_btd).reshape(b, t, n, h)
        k_btnh = self.key(x_btd).reshape(b, t, n, h)
        v_btnh = self.value(x_btd).reshape(b, t, n, h)
        logits_bnts = jnp.einsum("btnh,bsnh->bnts", q_btnh * (1.0 / math.sqrt(h)), k_btnh)
        logits_bnts = logits_bnts.astype(jnp.float32)
        keep_b11s = mask_bt.astype(bool)[:, None, None, :]
        logits_bnts = jnp.where(keep_b11s, logits_bnts, jnp.finfo(jnp.float32).min)
        probs_bnts = jax.nn.softmax(logits_bnts, axis=-1).astype(self.dtype)
        ctx_btnh = jnp.einsum("bnts,bsnh->btnh", probs_bnts, v_btnh)
        out_btd = self.output(ctx_btnh.reshape(b, t, d))
        return self.norm(out_btd.astype(jnp.float32) + x_btd.astype(jnp.float32))


class BertLayer(nnx.Module):
    """One post-norm transformer layer: attention block, then the feed-forward block."""

    def __init__(
        self,
        config: BertConfig,
        *,
        dtype: Any,
        param_dtype: Any,
        lora_rank: int,
        lora_alpha: float,
        lora_targets: Sequence[str],
        rngs: nnx.Rngs,
    ):
        d, f = config.hidden_size, config.intermediate_size
        self.hidden_act = config.hidden_act
        self.attention = BertSelfAttention(
            config,
            dtype=dtype,
            param_dtype=param_dtype,
            lora_rank=lora_rank,
            lora_alpha=lora_alpha,
            lora_targets=lora_targets,
            rngs=rngs,
        )
        self.intermediate = Dense(
            d, f, axes=("embed", "mlp"), dtype=dtype, param_dtype=param_dtype, rngs=rngs
        )
        self.output = Dense(
            f, d, axes=("mlp", "embed"), dtype=dtype, param_dtype=param_dtype, rngs=rngs
        )
        self.norm = LayerNorm(d, eps=config.layer_norm_eps, dtype=dtype, param_dtype=param_dtype)

    def __call__(self, x_btd: jax.Array, mask_bt: jax.Array) -> jax.Array:
        x_btd = self.attention(x_btd, mask_bt)
        act = _ACTIVATIONS[self.hidden_act]
        y_btd = self.output(act(self.intermediate(x_btd)))
        return self.norm(y_btd.astype(jnp.float32) + x_btd.astype(jnp.float32))


def _call_layer(layer: BertLayer, x_btd: jax.Array, mask_bt: jax.Array) -> jax.Array:
    return layer(x_btd, mask_bt)


class BertEncoder(nnx.Module):
    """A BERT encoder returning the last hidden states ``[B, T, D]``.

    Args:
        config: the architecture.
        dtype: compute dtype (parameters stay ``param_dtype``).
        param_dtype: dtype of the parameters.
        remat: rematerialise every layer in the backward pass (saves memory on long texts).
        lora_rank: rank of the LoRA adapters; 0 means no adapters.
        lora_alpha: LoRA scale numerator; the update is ``(lora_alpha / lora_rank) * x @ A @ B``.
        lora_targets: which attention projections get adapters, a subset of
            ``("query", "key", "value", "output")``.
        rngs: random streams for the initial parameters (``params``).

    >>> cfg = BertConfig(vocab_size=32, hidden_size=8, num_layers=1, num_heads=2,
    ...                  intermediate_size=16)
    >>> model = BertEncoder(cfg, rngs=nnx.Rngs(0))
    >>> ids_bt = jnp.array([[2, 5, 7, 0]])
    >>> model(ids_bt, (ids_bt > 0).astype(jnp.int32)).shape
    (1, 4, 8)
    """

    def __init__(
        self,
        config: BertConfig,
        *,
        dtype: Any = jnp.float32,
        param_dtype: Any = jnp.float32,
        remat: bool = False,
        lora_rank: int = 0,
        lora_alpha: float = 8.0,
        lora_targets: Sequence[str] = ("query", "value"),
        rngs: nnx.Rngs,
    ):
        unknown = sorted(set(lora_targets) - set(LORA_TARGETS))
        if unknown:
            raise ValueError(f"unknown lora_targets {unknown}; expected a subset of {LORA_TARGETS}")
        if lora_rank < 0:
            raise ValueError(f"lora_rank must be >= 0, got {lora_rank}")
        self.config = config
        self.dtype = dtype
        self.remat = remat
        self.lora_rank = lora_rank
        self.lora_targets = tuple(lora_targets)
        self.embeddings = BertEmbeddings(config, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.layers = nnx.List(
            [
                BertLayer(
                    config,
                    dtype=dtype,
                    param_dtype=param_dtype,
                    lora_rank=lora_rank,
                    lora_alpha=lora_alpha,
                    lora_targets=self.lora_targets,
                    rngs=rngs,
                )
                for _ in range(config.num_layers)
            ]
        )

    def __call__(
        self,
        input_ids_bt: jax.Array,
        mask_bt: jax.Array,
        token_type_ids_bt: jax.Array | None = None,
    ) -> jax.Array:
        """Returns the last hidden states ``[B, T, D]`` in the compute dtype.

        Args:
            input_ids_bt: token ids ``[B, T]``.
            mask_bt: 1 for real tokens, 0 for padding ``[B, T]``.
            token_type_ids_bt: segment ids ``[B, T]``; ``None`` means all zeros.
        """
        if input_ids_bt.shape[1] > self.config.max_positions:
            raise ValueError(
                f"sequence length {input_ids_bt.shape[1]} exceeds "
                f"max_positions={self.config.max_positions}"
            )
        x_btd = self.embeddings(input_ids_bt, token_type_ids_bt)
        call = nnx.remat(_call_layer) if self.remat else _call_layer
        for layer in self.layers:
            x_btd = call(layer, x_btd, mask_bt)
        return x_btd


def mean_pool(hidden_btd: jax.Array, mask_bt: jax.Array) -> jax.Array:
    """Mean of the hidden states over the real (unmasked) tokens, in float32 ``[B, D]``.

    Rows without any real token give zeros.

    >>> hidden_btd = jnp.arange(6.0).reshape(1, 3, 2)
    >>> mean_pool(hidden_btd, jnp.array([[1, 1, 0]])).tolist()
    [[1.0, 2.0]]
    """
    w_bt = mask_bt.astype(jnp.float32)
    sum_bd = jnp.einsum("btd,bt->bd", hidden_btd.astype(jnp.float32), w_bt)
    return sum_bd / jnp.maximum(w_bt.sum(-1, keepdims=True), 1.0)


def cls_pool(hidden_btd: jax.Array, mask_bt: jax.Array | None = None) -> jax.Array:
    """The hidden state of the first ([CLS]) token, in float32 ``[B, D]``.

    ``mask_bt`` is accepted (and ignored) so both pooling functions share a signature.

    >>> cls_pool(jnp.arange(6.0).reshape(1, 3, 2)).tolist()
    [[0.0, 1.0]]
    """
    del mask_bt
    return hidden_btd[:, 0].astype(jnp.float32)


POOLING: dict[str, Callable[..., jax.Array]] = {"mean": mean_pool, "cls": cls_pool}
