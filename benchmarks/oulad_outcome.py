"""Course outcomes on OULAD: rectk's sequence model against logistic regression, per cut-off.

    python benchmarks/oulad_outcome.py [--data ../shared/data/oulad]
        [--json results/oulad_outcome.json] [--cutoffs 30,60,100,150,200,end] [--seed 0]

Split (``rectk.outcome.split_by_presentation``): test on the latest presentation, 2014J;
train on 2013B, 2013J and 2014B, whose students are split by ``--seed`` into train (85%) and
validation (15%, early stopping of rectk's model only). At each cut-off day both models see
the same assessment features (``rectk.outcome.sequences``: assessments due or submitted by
then, exams left out): rectk's ``OutcomeModel`` the sequence, scikit-learn's
``LogisticRegression`` (standardised inputs) hand-made aggregates of it, fitted on the same
training enrolments. Metrics on the test enrolments: AUC and accuracy of pass (Pass,
Distinction) against fail (Fail, Withdrawn), and the macro mean of the four one-vs-rest AUCs.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import time
from pathlib import Path

import jax
import numpy as np

from rectk import outcome as oc
from rectk_plugins.datasets.oulad import read_oulad

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "oulad"
AGGREGATES = (
    "seen",
    "submitted",
    "missing",
    "share_missing",
    "mean_score",
    "weighted_score",
    "earned",
    "min_score",
    "last_score",
    "last_submitted",
    "mean_late",
    "late",
    "banked",
    "tma_score",
    "cma_score",
)


def aggregates(seqs: oc.Sequences) -> np.ndarray:
    """float ``[B, len(AGGREGATES)]``: per enrolment, counts and score summaries of its seen
    assessments (a missing score counts 0 in the weighted score and the credit earned)."""
    f = {name: seqs.x_blf[..., i] for i, name in enumerate(oc.FEATURES)}
    seen = seqs.mask_bl.astype(np.float64)
    scored = seen * (1 - f["no_score"])
    score = f["score"] * 100
    n_seen, n_scored = seen.sum(1), scored.sum(1)

    def mean(v, w):
        return (v * w).sum(1) / np.maximum(w.sum(1), 1)

    last = np.maximum(seen.sum(1).astype(int) - 1, 0)
    rows = np.arange(len(seqs))
    last_scored = np.where(scored > 0, np.arange(seen.shape[1])[None], -1).max(1)
    out = {
        "seen": n_seen,
        "submitted": (seen * f["submitted"]).sum(1),
        "missing": n_seen - (seen * f["submitted"]).sum(1),
        "share_missing": (n_seen - (seen * f["submitted"]).sum(1)) / np.maximum(n_seen, 1),
        "mean_score": mean(score, scored),
        "weighted_score": mean(score, seen * f["weight"]),
        "earned": (score * scored * f["weight"]).sum(1),
        "min_score": np.where(n_scored > 0, np.where(scored > 0, score, 100).min(1), 0),
        "last_score": np.where(last_scored >= 0, score[rows, np.maximum(last_scored, 0)], 0),
        "last_submitted": seen[rows, last] * f["submitted"][rows, last],
        "mean_late": mean(f["late"], seen * f["submitted"]),
        "late": (seen * f["submitted"] * (f["late"] > 0)).sum(1),
        "banked": (seen * f["banked"]).sum(1),
        "tma_score": mean(score, scored * f["tma"]),
        "cma_score": mean(score, scored * f["cma"]),
    }
    return np.stack([out[name] for name in AGGREGATES], -1)


def logistic(train: oc.Sequences, test: oc.Sequences, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(pass_prob, outcome_prob)`` on ``test`` of two logistic regressions on aggregates
    fitted on ``train``: binary pass, and multinomial over the four outcomes."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x_tr, x_te = aggregates(train), aggregates(test)

    def model():
        return make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, random_state=seed))

    binary = model().fit(x_tr, train.passed_b)
    multi = model().fit(x_tr, train.outcome_b)
    prob_k = np.zeros((len(test), oc.NUM_OUTCOMES))
    prob_k[:, multi.classes_] = multi.predict_proba(x_te)
    return binary.predict_proba(x_te)[:, 1], prob_k


GRU, LOGREG = "rectk GRU (OutcomeModel)", "logistic regression (sklearn)"


def run_seed(data, cutoffs: list[str], seed: int) -> list[dict]:
    """Both models at every cut-off on the split drawn with ``seed``: one row each."""
    train, valid, test = oc.split_by_presentation(data, seed=seed)
    cfg = oc.OutcomeConfig(seed=seed)
    rows: list[dict] = []
    for cut in cutoffs:
        seqs = oc.sequences(data, cutoff=None if cut == "end" else float(cut))
        seen = float(seqs.mask_bl[test].sum(1).mean())
        t0 = time.perf_counter()
        trained = oc.fit(seqs.take(train), seqs.take(valid), cfg)
        gru = oc.metrics(*oc.predict(trained, seqs.take(test)), data.outcome[test])
        gru["best_epoch"] = trained.best_epoch
        t1 = time.perf_counter()
        lr = oc.metrics(*logistic(seqs.take(train), seqs.take(test), seed), data.outcome[test])
        t2 = time.perf_counter()
        for name, m, s in ((GRU, gru, t1 - t0), (LOGREG, lr, t2 - t1)):
            rows.append({"seed": seed, "cutoff": cut, "model": name, "assessments_seen": seen})
            rows[-1].update(m, seconds=round(s, 1))
            print(
                f"  seed {seed}, day {cut}: {name}: AUC {m['auc_pass']:.4f}, acc "
                f"{m['accuracy_pass']:.4f}, macro AUC {m['auc_macro']:.4f} ({s:.0f} s)",
                flush=True,
            )
    return rows


def summary(rows: list[dict]) -> list[dict]:
    """Per (cut-off, model): the mean and standard deviation of each metric over seeds."""
    keys = ("auc_pass", "accuracy_pass", "auc_macro", "seconds", "assessments_seen")
    out = []
    for cut in dict.fromkeys(r["cutoff"] for r in rows):
        for model in (GRU, LOGREG):
            some = [r for r in rows if r["cutoff"] == cut and r["model"] == model]
            entry: dict = {"cutoff": cut, "model": model, "seeds": len(some)}
            for k in keys:
                v = np.array([r[k] for r in some], np.float64)
                entry[k], entry[f"{k}_std"] = float(v.mean()), float(v.std())
            out.append(entry)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=str(DATA), help="the OULAD folder")
    ap.add_argument("--json", default="results/oulad_outcome.json", help="where to write")
    ap.add_argument("--cutoffs", default="30,60,100,150,200,end", help="days; 'end': all")
    ap.add_argument("--seeds", default="0,1,2", help="splits and initialisations, one run each")
    args = ap.parse_args()

    data = read_oulad(args.data)
    seeds = [int(s) for s in args.seeds.split(",")]
    train, valid, test = oc.split_by_presentation(data, seed=seeds[0])
    counts = np.bincount(data.outcome[test], minlength=oc.NUM_OUTCOMES)
    print(
        f"OULAD {args.data}: {data.num_enrolments} enrolments; train {len(train)}, valid "
        f"{len(valid)} (2013B/2013J/2014B, split by student), test {len(test)} (2014J: "
        + ", ".join(f"{n} {c}" for n, c in zip(oc.OUTCOME_NAMES, counts, strict=True))
        + ")",
        flush=True,
    )
    rows = [r for seed in seeds for r in run_seed(data, args.cutoffs.split(","), seed)]
    table = summary(rows)
    print(
        f"\nmean ± std over seeds {args.seeds}\n{'cut-off':<9}{'model':<32}{'AUC pass':>16}"
        f"{'acc pass':>16}{'macro AUC':>16}{'seconds':>9}"
    )
    for r in table:
        cells = "".join(
            f"{r[k]:>9.4f} ± {r[k + '_std']:.3f}"
            for k in ("auc_pass", "accuracy_pass", "auc_macro")
        )
        print(f"{r['cutoff']:<9}{r['model']:<32}{cells}{r['seconds']:>9.1f}")
    report = {
        "data": str(args.data),
        "split": {"train": len(train), "valid": len(valid), "test": len(test)},
        "test_presentations": ["2014J"],
        "seeds": seeds,
        "config": dataclasses.asdict(oc.OutcomeConfig()),
        "summary": table,
        "rows": rows,
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "jax_backend": jax.default_backend(),
        },
    }
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
        print(f"written: {args.json}")


if __name__ == "__main__":
    main()
