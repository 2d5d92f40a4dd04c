"""Conformance checks: does a plugin keep its kind's contract (``rectk.contracts``)?

Call them on your own plugin in your tests, e.g. ``check_encoder(DecayConfig())``; rectk's
tests run them on every registered plugin (``check_registered``). Each builds the plugin at
tiny shapes (B=2, L=6, D=8, V=32; a reranker gets 3 learners' lists of 8 candidates) and
raises ``AssertionError`` with a message saying what broke; ``check_registered`` raises
``unittest.SkipTest`` (a skip under pytest and unittest) for a plugin that needs data or
files absent here.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import unittest
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from rectk.contracts import (
    RERANK_NEEDS,
    BaselinePlugin,
    BuildContext,
    DatasetPlugin,
    EncoderPlugin,
    FinalLists,
    HeadPlugin,
    ItemTowerPlugin,
    KnowledgeTracerPlugin,
    KTBuildContext,
    ListMetric,
    LossPlugin,
    Metric,
    Plan,
    PlannerPlugin,
    RerankContext,
    RerankerPlugin,
    TaskPlugin,
)
from rectk.data.types import Catalogue, Dataset
from rectk.errors import DataError, RectkError

B, L, D, V = 2, 6, 8, 32
USERS = 5

# Fields that, where a plugin config has them, are set this small by ``tiny_config``.
TINY_FIELDS: dict[str, Any] = {
    "layers": 1,
    "heads": 2,
    "inner": 16,
    "num_layers": 1,
    "max_length": 16,
    "text_max_length": 16,
    "num_learners": 40,
    "window": 2,
    "protected_groups": (1,),
}


def tiny_catalogue(vocab_size: int = V) -> Catalogue:
    """A catalogue of ``vocab_size - 1`` items with short titles and descriptions."""
    return Catalogue(
        item_ids=tuple(f"c{i}" for i in range(1, vocab_size)),
        titles=tuple(f"Course {i}" for i in range(1, vocab_size)),
        descriptions=tuple(f"About topic {i % 5} and more" for i in range(1, vocab_size)),
    )


def tiny_context(*, seed: int = 0, catalogue: bool = True) -> BuildContext:
    """A ``BuildContext`` at the tiny shapes: D=8, L=6, V=32, 5 users."""
    return BuildContext(
        dim=D,
        max_len=L,
        vocab_size=V,
        num_users=USERS,
        catalogue=tiny_catalogue(V) if catalogue else None,
        rngs=nnx.Rngs(seed),
    )


def tiny_config(cls: type[Any], **fields: Any) -> Any:
    """``cls`` with the ``TINY_FIELDS`` it has (and ``fields``); fields without a default
    make it unbuildable here (``TypeError``)."""
    names = {f.name for f in dataclasses.fields(cls)} if dataclasses.is_dataclass(cls) else set()
    return cls(**{k: v for k, v in TINY_FIELDS.items() if k in names}, **fields)


def _expect(ok: Any, what: str) -> None:
    if not bool(ok):
        raise AssertionError(what)


def _close(a: Any, b: Any, what: str, *, rtol: float = 1e-5, atol: float = 1e-5) -> None:
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape or not np.allclose(a, b, rtol=rtol, atol=atol):
        diff = np.max(np.abs(a - b)) if a.shape == b.shape else f"shapes {a.shape} {b.shape}"
        raise AssertionError(f"{what} (largest difference {diff})")


def _finite(x: Any, what: str) -> None:
    _expect(np.isfinite(np.asarray(x)).all(), f"{what} has values that are not finite")


def _gradients_flow(grads: Any, what: str) -> None:
    norms = [float(jnp.abs(g).sum()) for g in jax.tree.leaves(grads)]
    _expect(all(np.isfinite(norms)), f"{what}: gradients are not finite")
    _expect(sum(norms) > 0, f"{what}: every gradient is zero")


def _split(module: Any) -> tuple[Any, Any, Any]:
    """``(graphdef, params, rest)``: the ``nnx.Param`` state and everything else."""
    graphdef, *states = nnx.split(module, nnx.Param, ...)
    params, rest = states
    return graphdef, params, rest


def _build(config: Any, ctx: BuildContext) -> Any:
    with nnx.use_eager_sharding(False):
        return config.build(ctx)


# ---------------------------------------------------------------------------------------------
# Model parts.
# ---------------------------------------------------------------------------------------------


def check_encoder(config: EncoderPlugin, ctx: BuildContext | None = None) -> None:
    """An encoder's module: states ``[B, L, D]``, finite, jit equals eager, gradients flow,
    ``last_only`` gives the last state ``[B, 1, D]``; a position's state ignores later items
    (unless ``traits.bidirectional``); a padding row (an empty history, as evaluation pads its
    last batch) has finite states and never changes another row's; with
    ``traits.variable_length``, a window left-trimmed of padding gives the same states at its
    real positions. Inputs follow the contract: embeddings are zero at padding."""
    ctx = ctx or tiny_context()
    enc = _build(config, ctx)
    length, dim, vocab = ctx.max_len, ctx.dim, ctx.vocab_size
    ids = np.arange(1, length + 1) % (vocab - 1) + 1
    hist = jnp.asarray(np.stack([np.where(np.arange(length) < 2, 0, ids), ids]), jnp.int32)
    mask = hist > 0
    real = np.asarray(mask)
    emb = jax.random.normal(jax.random.key(1), (B, length, dim)) * mask[..., None]
    users = jnp.array([1, 2])

    out = enc(emb, mask, users_b=users)
    want = (B, length, dim)
    _expect(out.shape == want, f"states shaped {out.shape}, expected (B, L, D) = {want}")
    _finite(out, "states")

    # The rest runs jitted (one compilation per function and shape, reused below): far
    # cheaper than compiling every operation of an eager call at each new shape.
    graphdef, params, rest = _split(enc)

    def states(p, e, m, u, last_only=False):  # rngs=None: evaluation
        return nnx.merge(graphdef, p, rest)(e, m, users_b=u, last_only=last_only)

    evaluate = jax.jit(states, static_argnames="last_only")
    _close(evaluate(params, emb, mask, users), out, "jit and eager states differ")

    last = evaluate(params, emb, mask, users, last_only=True)
    _expect(last.shape == (B, 1, dim), f"last_only states shaped {last.shape}, expected (B, 1, D)")
    _close(last, out[:, -1:], "last_only differs from the last position's state")

    def loss(p):
        module = nnx.merge(graphdef, p, rest)
        return (module(emb, mask, users_b=users, rngs=nnx.Rngs(dropout=3)) ** 2).mean()

    _gradients_flow(jax.jit(jax.grad(loss))(params), "encoder")

    if not config.traits.bidirectional:
        t = length // 2
        noise = jax.random.normal(jax.random.key(9), (B, length - t - 1, dim))
        later = emb.at[:, t + 1 :].set(noise * mask[:, t + 1 :, None])
        early = real[:, : t + 1]
        _close(
            np.asarray(evaluate(params, later, mask, users)[:, : t + 1])[early],
            np.asarray(out[:, : t + 1])[early],
            "not causal: changing later items changed earlier states (a bidirectional encoder "
            "declares traits = EncoderTraits(bidirectional=True))",
        )

    # The second row replaced by a padding row (no items, user 0).
    padded = evaluate(params, emb.at[1].set(0.0), mask.at[1].set(False), users.at[1].set(0))
    _finite(padded[1], "the states of a padding row")
    _close(np.asarray(padded[0])[real[0]], np.asarray(out[0])[real[0]], "a row changed another")

    if config.traits.variable_length and length >= 4:
        # Rows with 3 and 2 leading padding positions; the window trimmed by 2 keeps one
        # padding position in the first row and none in the second.
        keep = length - 2
        short_mask = jnp.arange(length)[None, :] >= jnp.array([[3], [2]])
        short_emb = emb * short_mask[..., None]
        full = evaluate(params, short_emb, short_mask, users)[:, -keep:]
        trimmed = evaluate(params, short_emb[:, -keep:], short_mask[:, -keep:], users)
        kept = np.asarray(short_mask[:, -keep:])
        _close(
            np.asarray(trimmed)[kept],
            np.asarray(full)[kept],
            "declares variable_length, but a window left-trimmed of padding changed the states",
        )


def check_item_tower(config: ItemTowerPlugin, ctx: BuildContext | None = None) -> None:
    """An item tower's module: a table ``[V, D]``, finite, jit equals eager, gradients flow."""
    ctx = ctx or tiny_context()
    tower = _build(config, ctx)
    table = tower()
    want = (ctx.vocab_size, ctx.dim)
    _expect(table.shape == want, f"item table shaped {table.shape}, expected (V, D) = {want}")
    _finite(table, "item table")
    graphdef, params, rest = _split(tower)
    jitted = jax.jit(lambda p: nnx.merge(graphdef, p, rest)())(params)
    _close(jitted, table, "jit and eager item tables differ", rtol=1e-4)
    grads = jax.jit(jax.grad(lambda p: (nnx.merge(graphdef, p, rest)() ** 2).sum()))(params)
    _gradients_flow(grads, "item tower")


def check_head(config: HeadPlugin, ctx: BuildContext | None = None) -> None:
    """A head's module: scores ``[N, V]``, finite, jit equals eager, the same scores on any
    subset of the items, gradients flow to the user states and the parameters."""
    ctx = ctx or tiny_context()
    head = _build(config, ctx)
    user = jax.random.normal(jax.random.key(0), (B, ctx.dim))
    items = jax.random.normal(jax.random.key(1), (ctx.vocab_size, ctx.dim))
    scores = head(user, items)
    want = (B, ctx.vocab_size)
    _expect(scores.shape == want, f"scores shaped {scores.shape}, expected (N, V) = {want}")
    _finite(scores, "scores")
    graphdef, params, rest = _split(head)
    jitted = jax.jit(lambda p, u, i: nnx.merge(graphdef, p, rest)(u, i))
    _close(jitted(params, user, items), scores, "jit and eager scores differ")
    _close(head(user, items[3:8]), scores[:, 3:8], "scores differ on a subset of the items")
    _gradients_flow(jax.grad(lambda u: head(u, items).sum())(user), "head (user states)")
    if jax.tree.leaves(params):
        grads = jax.grad(lambda p: nnx.merge(graphdef, p, rest)(user, items).sum())(params)
        _expect(
            all(np.isfinite(float(jnp.abs(g).sum())) for g in jax.tree.leaves(grads)),
            "head: parameter gradients are not finite",
        )


def check_loss(config: LossPlugin, ctx: BuildContext | None = None) -> None:
    """A loss, prepared with item counts as the trainer does: a finite scalar, jit equals
    eager, gradients reach the user states of real rows and the item table, and padding rows
    (weight 0) get none."""
    ctx = ctx or tiny_context()
    vocab, dim = ctx.vocab_size, ctx.dim
    loss = config.prepare(item_counts=np.arange(vocab))

    def dot(user_nd, items_vd):
        return jnp.einsum("nd,vd->nv", user_nd, items_vd)

    user = jax.random.normal(jax.random.key(0), (4, dim))
    table = jax.random.normal(jax.random.key(1), (vocab, dim))
    target = jnp.array([1, 5, vocab - 1, 0])
    weight = (target > 0).astype(jnp.float32)

    def f(u, t):
        return loss(
            head=dot, user_nd=u, table_vd=t, target_n=target, weight_n=weight, key=jax.random.key(2)
        )

    value = f(user, table)
    _expect(jnp.shape(value) == (), f"loss shaped {jnp.shape(value)}, expected a scalar")
    _finite(value, "loss")
    _close(jax.jit(f)(user, table), value, "jit and eager losses differ")
    g_user, g_table = jax.jit(jax.grad(f, argnums=(0, 1)))(user, table)
    _finite(g_user, "the gradient of the user states")
    _expect(float(jnp.abs(g_user[:3]).sum()) > 0, "no gradient reaches the user states")
    _expect(float(jnp.abs(g_user[3]).sum()) == 0, "a padding row (weight 0) got a gradient")
    _expect(float(jnp.abs(g_table).sum()) > 0, "no gradient reaches the item table")


# ---------------------------------------------------------------------------------------------
# Metrics, baselines, data sets, tasks.
# ---------------------------------------------------------------------------------------------


def check_metric(metric: Metric) -> None:
    """A metric: one finite value in [0, 1] per target, 0 for ranks >= k, never rising as the
    rank grows (what every ranking metric at a cut-off keeps)."""
    for k in (1, 5):
        ranks = np.arange(3 * k, dtype=np.float64)
        values = np.asarray(metric(ranks, k))
        _expect(values.shape == ranks.shape, f"@{k}: shaped {values.shape}, expected one per rank")
        _finite(values, f"metric@{k}")
        _expect(((values >= 0) & (values <= 1)).all(), f"@{k}: values outside [0, 1]: {values}")
        _expect((values[k:] == 0).all(), f"@{k}: ranks >= k must score 0, got {values[k:]}")
        _expect((np.diff(values) <= 1e-12).all(), f"@{k}: rises with the rank: {values}")


def check_list_metric(metric: ListMetric) -> None:
    """A list metric: a finite float or None on random final lists with every kind of side
    information, on the same lists without any, and on lists of empty slots; the same value
    for the same lists."""
    rng = np.random.default_rng(0)
    n, k, h = 6, 4, 5
    ids = np.stack([rng.permutation(np.arange(1, V))[:k] for _ in range(n)])
    ids[0, -1] = 0  # an empty slot
    topics = rng.dirichlet(np.ones(3), size=V).astype(np.float32)
    topics[0] = 0
    full = FinalLists(
        ids_nk=ids,
        target_n=rng.integers(1, V, n),
        history_nh=np.where(rng.random((n, h)) < 0.3, 0, rng.integers(1, V, (n, h))),
        num_items=V - 1,
        item_emb_vd=rng.normal(size=(V, D)).astype(np.float32),
        item_group_v=rng.integers(0, 4, V).astype(np.int32),
        item_topics_vt=topics,
        item_pop_v=rng.integers(0, 20, V).astype(np.float32),
        prereq_vp=rng.integers(0, V, (V, 2)).astype(np.int32),
    )
    bare = FinalLists(ids, full.target_n, full.history_nh, V - 1)
    empty = full._replace(ids_nk=np.zeros_like(ids))
    for name, lists in (("full", full), ("without side information", bare), ("empty", empty)):
        for cut in (1, k):
            value = metric(lists, cut)
            _expect(
                value is None or (isinstance(value, float) and math.isfinite(value)),
                f"@{cut} on {name} lists: expected a finite float or None, got {value!r}",
            )
    _expect(metric(full, k) == metric(full, k), "two calls on the same lists differ")


def check_baseline(config: BaselinePlugin) -> None:
    """A baseline: one finite float32 score per item id ``[V]``, the same for the same seed."""
    train = np.array([1, 1, 2, 3, 3, 3, V - 1])
    scores = config.item_scores(train_items=train, vocab_size=V, seed=0)
    _expect(np.shape(scores) == (V,), f"scores shaped {np.shape(scores)}, expected (V,)")
    _expect(np.asarray(scores).dtype == np.float32, f"scores of dtype {np.asarray(scores).dtype}")
    _finite(scores, "baseline scores")
    again = config.item_scores(train_items=train, vocab_size=V, seed=0)
    _close(again, scores, "two calls with the same seed differ", rtol=0, atol=0)


def check_dataset(config: DatasetPlugin) -> None:
    """A data set: ``load()`` returns a ``Dataset`` whose dense ids lie in range and whose
    catalogue, if any, has one entry per item."""
    data = config.load()
    _expect(isinstance(data, Dataset), f"load() returned {type(data).__name__}, not a Dataset")
    inter = data.interactions
    _expect(len(inter) > 0, "no interactions")
    _expect(len(inter.item) == len(inter.user) == len(inter.time), "columns of unequal length")
    _expect(inter.item.min() >= 1 and inter.item.max() <= inter.num_items, "item ids out of range")
    _expect(inter.user.min() >= 1 and inter.user.max() <= inter.num_users, "user ids out of range")
    if data.catalogue is not None:
        _expect(
            len(data.catalogue.item_ids) == inter.num_items,
            f"{len(data.catalogue.item_ids)} catalogue items for {inter.num_items} items",
        )


def check_task(config: TaskPlugin) -> None:
    """A task: ``mask_token`` is a bool; ``train_transform`` is None or a map keeping a
    window's keys, shapes and id range; ``check`` of a default run accepts it or raises a
    ``RectkError``."""
    import grain

    from rectk.config import RunConfig
    from rectk.recipe import from_dict, to_dict

    _expect(isinstance(config.mask_token, bool), "mask_token must be a bool")
    transform = config.train_transform(vocab_size=V)
    if transform is not None:
        window = {"user": 1, "input": np.array([0, 3, 4, 5, 6, 7]), "target": np.arange(4, 10)}
        if isinstance(transform, grain.transforms.RandomMap):
            out = transform.random_map(dict(window), np.random.default_rng(0))
        elif isinstance(transform, grain.transforms.Map):
            out = transform.map(dict(window))
        else:
            raise AssertionError(f"train_transform gave {transform!r}, not a grain map")
        _expect(set(out) == set(window), f"the window's keys became {sorted(out)}")
        for key in ("input", "target"):
            arr = np.asarray(out[key])
            _expect(arr.shape == (6,), f"{key} shaped {arr.shape}, expected (6,)")
            _expect(np.issubdtype(arr.dtype, np.integer), f"{key} of dtype {arr.dtype}")
            _expect(((arr >= 0) & (arr <= V)).all(), f"{key} ids outside [0, V]: {arr}")
    name = getattr(type(config), "plugin_name", None)
    if name is None:
        return
    _expect(isinstance(config.needs, frozenset), "needs must be a frozenset of strings")
    _expect(isinstance(config.default_monitor, str), "default_monitor must be a string")
    _expect(isinstance(config.recommends, bool), "recommends must be a bool")
    task = {"type": name, **to_dict(config)}
    if config.needs:  # the default data set provides nothing a task needs: a placeholder
        wanted = ", ".join(sorted(config.needs))
        try:
            run = from_dict(RunConfig, {"task": task, "data": {"type": "pykt", "path": "-"}})
        except RectkError as err:
            raise AssertionError(f"a run of a task needing {wanted} was refused: {err}") from None
    else:
        run = from_dict(RunConfig, {"task": task})
    _expect(
        config.default_monitor in config.validation_metrics(run),
        f"default_monitor {config.default_monitor!r} is not among validation_metrics",
    )
    with contextlib.suppress(RectkError):  # refusing a run is what check is for
        config.check(run)


# ---------------------------------------------------------------------------------------------
# Rerankers.
# ---------------------------------------------------------------------------------------------

RERANK_C, RERANK_K = 8, 5


def tiny_rerank_context(*, batch: int = 3, seed: int = 0) -> RerankContext:
    """A ``RerankContext`` with every field, at tiny shapes: V=32 items, D=8, 4 topics, 3
    provider groups, up to 2 prerequisites per item, histories of L=6 (some padding), success
    probabilities uniform in [0, 1)."""
    rng = np.random.default_rng(seed)
    topics = rng.dirichlet(np.ones(4), V).astype(np.float32)
    topics[0] = 0.0
    prereq = rng.integers(1, V, (V, 2)) * (rng.random((V, 2)) < 0.3)
    prereq[0] = 0
    history = rng.integers(1, V, (batch, L)) * (np.arange(L) >= rng.integers(0, L, (batch, 1)))
    return RerankContext(
        history_bh=jnp.asarray(history, jnp.int32),
        item_emb_vd=jnp.asarray(rng.normal(size=(V, D)), jnp.float32).at[0].set(0.0),
        item_group_v=jnp.asarray(rng.integers(0, 4, V), jnp.int32).at[0].set(0),
        item_topics_vt=jnp.asarray(topics),
        item_pop_v=jnp.asarray(rng.integers(0, 50, V), jnp.float32).at[0].set(0.0),
        prereq_vp=jnp.asarray(prereq, jnp.int32),
        success_bv=jnp.asarray(rng.random((batch, V)), jnp.float32),
    )


def tiny_candidates(*, batch: int = 3, seed: int = 0) -> tuple[jax.Array, jax.Array]:
    """``(ids_bc, scores_bc)``, C=8 distinct ids per row, best score first: row 0 all valid;
    row 1 with an id 0 and a score -inf among them; every later row with one valid
    candidate only."""
    rng = np.random.default_rng(seed + 1)
    ids = np.stack([rng.choice(np.arange(1, V), RERANK_C, replace=False) for _ in range(batch)])
    scores = -np.sort(-rng.normal(size=(batch, RERANK_C)), axis=1)
    if batch > 1:
        ids[1, 2] = 0
        scores[1, 4] = -np.inf
    for row in range(2, batch):
        scores[row, 1:] = -np.inf
    return jnp.asarray(ids, jnp.int32), jnp.asarray(scores, jnp.float32)


def check_reranked(ids_in, scores_in, ids_out, scores_out, k: int, what: str = "") -> None:
    """A reranker's output ``(ids_out, scores_out)`` for candidates ``(ids_in, scores_in)``
    keeps the contract, row by row: shapes ``[B, k]``; every id one of the row's candidates,
    no real id twice; valid items (finite scores) before invalid ones, each scored with its
    model score, no more of them than the row's valid candidates."""
    ids_in, scores_in = np.asarray(ids_in), np.asarray(scores_in)
    ids_out, scores_out = np.asarray(ids_out), np.asarray(scores_out)
    batch = ids_in.shape[0]
    _expect(
        ids_out.shape == (batch, k), f"{what}: ids shaped {ids_out.shape}, expected {(batch, k)}"
    )
    _expect(scores_out.shape == (batch, k), f"{what}: scores shaped {scores_out.shape}")
    _expect(np.issubdtype(ids_out.dtype, np.integer), f"{what}: ids of dtype {ids_out.dtype}")
    _expect(np.issubdtype(scores_out.dtype, np.floating), f"{what}: scores of {scores_out.dtype}")
    for b in range(batch):
        valid_in = (ids_in[b] > 0) & (scores_in[b] > -np.inf)
        score_of = {int(i): float(s) for i, s in zip(ids_in[b], scores_in[b], strict=True)}
        row = f"{what}, learner {b}"
        _expect(all(int(i) in score_of for i in ids_out[b]), f"{row}: ids not among the candidates")
        real = ids_out[b][ids_out[b] > 0]
        _expect(len(set(real.tolist())) == len(real), f"{row}: an id appears twice: {real}")
        ok = scores_out[b] > -np.inf
        _expect(not (np.diff(ok.astype(int)) > 0).any(), f"{row}: a valid item after an invalid")
        _expect(not np.isnan(scores_out[b]).any(), f"{row}: NaN scores")
        for i, s in zip(ids_out[b][ok], scores_out[b][ok], strict=True):
            _expect(
                int(i) > 0 and score_of[int(i)] == float(s),
                f"{row}: item {int(i)} scored {s}, not its model score {score_of.get(int(i))}",
            )
        _expect(ok.sum() <= min(k, valid_in.sum()), f"{row}: more valid items than it was given")


def check_knowledge_tracer(config: KnowledgeTracerPlugin) -> None:
    """A knowledge tracer at tiny shapes: one finite logit per answer ``[B, L]``; position
    ``t`` never depends on response ``t`` or on anything after ``t`` (no answer leaks into its
    own prediction), nor on padding; jit equals eager; gradients reach the parameters."""
    questions, concepts, length = 9, 7, 10
    ctx = KTBuildContext(
        dim=D, num_questions=questions, num_concepts=concepts, max_len=length, rngs=nnx.Rngs(0)
    )
    model = config.build(ctx)
    rng = np.random.default_rng(0)
    n = 3
    mask = np.arange(length)[None, :] < np.array([[length], [7], [4]])
    q = np.where(mask, rng.integers(1, questions, (n, length)), 0).astype(np.int32)
    c = np.where(mask, rng.integers(1, concepts, (n, length)), 0).astype(np.int32)
    r = np.where(mask, rng.integers(0, 2, (n, length)), 0).astype(np.int32)

    def run(q, c, r):
        return np.asarray(model(jnp.asarray(q), jnp.asarray(c), jnp.asarray(r), jnp.asarray(mask)))

    logits = run(q, c, r)
    _expect(logits.shape == (n, length), f"logits shaped {logits.shape}, expected {(n, length)}")
    _finite(logits, "logits")
    for t in (0, 2, 5):
        r2, q2, c2 = r.copy(), q.copy(), c.copy()
        r2[:, t:] = 1 - r2[:, t:]
        q2[:, t + 1 :] = np.where(mask[:, t + 1 :], (q2[:, t + 1 :] % (questions - 1)) + 1, 0)
        c2[:, t + 1 :] = np.where(mask[:, t + 1 :], (c2[:, t + 1 :] % (concepts - 1)) + 1, 0)
        _close(
            run(q2, c2, r2)[:, : t + 1],
            logits[:, : t + 1],
            f"the logits up to position {t} changed with response {t} or later answers "
            "(an answer leaks into its own prediction)",
        )
    padded = (r + ~mask).astype(np.int32) % 2
    _close(run(q, c, padded)[mask], logits[mask], "the logits depend on padding")
    jitted = nnx.jit(lambda m, *a: m(*a))(
        model, jnp.asarray(q), jnp.asarray(c), jnp.asarray(r), jnp.asarray(mask)
    )
    _close(jitted, logits, "jit differs from eager", rtol=1e-4, atol=1e-4)

    def loss(m):
        out = m(jnp.asarray(q), jnp.asarray(c), jnp.asarray(r), jnp.asarray(mask))
        return jnp.sum(jnp.where(jnp.asarray(mask), jax.nn.softplus(-out), 0.0))

    grads = nnx.grad(loss)(model)
    leaves = jax.tree.leaves(grads)
    _expect(all(np.isfinite(np.asarray(g)).all() for g in leaves), "gradients not finite")
    _expect(any(np.abs(np.asarray(g)).max() > 0 for g in leaves), "no gradient reaches it")


def check_reranker(reranker: RerankerPlugin, ctx: RerankContext | None = None) -> None:
    """A reranker: ``needs`` and ``requires()`` name context fields, ``across_learners`` is a
    bool; ``reranker(ids, scores, ctx, k=5)`` on 8 candidates gives ids and scores ``[B, 5]``,
    the same jitted and eager, twice the same; each output id is one of the row's candidates,
    none twice; valid items (finite scores, each the model's score of that item) come before
    invalid ones and are no more than the row's valid candidates; ``k = C`` keeps every
    candidate; ``k > C`` is a ``ValueError``; unless ``across_learners``, one learner's list
    ignores the others'."""
    needs, requires = type(reranker).needs, reranker.requires()
    _expect(isinstance(needs, frozenset), f"needs must be a frozenset, found {needs!r}")
    _expect(needs <= requires <= set(RERANK_NEEDS), f"needs {needs} / requires() {requires}")
    _expect(isinstance(type(reranker).across_learners, bool), "across_learners must be a bool")
    ctx = ctx or tiny_rerank_context()
    ids, scores = tiny_candidates(batch=ctx.history_bh.shape[0])
    k = RERANK_K

    def run(i, s, c, *, k=k):
        return reranker(i, s, c, k=k)

    eager = run(ids, scores, ctx)
    check_reranked(ids, scores, eager[0], eager[1], k, "eager")
    jitted = jax.jit(run, static_argnames="k")
    again = jitted(ids, scores, ctx)
    _expect((np.asarray(again[0]) == np.asarray(eager[0])).all(), "jit and eager ids differ")
    _close(again[1], eager[1], "jit and eager scores differ")
    twice = jitted(ids, scores, ctx)
    _expect((np.asarray(twice[0]) == np.asarray(again[0])).all(), "two calls differ")

    full = jitted(ids, scores, ctx, k=RERANK_C)
    check_reranked(ids, scores, full[0], full[1], RERANK_C, "k = C")
    _expect(
        all(
            sorted(np.asarray(full[0][b]).tolist()) == sorted(np.asarray(ids[b]).tolist())
            for b in range(ids.shape[0])
        ),
        "k = C must keep every candidate (a stage inside a chain passes all C on)",
    )
    try:
        run(ids, scores, ctx, k=RERANK_C + 1)
    except ValueError:
        pass
    else:
        raise AssertionError("k > C must raise ValueError")

    if not type(reranker).across_learners and ids.shape[0] > 2:
        other = scores.at[2].set(scores[0]).at[2, 0].set(-jnp.inf)
        moved = jitted(ids, other, ctx)
        _expect(
            (np.asarray(moved[0][:2]) == np.asarray(again[0][:2])).all(),
            "one learner's list changed with another's candidates (a reranker that looks "
            "across learners declares across_learners = True)",
        )


def tiny_plan_graph(*, seed: int = 0, items: int = V - 1, edges: int = 40) -> Any:
    """A random prerequisite DAG of ``items`` items (``rectk.plan.PrerequisiteGraph``): each
    edge points from a higher id to a lower one."""
    from rectk.plan import PrerequisiteGraph

    rng = np.random.default_rng(seed)
    a, b = rng.integers(1, items + 1, (2, edges))
    keep = a != b
    pairs = np.unique(np.stack([np.maximum(a, b), np.minimum(a, b)], 1)[keep], axis=0)
    return PrerequisiteGraph.from_pairs([f"c{i}" for i in range(1, items + 1)], pairs)


def tiny_scorer(*, seed: int = 0, vocab_size: int = V) -> Any:
    """A ``PathScorer`` whose scores depend on the most recent item (random, seeded)."""
    table_vv = np.random.default_rng(seed).normal(size=(vocab_size, vocab_size))

    def score(history_bh: np.ndarray) -> np.ndarray:
        last_b = np.asarray(history_bh)[:, -1] if np.asarray(history_bh).shape[1] else 0
        return table_vv[last_b].astype(np.float32)

    return score


def check_planner(planner: PlannerPlugin) -> None:
    """A planner on random prerequisite DAGs (V=32), histories and goals: returns a ``Plan``
    whose path is prerequisite-valid, reaches the goal, repeats no item and no history item,
    holds the goal's prerequisite closure and is at most ``max_len`` long; the same request
    gives the same path; a goal already taken gives an empty path."""
    from rectk.plan import closure, make_request, path_problems

    for seed in range(3):
        graph = tiny_plan_graph(seed=seed)
        rng = np.random.default_rng(seed)
        history = rng.choice(np.arange(1, V), 4, replace=False)
        goal = rng.choice(np.setdiff1d(np.arange(1, V), history), 2, replace=False)
        need = closure(graph, goal, history)
        request = make_request(
            graph,
            history=history,
            goal=goal,
            scorer=tiny_scorer(seed=seed),
            popularity_v=rng.random(V).astype(np.float32),
            max_len=len(need) + 2,
            seed=seed,
        )
        plan = planner.plan(request)
        _expect(isinstance(plan, Plan), f"plan() must return a Plan, found {type(plan).__name__}")
        problems = path_problems(request, plan.path)
        _expect(not problems, f"seed {seed}: {'; '.join(problems)}")
        _expect(set(need.tolist()) <= set(plan.path.tolist()), f"seed {seed}: closure missed")
        again = planner.plan(request)
        _expect(np.array_equal(again.path, plan.path), "two calls on one request differ")
        _expect(isinstance(plan.exact, bool), f"exact must be a bool, found {plan.exact!r}")
    done = make_request(graph, history=history, goal=history[:1], scorer=tiny_scorer())
    _expect(len(planner.plan(done).path) == 0, "a goal already taken needs an empty path")


# ---------------------------------------------------------------------------------------------
# Every registered plugin.
# ---------------------------------------------------------------------------------------------

CHECKS: dict[str, Callable[[Any], None]] = {
    "encoders": check_encoder,
    "item_towers": check_item_tower,
    "heads": check_head,
    "losses": check_loss,
    "metrics": check_metric,
    "baselines": check_baseline,
    "datasets": check_dataset,
    "tasks": check_task,
    "rerankers": check_reranker,
    "list_metrics": check_list_metric,
    "knowledge_tracers": check_knowledge_tracer,
    "planners": check_planner,
}


def check_registered(kind: str, name: str) -> None:
    """Runs ``kind``'s check (a key of ``rectk.registry.ALL``) on the plugin registered as
    ``name``, configured by ``tiny_config``. Raises ``unittest.SkipTest`` where the plugin
    needs what is absent here: fields without defaults (paths), or data (``DataError``)."""
    from rectk import registry

    plugin = registry.ALL[kind].get(name)
    if kind in ("metrics", "list_metrics"):  # functions: nothing to configure
        CHECKS[kind](plugin)
        return
    try:
        config = tiny_config(plugin)
    except TypeError as err:
        raise unittest.SkipTest(
            f"{kind[:-1]} {name!r} has fields without defaults: {err}"
        ) from None
    try:
        CHECKS[kind](config)
    except DataError as err:
        raise unittest.SkipTest(f"{kind[:-1]} {name!r} needs data absent here: {err}") from None
