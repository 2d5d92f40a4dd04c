"""Why an item was recommended: leave-one-out occlusion over the learner's history.

For a learner with history ``h_1..h_L`` (the last ``model.max_len`` items: what the model sees)
and a recommended item ``r``, the weight of ``h_j`` is how much ``r``'s score falls when ``h_j``
alone is taken out of the history::

    weight(h_j) = score(r | h) - score(r | h without h_j)

This is occlusion (Zeiler & Fergus, ECCV 2014) applied to the items of a sequence, the deletion
view of Samek et al. (IEEE TNNLS 2017). All ``L`` histories with one item deleted (left-padded,
as the model expects) are scored, for all ``K`` recommended items, in one jit-compiled call on
the model's own scoring path (``steps._model_scorer``): weights are score differences in the
model's units, exact for any encoder, head or item bias.

``gradient_x_input`` is a cheaper attribution (one backward pass; Shrikumar et al. 2016,
Ancona et al. ICLR 2018) kept for ``benchmarks/explain_faithfulness.py``, whose deletion test
it must pass without occlusion's advantage of being measured by deletion itself.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from rectk import steps
from rectk.compiler import jit_inference
from rectk.data.pipeline import left_pad
from rectk.errors import DataError
from rectk.predict import Loaded
from rectk.recipe import plugin_name

# Item towers whose vectors come from the items' text (the "similar by text" line).
TEXT_TOWERS = ("text", "text_id")


def deletions(hist_bl: jax.Array) -> jax.Array:
    """Every history with one position deleted, left-padded again: ``[B, L, L]``, row ``p``
    without position ``p`` (a padding position's row is the history itself).

    >>> deletions(jnp.array([[0, 7, 8, 9]]))[0].tolist()
    [[0, 7, 8, 9], [0, 0, 8, 9], [0, 0, 7, 9], [0, 0, 7, 8]]
    """
    shifted_bl = jnp.pad(hist_bl[:, :-1], ((0, 0), (1, 0)))
    pos = jnp.arange(hist_bl.shape[1])
    after_pl = pos[None, :] > pos[:, None]  # position i > p keeps its item; i <= p shifts right
    return jnp.where(after_pl[None], hist_bl[:, None, :], shifted_bl[:, None, :])


def score_items(bound: steps.Bound, weights, input_nl, users_n, items_nk) -> jax.Array:
    """The model's scores of each row's own items, ``[N, K]`` (as ranking scores them)."""
    user_nd, score_chunk, _ = steps._model_scorer(
        bound, weights, {"input": input_nl, "user": users_n}
    )
    return jax.vmap(lambda u_d, ids_k: score_chunk(u_d[None], ids_k)[0])(user_nd, items_nk)


def occlusion(bound: steps.Bound, weights, hist_bl, items_bk, users_b):
    """``(score_bk, weight_blk)``: each item's score given the whole history, and its drop
    when history position ``l`` alone is deleted (0 at padding)."""
    b, width = hist_bl.shape
    k = items_bk.shape[1]
    inputs = jnp.concatenate([hist_bl[:, None, :], deletions(hist_bl)], axis=1)  # [B, 1+L, L]
    scores = score_items(
        bound,
        weights,
        inputs.reshape(b * (width + 1), width),
        jnp.repeat(users_b, width + 1),
        jnp.repeat(items_bk, width + 1, axis=0),
    ).reshape(b, width + 1, k)
    base_bk = scores[:, 0]
    weight_blk = (base_bk[:, None, :] - scores[:, 1:]) * (hist_bl > 0)[..., None]
    return base_bk, weight_blk


def gradient_x_input(bound: steps.Bound, weights, hist_bl, item_b, users_b) -> jax.Array:
    """Gradient x input over the history embeddings for one item per learner, ``[B, L]``:
    ``sum_d e_ld * d score / d e_ld``, taken as the derivative of the score by a scale on each
    history item's embedding row (an item repeated in a history shares its rows' sum)."""
    model = bound.model(weights["params"], weights["rest"])
    table_vd = model.item_table()
    head, rows_vk = model.scoring(table_vd)

    def score(scale_v, hist_l, item, user):
        user_1d = model.user_states(hist_l[None], table_vd * scale_v[:, None], user[None])
        return head(user_1d, rows_vk[item][None])[0, 0]

    ones_v = jnp.ones(table_vd.shape[0], table_vd.dtype)
    grad_bv = jax.vmap(jax.grad(score), in_axes=(None, 0, 0, 0))(ones_v, hist_bl, item_b, users_b)
    return jnp.take_along_axis(grad_bv, hist_bl, axis=1) * (hist_bl > 0)


class Explainer:
    """A run's attributions, compiled once per history window and number of items.

    >>> ex = Explainer(run)  # doctest: +SKIP
    >>> score_bk, weight_blk = ex.occlusion(ex.windows([items]), ids_bk)  # doctest: +SKIP
    """

    def __init__(self, run: Loaded):
        self.run = run
        self.bound = run.bound
        # The MASK appended after the history of masked-item models pushes one item out.
        self.window = run.cfg.model.max_len - (1 if run.cfg.task.mask_token else 0)
        jit = functools.partial(jit_inference, library_dots=self.bound.library_dots)
        self._occlusion = jit(functools.partial(occlusion, self.bound))
        self._gxi = jit(functools.partial(gradient_x_input, self.bound))
        self.text_tower = plugin_name(run.cfg.model.item_tower) in TEXT_TOWERS

    def windows(self, histories: list[np.ndarray]) -> np.ndarray:
        """Each history's last ``window`` items, left-padded to ``model.max_len``: ``[B, L]``."""
        max_len = self.run.cfg.model.max_len
        return np.stack([left_pad(h[-self.window :], max_len) for h in histories])

    def occlusion(self, hist_bl, items_bk, users_b=None) -> tuple[np.ndarray, np.ndarray]:
        """``(score_bk, weight_blk)`` of ``occlusion``, as NumPy arrays."""
        users_b = _users(users_b, hist_bl)
        base, w = self._occlusion(self.run.weights, jnp.asarray(hist_bl), items_bk, users_b)
        return np.asarray(base), np.asarray(w)

    def gradient_x_input(self, hist_bl, item_b, users_b=None) -> np.ndarray:
        """``gradient_x_input``'s ``[B, L]``, as a NumPy array."""
        users_b = _users(users_b, hist_bl)
        return np.asarray(self._gxi(self.run.weights, jnp.asarray(hist_bl), item_b, users_b))

    def annotate(
        self, items: np.ndarray, recs: list[dict], *, top: int = 3, share: float = 0.5
    ) -> list[dict]:
        """``recs`` (``predict.recommend``'s dicts) with, for each, ``because`` (the ``top``
        history items by weight whose deletion lowers it), ``weights`` (every history item
        considered, oldest first), ``sentence`` (naming those of ``because`` weighing at least
        ``share`` of the first) and, for text-tower models, ``similar``."""
        run = self.run
        if len(items) == 0:
            raise DataError("nothing to explain: the history is empty")
        if not recs:
            return []
        ids_k = np.asarray([run.item_index[r["item"]] for r in recs], np.int32)
        hist_bl = self.windows([items])
        _, weight_blk = self.occlusion(hist_bl, ids_k[None])
        n = min(len(items), self.window)
        considered = items[-n:]
        weight_nk = weight_blk[0, -n:]
        out = []
        for j, rec in enumerate(recs):
            w_n = weight_nk[:, j]
            order = [int(i) for i in np.argsort(-w_n, kind="stable")[:top] if w_n[i] > 0]
            because = [{**self._name(int(considered[i])), "weight": float(w_n[i])} for i in order]
            extra: dict[str, Any] = {
                "because": because,
                "sentence": sentence(
                    [
                        b["title"] or b["item"]
                        for b in because
                        if b["weight"] >= share * because[0]["weight"]
                    ]
                ),
                "weights": [
                    {"item": run.vocab["item_ids"][int(h) - 1], "weight": float(w)}
                    for h, w in zip(considered, w_n, strict=True)
                ],
            }
            if self.text_tower:
                extra["similar"] = self._similar(int(ids_k[j]), items)
            out.append({**rec, **extra})
        return out

    def _name(self, item: int) -> dict:
        run = self.run
        title = run.titles[item - 1] if run.titles else ""
        return {"item": run.vocab["item_ids"][item - 1], "title": title}

    def _similar(self, item: int, history: np.ndarray) -> dict:
        """The taken item nearest to ``item`` by cosine over the model's item vectors."""
        table_vd = np.asarray(self.run.item_table_vd, np.float32)
        unit_vd = table_vd / np.maximum(np.linalg.norm(table_vd, axis=1, keepdims=True), 1e-12)
        cos_h = unit_vd[np.asarray(history)] @ unit_vd[item]
        best = int(np.argmax(cos_h))
        return {**self._name(int(history[best])), "cosine": float(cos_h[best])}


def sentence(names: list[str]) -> str:
    """What a learner reads about one recommendation.

    >>> sentence(["Linear Algebra", "Probability"])
    'Because you took Linear Algebra and Probability.'
    >>> sentence([])
    'From your history as a whole: taking out any one item you took does not lower it.'
    """
    if not names:
        return "From your history as a whole: taking out any one item you took does not lower it."
    listed = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
    return f"Because you took {listed}."


def _users(users_b, hist_bl) -> jax.Array:
    """Learner ids of the batch: ``recommend`` scores with learner 0, and so does this."""
    if users_b is None:
        return jnp.zeros(len(hist_bl), jnp.int32)
    return jnp.asarray(users_b, jnp.int32)
