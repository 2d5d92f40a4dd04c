"""A sweep of one reranker parameter: the accuracy / beyond-accuracy frontier of a chain.

``sweep`` retrieves the candidates once and reruns the chain at each value;
``write_sweep`` saves the table as CSV and JSON and draws the frontier (accuracy against
each beyond-accuracy metric, one panel each) as a PNG, with matplotlib.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rectk.contracts import RerankerPlugin
from rectk.data.split import EvalSet
from rectk.errors import RectkError
from rectk.recipe import plugin_name
from rectk.rerank.evaluate import MODEL, final_lists, report, retrieve
from rectk.rundir import atomic_write

if TYPE_CHECKING:
    from rectk.predict import Loaded


def parse_param(stages: Sequence[RerankerPlugin], chain: str, param: str) -> tuple[int, str]:
    """``"STAGE.FIELD"`` -> (stage index, field): STAGE is a position in the chain (0 = the
    first) or a reranker's name; a ``RectkError`` names what exists."""
    head, _, field = param.rpartition(".")
    names = [plugin_name(s) for s in stages]
    listing = ", ".join(f"{i} ({n})" for i, n in enumerate(names))
    if not head:
        raise RectkError(f"--param {param!r}: expected STAGE.FIELD (like mmr.lambda_ or 0.lambda_)")
    if head.isdigit():
        index = int(head)
        if index >= len(stages):
            raise RectkError(f"--param {param!r}: chain {chain!r} has stages {listing}")
    elif head in names:
        index = names.index(head)
    else:
        raise RectkError(f"--param {param!r}: chain {chain!r} has stages {listing}")
    fields = [f.name for f in dataclasses.fields(stages[index])]  # type: ignore[arg-type]
    if field not in fields:
        raise RectkError(
            f"--param {param!r}: {names[index]} has no field {field!r} (fields: {', '.join(fields)})"
        )
    return index, field


def sweep(
    run: Loaded,
    examples: EvalSet,
    chain: str,
    param: str,
    values: Sequence[float],
) -> list[dict[str, Any]]:
    """One row per value (plus the model alone, ``value`` None): the chain's metrics with
    ``param`` (``STAGE.FIELD``) set to that value."""
    cfg = run.cfg.rerank
    if chain not in cfg.chains:
        known = ", ".join(cfg.chains) or "none: declare [[rerank.chains.NAME]] in the recipe"
        raise RectkError(f"--chain {chain!r}: no such chain in the run's recipe (chains: {known})")
    if not values:
        raise RectkError("--values: give at least one value")
    stages = cfg.chains[chain]
    index, field = parse_param(stages, chain, param)
    side = run.require_side()
    cands = retrieve(run, examples, cfg.candidates, run.cfg.eval.batch_size)
    emb = run.item_table_vd
    kwargs = {"accuracy": run.cfg.eval.metrics, "beyond": cfg.metrics}
    rows: list[dict[str, Any]] = [
        {
            "chain": MODEL,
            "value": None,
            **report(cands.ids_nc[:, : cfg.k], cands, side, emb, **kwargs),
        }
    ]
    for value in values:
        try:
            changed = dataclasses.replace(stages[index], **{field: value})  # type: ignore[type-var]
        except (ValueError, TypeError) as err:
            raise RectkError(f"--values {value!r} for {param}: {err}") from None
        bound = side.bind((*stages[:index], changed, *stages[index + 1 :]), chain)
        ids = final_lists(bound, cands, side, emb, k=cfg.k, batch_size=cfg.batch_size)
        rows.append({"chain": chain, "value": value, **report(ids, cands, side, emb, **kwargs)})
    return rows


def write_sweep(
    folder: Path, stem: str, rows: list[dict[str, Any]], *, param: str, accuracy: str
) -> list[Path]:
    """``stem.csv``, ``stem.json`` and ``stem.png`` in ``folder``; returns their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    cols = list(dict.fromkeys(k for r in rows for k in r))
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=cols, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    csv_path, json_path, png_path = (folder / f"{stem}.{ext}" for ext in ("csv", "json", "png"))
    atomic_write(csv_path, text.getvalue())
    atomic_write(json_path, json.dumps({"param": param, "rows": rows}, indent=1) + "\n")
    atomic_write(png_path, frontier_png(rows, param=param, accuracy=accuracy))
    return [csv_path, json_path, png_path]


def frontier_png(rows: list[dict[str, Any]], *, param: str, accuracy: str) -> bytes:
    """The frontier plot: ``accuracy`` (y) against each beyond-accuracy metric (x)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    skip = {"chain", "value", accuracy}
    beyond = [k for k in rows[0] if k not in skip and not k.startswith(("recall", "ndcg", "mrr"))]
    if accuracy not in rows[0]:
        raise RectkError(f"the sweep has no {accuracy!r} column (columns: {', '.join(rows[0])})")
    cols = min(3, max(1, len(beyond)))
    n_rows = max(1, -(-len(beyond) // cols))
    fig, axes = plt.subplots(n_rows, cols, figsize=(4.2 * cols, 3.4 * n_rows), squeeze=False)
    swept = [r for r in rows if r["value"] is not None]
    model = next((r for r in rows if r["value"] is None), None)
    for ax, metric in zip(axes.flat, beyond, strict=False):
        xs = [r.get(metric) for r in swept]
        ys = [r[accuracy] for r in swept]
        ax.plot(xs, ys, "o-", color="tab:blue", label=param)
        for r, x, y in zip(swept, xs, ys, strict=True):
            ax.annotate(
                f"{r['value']:g}", (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points"
            )
        if model is not None and metric in model:
            ax.plot([model[metric]], [model[accuracy]], "k*", markersize=10, label="model alone")
        ax.set_xlabel(metric)
        ax.set_ylabel(accuracy)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(beyond) :]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.suptitle(f"{swept[0]['chain'] if swept else ''}: {param}")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()
