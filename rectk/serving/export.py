"""``rectk export``: a finished run as a self-contained serving artefact.

The predict function (histories -> top-k over all items, seen items masked, the run's reranker
chain included) is traced once and serialised with ``jax.export`` (StableHLO) with a symbolic
batch size ``b`` and seen-history length ``h``. Its weights go beside it as safetensors, with
the item vocabulary, titles and the learners' histories, so that ``rectk.serving.artifact``
serves it with jax, numpy and safetensors alone: no recipe, plugin or training data.

The folder::

    manifest.json        format, shapes, k_max, chain, source run and step
    predict.jaxexport    the serialised function: (weights, input [b, L], seen [b, h])
                         -> (scores [b, k_max], item ids [b, k_max]); h is fixed (the
                         longest history served) where a reranker chain is built in
    weights.safetensors  the function's array arguments, in manifest["arguments"] order; for a
                         fine-tuned text tower also the item table, encoded once at export
    catalogue.json       item ids (model id i = item_ids[i - 1]) and titles
    learners.npz         known learners' ids and histories (CSR), for requests by learner id
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import json
import os
import shutil
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from rectk import steps
from rectk.data.pipeline import padded_length
from rectk.errors import RectkError
from rectk.evaluate import item_chunk
from rectk.rerank.chain import chain as make_chain

FORMAT = "rectk-export/1"
# A history's seen items are padded to a multiple of this (as ``rectk recommend`` does), so a
# server compiles one shape per 64 items of history.
SEEN_MULTIPLE = 64
# Platforms the function is lowered for, where this jaxlib can (CPU always).
PLATFORMS = ("cpu", "cuda", "tpu")


@dataclasses.dataclass(frozen=True)
class Scorer:
    """What is exported: a model's scoring graph and weights, independent of a run directory.

    Attributes:
      bound: the scoring-only ``steps.Bound`` (the model's graph).
      weights: ``{"params", "rest"}``.
      max_len: the encoder's input length L.
      num_items: catalogue size (ids 1..num_items).
      item_chunk: items scored per step of the top-k scan.
      stages: the reranker chain's bound stages (empty: the model's own ranking).
      candidates: candidates per learner handed to the chain.
      side: arrays of the chain's ``RerankContext`` by field name (``item_group_v``, ...).
    """

    bound: Any
    weights: Any
    max_len: int
    num_items: int
    item_chunk: int
    stages: tuple = ()
    candidates: int = 0
    side: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)


def predict_fn(scorer: Scorer, k: int):
    """``(arguments, input_bl, seen_bh) -> (scores_bk, ids_bk)``, the exported computation.

    ``arguments`` is ``{"weights": [leaves], "side": {...}}`` (plain containers, which
    ``jax.export`` serialises; the model's own pytree types are rebuilt inside); the chain (if any) reranks the top
    ``candidates`` to ``k``. Empty slots have id 0 and score -inf.
    """
    num = scorer.num_items
    treedef = jax.tree.structure(scorer.weights)

    def fn(arguments, input_bl, seen_bh):
        weights = jax.tree.unflatten(treedef, arguments["weights"])
        table_vd = arguments.get("table")
        batch = {"user": jnp.zeros(input_bl.shape[:1], jnp.int32), "input": input_bl}
        batch["seen"] = seen_bh
        top_k = functools.partial(
            steps.model_top_k, scorer.bound, num, scorer.item_chunk, weights=weights, batch=batch
        )
        if not scorer.stages:
            return top_k(k, table_vd=table_vd)
        scores, ids = top_k(scorer.candidates, table_vd=table_vd)
        if table_vd is None:
            table_vd = steps.item_table(scorer.bound, weights)
        from rectk.contracts import RerankContext

        ctx = RerankContext(history_bh=seen_bh, item_emb_vd=table_vd, **arguments["side"])
        # the whole batch at once: chunking needs a batch size known when traced
        ids, scores = make_chain(scorer.stages, k, rows_per_chunk=0)(ids, scores, ctx)
        return scores, ids

    return fn


def _platforms() -> tuple[str, ...]:
    """The platforms of ``PLATFORMS`` this jaxlib can lower for (the default backend's first)."""
    first = jax.default_backend()
    return (first, *(p for p in PLATFORMS if p != first))


def export_scorer(
    scorer: Scorer, k: int, seen_len: int | None = None
) -> tuple[jax.export.Exported, dict]:
    """``(the exported function, its arguments)``: ``jax.export`` of ``predict_fn`` with the
    batch size symbolic, and the seen length too unless ``seen_len`` fixes it."""
    arguments = {"weights": jax.tree.leaves(scorer.weights), "side": dict(scorer.side)}
    model = scorer.bound.model(scorer.weights["params"], scorer.weights["rest"])
    if model.encodes_items:  # a fine-tuned text encoder: its item table, computed once here
        table = jax.jit(functools.partial(steps.item_table, scorer.bound))(scorer.weights)
        arguments["table"] = np.asarray(table)
    b, h = jax.export.symbolic_shape("b, h")
    if seen_len is not None:
        h = seen_len
    specs = (
        jax.tree.map(lambda a: jax.ShapeDtypeStruct(np.shape(a), a.dtype), arguments),
        jax.ShapeDtypeStruct((b, scorer.max_len), jnp.int32),
        jax.ShapeDtypeStruct((b, h), jnp.int32),
    )
    fn = jax.jit(predict_fn(scorer, k))
    platforms = list(_platforms())
    while True:
        try:
            return jax.export.export(fn, platforms=platforms)(*specs), arguments
        except Exception:  # a platform this jaxlib cannot lower for: drop the last one tried
            if len(platforms) == 1:
                raise
            platforms.pop()


def _flat(scorer: Scorer, arguments) -> tuple[list[str], list[np.ndarray]]:
    """Names (the weights' key paths, the side arrays' fields) and arrays of ``arguments``'
    leaves, in pytree order."""
    weight_names = [
        "weights" + jax.tree_util.keystr(p)
        for p, _ in jax.tree.flatten_with_path(scorer.weights)[0]
    ]
    side_names = [f"side.{name}" for name in sorted(arguments["side"])]
    table_names = ["table"] if "table" in arguments else []
    leaves = jax.tree.leaves(arguments)
    return [*side_names, *table_names, *weight_names], [np.asarray(x) for x in leaves]


def export_run(
    run_dir: str | Path,
    out: str | Path,
    *,
    k_max: int = 100,
    chain: str | None = None,
    force: bool = False,
) -> Path:
    """Writes the artefact of the run in ``run_dir`` into the folder ``out``; returns it.

    ``k_max``: the longest list served (requests ask for any ``k <= k_max``; clipped to the
    catalogue size). With a chain, the function reranks to ``k_max`` and a request for fewer
    gets the first ``k`` of that list. ``chain``: a reranker chain of the run's recipe (None = the recipe's
    ``rerank.use``; "" or "none" = the model's own ranking). The folder is written whole or not
    at all (a temporary folder beside it, then a rename); an existing one needs ``force``.
    """
    from rectk.predict import _chain, load_run

    run = load_run(run_dir)
    if k_max < 1:
        raise RectkError(f"--k-max must be at least 1, got {k_max}")
    k = min(k_max, run.num_items)
    name = run.cfg.rerank.use if chain is None else chain
    candidates = run.cfg.rerank.candidates
    if name not in ("", "none") and k > candidates:
        raise RectkError(
            f"--k-max {k} exceeds rerank.candidates = {candidates}: the chain {name!r} picks "
            f"its list among that many candidates (pass --k-max {candidates} or less)"
        )
    stages = _chain(run, chain, k)
    side: dict[str, np.ndarray] = {}
    if stages:
        item_side = run.require_side()
        ctx = item_side.context(np.zeros((1, 1), np.int32))
        side = {
            name: np.asarray(getattr(ctx, name))
            for name in ("item_group_v", "item_topics_vt", "item_pop_v", "prereq_vp")
            if getattr(ctx, name) is not None
        }
    scorer = Scorer(
        bound=run.bound,
        weights=run.weights,
        max_len=run.cfg.model.max_len,
        num_items=run.num_items,
        item_chunk=item_chunk(run.cfg.eval.item_chunk, run.num_items),
        stages=stages,
        candidates=run.cfg.rerank.candidates if stages else 0,
        side=side,
    )
    users = run.vocab["user_ids"]
    hist = run.history
    learners = {
        "user_ids": np.asarray(users, dtype=str),
        "ptr": np.asarray(hist.ptr[1 : len(users) + 2] - hist.ptr[1], np.int64),
        "items": np.asarray(hist.items[hist.ptr[1] : hist.ptr[len(users) + 1]], np.int32),
    }
    seen_len = None
    if stages:  # rerankers search the histories: a shape fixed when traced
        longest = int(np.diff(learners["ptr"]).max(initial=0))
        seen_len = padded_length(max(256, longest), SEEN_MULTIPLE)
    source = {
        "run": str(Path(run_dir).resolve()),
        "step": run.step,
        "recipe_hash": json.loads((Path(run_dir) / "run.json").read_text()).get("recipe_hash"),
        "chain": (chain if chain is not None else run.cfg.rerank.use) if stages else "",
    }
    return write_artifact(
        scorer,
        out,
        k=k,
        item_ids=list(run.vocab["item_ids"]),
        titles=list(run.titles) if run.titles else None,
        learners=learners,
        source=source,
        seen_len=seen_len,
        force=force,
    )


def write_artifact(
    scorer: Scorer,
    out: str | Path,
    *,
    k: int,
    item_ids: list[str],
    titles: list[str] | None = None,
    learners: dict[str, np.ndarray] | None = None,
    source: dict | None = None,
    seen_len: int | None = None,
    force: bool = False,
) -> Path:
    """Exports ``scorer`` at list length ``k`` into the folder ``out`` (see the module).
    ``seen_len``: a fixed length of the seen-items input (the longest history served), where
    the function cannot take a symbolic one; None = any length."""
    from safetensors.numpy import save_file

    out = Path(out)
    if out.exists() and not force:
        raise RectkError(f"{out} exists: choose another --out, or pass --force to replace it")
    if len(item_ids) != scorer.num_items:
        raise ValueError(f"{len(item_ids)} item ids for a catalogue of {scorer.num_items}")
    exported, arguments = export_scorer(scorer, k, seen_len)
    names, arrays = _flat(scorer, arguments)
    manifest = {
        "format": FORMAT,
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "jax": jax.__version__,
        "platforms": list(exported.platforms),
        "k_max": k,
        "max_len": scorer.max_len,
        "num_items": scorer.num_items,
        "seen_multiple": SEEN_MULTIPLE,
        "seen_len": seen_len,
        "arguments": names,
        "library_dots": bool(getattr(scorer.bound, "library_dots", True)),
        "source": source or {},
    }
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        (tmp / "predict.jaxexport").write_bytes(exported.serialize())
        save_file(
            {f"{i:05d}": np.ascontiguousarray(a) for i, a in enumerate(arrays)},
            str(tmp / "weights.safetensors"),
        )
        catalogue = {"item_ids": list(item_ids), "titles": list(titles) if titles else None}
        (tmp / "catalogue.json").write_text(json.dumps(catalogue))
        if learners is not None:
            np.savez(str(tmp / "learners.npz"), **learners)  # type: ignore[arg-type]
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2))
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def synthetic_scorer(recipe: str | Path, num_items: int, *, seed: int = 0) -> Scorer:
    """A ``Scorer`` of ``recipe``'s model over a catalogue of ``num_items`` items, with freshly
    initialised weights (seeded): for load tests at catalogue sizes no data set here has. Its
    lists mean nothing; its shapes and costs are a trained model's."""
    from flax import nnx

    from rectk import recipe as recipe_lib
    from rectk.model import run_model, trainable_filter

    cfg = recipe_lib.load(recipe, overrides=[f"seed={seed}"]).config
    model = run_model(cfg, vocab_size=num_items + 1, num_users=2, catalogue=None)
    graphdef, params, rest = nnx.split(model, trainable_filter(model), ...)  # type: ignore[misc]
    bound = steps.Bound(graphdef=graphdef, library_dots=model.library_dots)
    return Scorer(
        bound=bound,
        weights={"params": params, "rest": rest},
        max_len=cfg.model.max_len,
        num_items=num_items,
        item_chunk=item_chunk(cfg.eval.item_chunk, num_items),
    )
