"""Accuracy against beyond-accuracy metrics for every built-in reranker at three settings.

Trains each recipe (or reuses its finished run under ``--runs``), retrieves the model's top
``rerank.candidates`` unseen items for every test learner once, reranks them to ``rerank.k``
with each reranker at three settings, and prints a Markdown table (NDCG@K, coverage, Gini,
intra-list diversity, miscalibration, exposure disparity, prerequisite violations) and draws
one frontier plot per data set. The test split is measured here to describe the trade-offs,
not to choose a setting: choose on the validation split (``rectk sweep``, its default).

    python benchmarks/rerank_quality.py recipes/quickstart_rerank.toml \\
        recipes/mooccube_rerank.toml --runs runs/rerank --json results/rerank_quality.json \\
        --png docs/images
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from rectk import recipe as recipe_lib
from rectk.errors import RectkError
from rectk.predict import load_run
from rectk.rerank.evaluate import final_lists, report, retrieve
from rectk.setup import prepare
from rectk.train import train_and_evaluate
from rectk_plugins.rerankers import DPP, FAIR, MMR, Calibration, Exposure, Prerequisites, XQuAD

COLUMNS = ("ndcg", "coverage", "gini", "ild", "miscalibration", "exposure_disparity",
           "prerequisite_violations")  # fmt: skip


def protected_providers(pop_v: np.ndarray, group_v: np.ndarray, names) -> tuple[str, ...]:
    """The providers with the fewest training interactions, half of them: FA*IR's
    protected group here."""
    per_group = np.bincount(group_v, weights=pop_v, minlength=len(names) + 1)[1:]
    order = np.argsort(per_group, kind="stable")
    return tuple(names[g] for g in order[: len(names) // 2])


def settings(side) -> list[tuple[str, str, list]]:
    """(reranker, parameter, [three configurations])."""
    out = [
        ("mmr", "lambda_", [MMR(lambda_=v) for v in (0.9, 0.7, 0.5)]),
        ("dpp", "theta", [DPP(theta=v) for v in (0.9, 0.7, 0.5)]),
        ("xquad", "lambda_", [XQuAD(lambda_=v) for v in (0.2, 0.5, 0.8)]),
    ]
    have = side.provides()
    if "topics" in have:
        out.append(("calibration", "lambda_", [Calibration(lambda_=v) for v in (0.2, 0.5, 0.8)]))
    if "groups" in have:
        out.append(
            (
                "exposure",
                "lambda_",
                [Exposure(lambda_=v, target="catalogue") for v in (0.2, 0.5, 0.8)],
            )
        )
        protected = protected_providers(side.pop_v, side.group_v, side.group_names)
        out.append(("fair", "p", [FAIR(protected_groups=protected, p=v) for v in (0.2, 0.4, 0.6)]))
    if "prerequisites" in have:
        out.append((
            "prerequisites", "mode",
            [Prerequisites(mode="demote", penalty=3), Prerequisites(mode="demote", penalty=10),
             Prerequisites(mode="remove")],
        ))  # fmt: skip
    return out


def measure(recipe_path: str, runs: str) -> dict:
    recipe = recipe_lib.load(recipe_path, [f"run_dir={runs}"])
    cfg = recipe.config
    run_path = Path(runs) / cfg.name
    if not (run_path / "results.json").exists():
        train_and_evaluate(recipe, progress=False, echo=lambda *_: None)
    run = load_run(run_path)
    _, sp = prepare(cfg)
    side = run.require_side()
    t0 = time.perf_counter()
    cands = retrieve(run, sp.test, cfg.rerank.candidates, cfg.eval.batch_size)
    emb = run.item_table_vd
    kw = {"accuracy": ("ndcg",), "beyond": cfg.rerank.metrics}
    k = cfg.rerank.k
    rows = [
        {"reranker": "model", "setting": "", **report(cands.ids_nc[:, :k], cands, side, emb, **kw)}
    ]
    for name, param, configs in settings(side):
        for stage in configs:
            bound = side.bind((stage,), name)
            ids = final_lists(bound, cands, side, emb, k=k, batch_size=cfg.rerank.batch_size)
            value = getattr(stage, param)
            if name == "prerequisites":
                value = "remove" if stage.mode == "remove" else f"demote {stage.penalty}"
            rows.append({"reranker": name, "setting": f"{param}={value}",
                         **report(ids, cands, side, emb, **kw)})  # fmt: skip
    return {
        "recipe": recipe_path,
        "data": recipe_lib.plugin_name(run.cfg.data),
        "learners": len(sp.test),
        "k": k,
        "candidates": cfg.rerank.candidates,
        "seconds": round(time.perf_counter() - t0, 1),
        "rows": rows,
    }


def markdown(result: dict) -> str:
    k = result["k"]
    head = "| reranker | setting | " + " | ".join(f"{c}@{k}" for c in COLUMNS) + " |"
    lines = [head, "|" + "---|" * (len(COLUMNS) + 2)]
    for r in result["rows"]:
        cells = [f"{r[f'{c}@{k}']:.4f}" if f"{c}@{k}" in r else "" for c in COLUMNS]
        lines.append(f"| {r['reranker']} | {r['setting']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def frontier(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    k = result["k"]
    xs = [c for c in COLUMNS[1:] if f"{c}@{k}" in result["rows"][0]]
    fig, axes = plt.subplots(1, len(xs), figsize=(3.6 * len(xs), 3.3), squeeze=False)
    model = result["rows"][0]
    names = list(dict.fromkeys(r["reranker"] for r in result["rows"][1:]))
    for ax, x in zip(axes.flat, xs, strict=True):
        for name in names:
            pts = [r for r in result["rows"] if r["reranker"] == name]
            ax.plot([p[f"{x}@{k}"] for p in pts], [p[f"ndcg@{k}"] for p in pts], "o-", label=name,
                    markersize=4)  # fmt: skip
        ax.plot([model[f"{x}@{k}"]], [model[f"ndcg@{k}"]], "k*", markersize=11, label="model")
        ax.set_xlabel(f"{x}@{k}")
        ax.set_ylabel(f"ndcg@{k}")
        ax.grid(alpha=0.3)
    axes.flat[0].legend(fontsize=7)
    fig.suptitle(f"{result['data']}: NDCG@{k} against beyond-accuracy metrics")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("recipes", nargs="+")
    p.add_argument("--runs", default="runs/rerank", help="where the runs are (trained if absent)")
    p.add_argument("--json", help="write the results here")
    p.add_argument("--png", help="write a frontier plot per data set into this folder")
    args = p.parse_args(argv)
    results = []
    try:
        for path in args.recipes:
            result = measure(path, args.runs)
            results.append(result)
            print(f"\n{result['data']} ({result['learners']} test learners, top {result['k']} "
                  f"of {result['candidates']} candidates; {result['seconds']} s):\n")  # fmt: skip
            print(markdown(result))
            if args.png:
                Path(args.png).mkdir(parents=True, exist_ok=True)
                frontier(result, Path(args.png) / f"rerank_frontier_{result['data']}.png")
    except RectkError as err:
        print(f"rerank_quality: error: {err}", file=sys.stderr)
        return 2
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
