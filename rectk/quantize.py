"""Int8 item rows with one float scale per row, and full ranking with them.

``quantize_rows`` stores a ``[V, K]`` float table as int8 values and a float32 scale per row
(symmetric: ``scale = max|row| / 127``, so every value lies within ``scale / 2`` of its
original; an all-zero row gets scale 1 and stays exact). ``quantize_weights`` replaces a
model's scoring rows (``model.scoring(model.item_table())``: the item vectors, with the item
bias as a last column where the model has one) by such a table and drops the item tower's own
weights, so no float ``V x K`` table stays resident.

``quantized_ranks`` and ``quantized_top_k`` mirror ``steps.model_ranks`` and
``steps.model_top_k``. The learner's history is looked up by gathering its int8 rows and
dequantising only those (the encoders only ever see gathered rows); the scan over item
chunks either dequantises each chunk and calls the model's head (any head; ``dot=False``),
or, for the dot head without an item bias, quantises the learner vector too and scores
``int8 x int8 -> int32`` rescaled by both scales (the default, ``INT8_DOT``).
``quantize_run`` turns a loaded run into one that recommends with int8 rows.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import TYPE_CHECKING, NamedTuple

import jax
import jax.numpy as jnp

from rectk import ranking, steps
from rectk.compiler import jit_inference

if TYPE_CHECKING:
    from rectk.predict import Loaded

# The default scorer for the dot head: int8 x int8 -> int32 products (True) or dequantised
# chunks (False). ``benchmarks/quantize.py`` times both (docs/quantization.md).
INT8_DOT = True

# The weights under this top-level module are what the item table is computed from; once the
# scoring rows are quantised they are never read, so ``quantize_weights`` drops them.
_TOWER = "item_tower"


class QuantizedTable(NamedTuple):
    """A ``[V, K]`` table as int8 ``values_vk`` and float32 ``scale_v``: row ``v`` is
    ``values_vk[v] * scale_v[v]``."""

    values_vk: jax.Array
    scale_v: jax.Array

    @property
    def nbytes(self) -> int:
        """Bytes held: one per value, four per row's scale."""
        return int(self.values_vk.size) + 4 * int(self.scale_v.size)


def quantize_rows(table_vk: jax.Array) -> QuantizedTable:
    """Symmetric per-row int8 quantisation of a float ``[V, K]`` table.

    >>> q = quantize_rows(jnp.array([[0.5, -1.0], [0.0, 0.0]]))
    >>> q.values_vk.tolist(), q.scale_v.tolist()
    ([[64, -127], [0, 0]], [0.007874015718698502, 1.0])
    """
    table_vk = jnp.asarray(table_vk)
    if table_vk.ndim != 2:
        raise ValueError(f"quantize_rows needs a 2-D [V, K] table, got shape {table_vk.shape}")
    if not jnp.issubdtype(table_vk.dtype, jnp.floating):
        raise ValueError(f"quantize_rows needs a floating-point table, got {table_vk.dtype}")
    x_vk = table_vk.astype(jnp.float32)
    top_v = jnp.max(jnp.abs(x_vk), axis=1)
    scale_v = jnp.where(top_v > 0, top_v / 127.0, 1.0)
    values_vk = jnp.clip(jnp.round(x_vk / scale_v[:, None]), -127, 127).astype(jnp.int8)
    return QuantizedTable(values_vk, scale_v)


def dequantize(q: QuantizedTable, ids=None) -> jax.Array:
    """The float32 rows ``ids`` (any shape of item ids; None: the whole table), ``[..., K]``."""
    if ids is None:
        return q.values_vk.astype(jnp.float32) * q.scale_v[:, None]
    values = jnp.take(q.values_vk, ids, axis=0).astype(jnp.float32)
    return values * jnp.take(q.scale_v, ids)[..., None]


def quantize_weights(bound: steps.Bound, weights) -> dict:
    """``{"params", "rest", "items"}``: ``weights`` (``{"params", "rest"}``) with the item
    tower's arrays emptied and the model's scoring rows as a ``QuantizedTable`` in ``items``."""

    @jax.jit
    def rows(w):
        model = bound.model(w["params"], w["rest"])
        return quantize_rows(model.scoring(model.item_table())[1])

    items = rows(weights)

    def drop_tower(path, x):
        key = path[0] if path else None
        is_tower = isinstance(key, jax.tree_util.DictKey) and key.key == _TOWER
        return jnp.zeros((0,), x.dtype) if is_tower else x

    emptied = {k: jax.tree_util.tree_map_with_path(drop_tower, weights[k]) for k in weights}
    return {**emptied, "items": items}


def _is_plain_dot(model) -> bool:
    from rectk_plugins.heads import DotHead

    return isinstance(model.head, DotHead) and model.item_bias is None


def _user_states(model, items: QuantizedTable, history_bl, users_b) -> jax.Array:
    """``model.user_states`` with the history's rows gathered from the int8 table."""
    v = items.values_vk.shape[0]
    if model.mask_token is not None:  # shift left, append MASK (input id V), as the model does
        history_bl = jnp.concatenate([history_bl[:, 1:], jnp.full_like(history_bl[:, :1], v)], 1)
    mask_bl = history_bl > 0
    emb_bld = dequantize(items, jnp.minimum(history_bl, v - 1))[..., : model.dim]
    if model.mask_token is not None:
        mask_1d = model.mask_token[...].astype(emb_bld.dtype)
        emb_bld = jnp.where((history_bl == v)[..., None], mask_1d, emb_bld)
    emb_bld = emb_bld * mask_bl[..., None]
    return model.encoder(emb_bld, mask_bl, users_b=users_b, rngs=None, last_only=True)[:, -1, :]


def _quantize_users(user_bd: jax.Array) -> tuple[jax.Array, jax.Array]:
    q = quantize_rows(user_bd)
    return q.values_vk, q.scale_v


def _scorer(bound: steps.Bound, weights_q, batch, dot: bool | None):
    """``(user_repr, score_chunk, score_targets)`` over the int8 rows (as ``steps``' scorer)."""
    model = bound.model(weights_q["params"], weights_q["rest"])
    user_bd = _user_states(model, weights_q["items"], batch["input"], batch["user"])
    return chunk_scorers(model, weights_q["items"], user_bd, dot)


def chunk_scorers(model, items: QuantizedTable, user_bd: jax.Array, dot: bool | None):
    """``(user_repr, score_chunk, score_targets)`` of learner states ``user_bd`` against the
    int8 rows ``items``, for ``ranking.target_ranks`` and ``ranking.top_k``."""
    v = items.values_vk.shape[0]
    use_dot = _is_plain_dot(model) and (INT8_DOT if dot is None else dot)
    if not use_dot:
        head, _ = model.scoring(jnp.zeros((v, model.dim), jnp.float32))  # only the head is used

        def score_chunk(u_bd, ids_c):
            return head(u_bd, dequantize(items, jnp.minimum(ids_c, v - 1)))

        def score_targets(u_bd, target_b):
            return jnp.diagonal(head(u_bd, dequantize(items, target_b)))

        return user_bd, score_chunk, score_targets

    def dot_chunk(user, ids_c):
        u_bk, su_b = user
        ids_c = jnp.minimum(ids_c, v - 1)
        acc_bc = jax.lax.dot_general(
            u_bk,
            jnp.take(items.values_vk, ids_c, axis=0),
            (((1,), (1,)), ((), ())),
            preferred_element_type=jnp.int32,
        )
        return acc_bc.astype(jnp.float32) * su_b[:, None] * jnp.take(items.scale_v, ids_c)[None]

    def dot_targets(user, target_b):
        u_bk, su_b = user
        rows_bk = jnp.take(items.values_vk, target_b, axis=0).astype(jnp.int32)
        acc_b = jnp.sum(u_bk.astype(jnp.int32) * rows_bk, axis=1)  # exact, as the chunks' sums
        return acc_b.astype(jnp.float32) * su_b * jnp.take(items.scale_v, target_b)

    return _quantize_users(user_bd), dot_chunk, dot_targets


def quantized_ranks(
    bound: steps.Bound,
    num_items: int,
    chunk: int,
    weights_q,
    batch,
    allowed_v=None,
    *,
    dot: bool | None = None,
):
    """``steps.model_ranks`` with the int8 rows of ``weights_q`` (``quantize_weights``).

    ``dot``: score the dot head with int8 x int8 products (None: ``INT8_DOT``); other heads
    always score dequantised chunks.
    """
    user, score_chunk, score_targets = _scorer(bound, weights_q, batch, dot)
    score_chunk = steps.restrict(score_chunk, allowed_v)
    t_b = score_targets(user, batch["target"])
    return ranking.target_ranks(
        user, score_chunk, batch["target"], t_b, batch["seen"], num_items=num_items, chunk=chunk
    )


def quantized_top_k(
    bound: steps.Bound,
    num_items: int,
    chunk: int,
    k: int,
    weights_q,
    batch,
    *,
    dot: bool | None = None,
):
    """``steps.model_top_k`` with the int8 rows of ``weights_q``: (scores [B, K], ids [B, K])."""
    user, score_chunk, _ = _scorer(bound, weights_q, batch, dot)
    return ranking.top_k(user, score_chunk, batch["seen"], k=k, num_items=num_items, chunk=chunk)


def quantize_run(run: Loaded, *, dot: bool | None = None) -> Loaded:
    """``run`` recommending from int8 rows: its ``weights`` are ``quantize_weights``' and its
    ``top_k`` is ``quantized_top_k``, so ``rectk.predict.recommend`` serves from it.

    The float item table is gone (``item_table_vd`` is None), so reranker chains that need
    item embeddings and explanations need the float run.
    """
    from rectk.evaluate import item_chunk

    chunk = item_chunk(run.cfg.eval.item_chunk, run.num_items)
    top_k = jit_inference(
        functools.partial(quantized_top_k, run.bound, run.num_items, chunk, dot=dot),
        library_dots=run.bound.library_dots,
        static_argnums=0,
    )
    weights_q = quantize_weights(run.bound, run.weights)
    return dataclasses.replace(run, weights=weights_q, top_k=top_k, item_table_vd=None)
