"""Train steps that compute only the item vectors a batch needs.

A fine-tuned text tower computes an item's vector by running the text encoder over its text,
so a step that builds the whole item table (``model.item_table()``) costs one encoder pass
per catalogue item: its cost grows with the catalogue. With a sampled softmax the step needs
far fewer items: the batch's inputs and targets and the sampled negatives. This step draws the
negatives first (over the whole catalogue, with their logQ counts), gathers the distinct ids
it needs (at most ``1 + B*L + N + K``, a shape fixed per batch shape), computes their vectors
with ``model.item_rows`` and renumbers the batch into that compact table: the loss is the same
sampled softmax the whole-table step computes, at a cost independent of the catalogue.

``train.encode_items`` chooses: ``"batch"`` (this step), ``"all"`` (the whole table), or
``"auto"``: this step where the item tower encodes items at a cost (``model.encodes_items``)
and the loss draws its negatives (``draw`` and ``with_negatives``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from rectk import steps
from rectk.errors import RecipeError


def samples_negatives(loss) -> bool:
    """Whether ``loss`` draws negatives before scoring them (a sampled softmax)."""
    return hasattr(loss, "draw") and hasattr(loss, "with_negatives")


def use_batch_items(cfg, model, loss) -> bool:
    """Whether training computes only the batch's items (see the module), from
    ``train.encode_items``; a ``RecipeError`` where ``"batch"`` cannot work."""
    mode = cfg.train.encode_items
    if mode == "all":
        return False
    ok = samples_negatives(loss) and model.mask_token is None
    if mode == "batch" and not ok:
        raise RecipeError(
            "train.encode_items = 'batch' needs a loss that samples its negatives "
            "(loss.type = 'sampled_softmax') and a task without a MASK token; set "
            "train.encode_items = 'all' or 'auto'"
        )
    return ok and (mode == "batch" or model.encodes_items)


def batch_items(ids: jax.Array, vocab_size: int) -> jax.Array:
    """The distinct item ids of ``ids`` and 0, sorted, padded with ``vocab_size`` (an id past
    the catalogue) to a length fixed by ``ids``' shape: ``[U]``.

    >>> batch_items(jnp.array([5, 3, 5, 0]), 9).tolist()
    [0, 3, 5, 9, 9]
    """
    flat = jnp.concatenate([jnp.zeros(1, ids.dtype), ids.reshape(-1)])
    size = min(flat.shape[0], vocab_size + 1)
    return jnp.unique(flat, size=size, fill_value=vocab_size)


def train_step(bound: steps.Bound, vocab_size: int, state: dict, batch: dict, root_key):
    """``steps.train_step``'s update, computing only the items the batch needs."""
    key = jax.random.fold_in(root_key, state["step"])
    dropout_key, loss_key = jax.random.split(key)
    target_bl = batch["target"]
    if bound.target_positions:
        target_bl = target_bl[:, -bound.target_positions :]
    target_n = target_bl.reshape(-1)
    weight_n = (target_n > 0).astype(jnp.float32)
    negatives_k, log_count_k = bound.loss.draw(loss_key, vocab_size, target_n, weight_n)
    ids_u = batch_items(
        jnp.concatenate([batch["input"].reshape(-1), target_n, negatives_k]), vocab_size
    )

    def local(x):
        return jnp.searchsorted(ids_u, x).astype(jnp.int32)

    def loss_fn(params):
        model = bound.model(steps.cast_floats(params, bound.compute_dtype), state["rest"])
        rows_ud = model.item_rows(jnp.minimum(ids_u, vocab_size - 1))
        h_bld = model.encode(
            local(batch["input"]),
            rows_ud,
            users_b=batch["user"],
            rngs=nnx.Rngs(dropout=dropout_key),
        )
        if bound.target_positions:
            h_bld = h_bld[:, -bound.target_positions :]
        head, rows_uk = model.scoring(rows_ud, ids=jnp.minimum(ids_u, vocab_size - 1))
        return bound.loss.with_negatives(
            head=head,
            user_nd=h_bld.reshape(-1, h_bld.shape[-1]),
            table_vd=rows_uk,
            target_n=local(target_n),
            weight_n=weight_n,
            negatives=local(negatives_k),
            log_count=log_count_k,
        ).astype(jnp.float32)

    return steps.update(bound.tx, state, batch, loss_fn)
