"""The recommender: an item tower, a sequence encoder and a scoring head, assembled from
their plugin configs. It contains no particular model; the plugins do."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from rectk.config import ModelConfig
from rectk.contracts import BuildContext, EncoderTraits, FreezesParams
from rectk.data.types import Catalogue


class Recommender(nnx.Module):
    """``history [B, L] -> user states [B, L, D]``; ``item_table() -> [V, D]``; scores via head.

    With ``item_bias`` (``model.item_bias``), every score gets a learned offset per item, as
    BERT4Rec's and RecBole's output layers have: see ``scoring``.

    Each part is built by its plugin config's ``build(ctx)`` from one ``BuildContext``; the
    contracts are the protocols of ``rectk.contracts`` (see docs/writing-a-plugin.md):
      item tower: ``tower() -> table_vd`` (row 0 is padding).
      encoder: ``encoder(emb_bld, mask_bl, *, users_b, rngs, last_only) -> hidden_bld``,
        causal where training uses every position; ``rngs`` is None in evaluation. What it
        declares about itself (``EncoderTraits``) is kept as ``encoder_traits``.
      head: ``head(user_nd, items_vd) -> scores_nv``.

    With ``mask_token`` (tasks trained by masked-item prediction, like BERT4Rec's Cloze task),
    input id ``vocab_size`` is a MASK whose embedding is learned here (it is never an item to
    score), and the user state is read at a MASK appended after the history.
    """

    def __init__(
        self,
        cfg: ModelConfig,
        *,
        vocab_size: int,
        num_users: int,
        catalogue: Catalogue | None,
        rngs: nnx.Rngs,
        mask_token: bool = False,
    ):
        self.dim = cfg.dim
        self.max_len = cfg.max_len
        ctx = BuildContext(
            dim=cfg.dim,
            max_len=cfg.max_len,
            vocab_size=vocab_size,
            num_users=num_users,
            catalogue=catalogue,
            rngs=rngs,
        )
        self.item_tower = cfg.item_tower.build(ctx)
        self.encoder = cfg.encoder.build(ctx)
        self.encoder_traits: EncoderTraits = cfg.encoder.traits
        self.head = cfg.head.build(ctx)
        init = nnx.with_partitioning(nnx.initializers.normal(0.02), (None, "embed"))
        self.mask_token = nnx.Param(init(rngs.params(), (1, cfg.dim))) if mask_token else None
        zeros = nnx.with_partitioning(nnx.initializers.zeros_init(), ("vocab",))
        self.item_bias = nnx.Param(zeros(rngs.params(), (vocab_size,))) if cfg.item_bias else None

    def item_table(self) -> jax.Array:
        return self.item_tower()

    @property
    def encodes_items(self) -> bool:
        """Whether the item tower computes each item's vector at a cost (a text encoder
        fine-tuned), so that a step should compute only the items it needs (``item_rows``)."""
        return bool(getattr(self.item_tower, "encodes_items", False))

    def item_rows(self, ids_u: jax.Array) -> jax.Array:
        """The vectors of items ``ids_u``, ``[U, D]``: the tower's ``rows(ids)`` where it has
        one (only those items are computed), else rows of the whole table."""
        rows = getattr(self.item_tower, "rows", None)
        if rows is not None:
            return rows(ids_u)
        return jnp.take(self.item_tower(), ids_u, axis=0)

    def scoring(self, table_vd: jax.Array, ids: jax.Array | None = None):
        """``(head, rows_vk)``: what losses and rankers score users against.

        Without an item bias, the head and ``table_vd`` themselves. With one, each row gains
        its item's bias as a last column, and the returned head scores ``head(user, row[:-1]) +
        row[-1]``. The losses and rankers only gather rows and call the head, so every one of
        them adds the bias of exactly the items it scores (targets, negatives, chunks).
        ``ids``: ``table_vd`` holds the rows of these items only (``item_rows``).
        """
        if self.item_bias is None:
            return self.head, table_vd
        head = self.head
        bias_v = self.item_bias[...] if ids is None else jnp.take(self.item_bias[...], ids)
        bias_v1 = bias_v.astype(table_vd.dtype)[:, None]

        def biased(user_nd: jax.Array, rows_vk: jax.Array) -> jax.Array:
            return head(user_nd, rows_vk[:, :-1]) + rows_vk[None, :, -1]

        return biased, jnp.concatenate([table_vd, bias_v1], axis=1)

    @property
    def variable_length(self) -> bool:
        """Whether the encoder's states at real positions are unchanged on a window
        left-trimmed of padding (its config declares ``traits = EncoderTraits(
        variable_length=True)``; evaluation then feeds each batch a window only as wide as its
        longest history, and ``train.group_by_length`` may train on such windows)."""
        return self.encoder_traits.variable_length

    @property
    def library_dots(self) -> bool:
        """Whether ranking compiles with XLA:CPU's library (YNNPACK) fusions, its default; an
        encoder that runs slower with them declares ``EncoderTraits(library_dots=False)``
        (see ``rectk.compiler``)."""
        return self.encoder_traits.library_dots

    def encode(
        self,
        history_bl: jax.Array,
        table_vd: jax.Array,
        *,
        users_b: jax.Array | None = None,
        rngs: nnx.Rngs | None = None,
        last_only: bool = False,
    ) -> jax.Array:
        """Hidden states at every position, ``[B, L, D]``; ``last_only``: at the last position,
        ``[B, 1, D]`` (cheaper where the encoder has a path for it, e.g. the transformers)."""
        if self.mask_token is not None:  # input id V (one past the table) is the MASK
            table_vd = jnp.concatenate([table_vd, self.mask_token[...].astype(table_vd.dtype)])
        mask_bl = history_bl > 0
        emb_bld = jnp.take(table_vd, history_bl, axis=0) * mask_bl[..., None]
        return self.encoder(emb_bld, mask_bl, users_b=users_b, rngs=rngs, last_only=last_only)

    def user_states(
        self, history_bl: jax.Array, table_vd: jax.Array, users_b: jax.Array | None = None
    ) -> jax.Array:
        """The state after the most recent item (histories are left-padded), ``[B, D]``."""
        if self.mask_token is not None:  # shift left, append MASK: the state that predicts it
            mask_b1 = jnp.full_like(history_bl[:, :1], table_vd.shape[0])
            history_bl = jnp.concatenate([history_bl[:, 1:], mask_b1], axis=1)
        return self.encode(history_bl, table_vd, users_b=users_b, last_only=True)[:, -1, :]


def trainable_filter(model: Recommender) -> Callable[[Any, Any], bool]:
    """An nnx filter selecting the parameters the optimiser updates.

    Every ``nnx.Param`` trains unless a sub-module that subclasses
    ``rectk.contracts.FreezesParams`` says otherwise through ``frozen(path, variable) ->
    bool`` (paths relative to that sub-module): a pretrained text encoder fine-tuned with LoRA
    freezes its base weights this way. What is not trained is carried in the train state's
    ``rest`` (passed to the steps, never baked into them).
    """
    judges = [
        (tuple(path), module.frozen)
        for path, module in nnx.iter_modules(model)
        if isinstance(module, FreezesParams)
    ]

    def keep(path, variable) -> bool:
        if not isinstance(variable, nnx.Param):
            return False
        for prefix, frozen in judges:
            if tuple(path[: len(prefix)]) == prefix and frozen(
                tuple(path[len(prefix) :]), variable
            ):
                return False
        return True

    return keep


def build_model(
    cfg: ModelConfig,
    *,
    vocab_size: int,
    num_users: int,
    catalogue: Catalogue | None,
    rngs: nnx.Rngs,
    mask_token: bool = False,
) -> Recommender:
    """Builds the model. Modules annotate parameters with *logical* axis names, which the
    recipe's mesh rules map to mesh axes later, so Flax's eager sharding stays off here."""
    with nnx.use_eager_sharding(False):
        return Recommender(
            cfg,
            vocab_size=vocab_size,
            num_users=num_users,
            catalogue=catalogue,
            rngs=rngs,
            mask_token=mask_token,
        )


def run_model(cfg, *, vocab_size: int, num_users: int, catalogue: Catalogue | None) -> Recommender:
    """The model of a run config (``RunConfig``: its ``model`` table, ``seed`` and task's
    ``mask_token``), as training, prediction and explanation all build it; wrap it in
    ``nnx.eval_shape`` for the abstract model."""
    return build_model(
        cfg.model,
        vocab_size=vocab_size,
        num_users=num_users,
        catalogue=catalogue,
        rngs=nnx.Rngs(params=jax.random.key(cfg.seed)),
        mask_token=cfg.task.mask_token,
    )
