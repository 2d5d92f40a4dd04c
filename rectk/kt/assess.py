"""Learning-effect assessment from a knowledge-tracing run: a learner's per-concept mastery
(table and chart), and how well calibrated the run's success estimates are on held-out
answers (reliability diagram, expected calibration error).

Mastery of a concept is the run's predicted probability of answering that concept's
questions right next, given the learner's answers so far (``KTRun.mastery``). Calibration
replays each test learner's answers: every answer but a learner's first is predicted from
the answers before it (up to ``maxlen - 1`` of them), as ``rectk assess --calibration`` does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from rectk.kt.metrics import auc, expected_calibration_error, reliability
from rectk.kt.predict import KTRun


def concept_mastery(run: KTRun, questions: np.ndarray, responses: np.ndarray) -> list[dict]:
    """One row per concept, weakest first: raw concept id, mastery, answers, right answers."""
    m = run.mastery(questions, responses)
    rows = [
        {
            "concept": run.concept_ids[c],
            "mastery": float(m["mastery"][c]),
            "answered": int(m["answered"][c]),
            "right": int(m["right"][c]),
        }
        for c in range(len(run.concept_ids))
    ]
    return sorted(rows, key=lambda row: (row["mastery"], row["concept"]))


def format_mastery(rows: list[dict], limit: int | None = None) -> str:
    """The mastery rows as a text table (the first ``limit``, default all).

    >>> print(format_mastery([{"concept": "7", "mastery": 0.41, "answered": 3, "right": 1}]))
    concept        mastery  answered  right
    7                0.410         3      1
    """
    lines = [f"{'concept':<12}{'mastery':>10}{'answered':>10}{'right':>7}"]
    for row in rows[:limit]:
        lines.append(
            f"{row['concept']:<12}{row['mastery']:>10.3f}{row['answered']:>10d}{row['right']:>7d}"
        )
    return "\n".join(lines)


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def mastery_chart(rows: list[dict], path: str | Path, *, title: str = "") -> Path:
    """A horizontal bar chart of the rows' mastery (one bar per concept), written as PNG."""
    plt = _pyplot()
    path = Path(path)
    names = [r["concept"] for r in rows]
    values = [r["mastery"] for r in rows]
    colours = ["tab:gray" if r["answered"] == 0 else "tab:blue" for r in rows]
    fig, ax = plt.subplots(figsize=(7, max(2.5, 0.18 * len(rows) + 1)))
    ax.barh(range(len(rows)), values, color=colours)
    ax.set_yticks(range(len(rows)), names, fontsize=6 if len(rows) > 40 else 8)
    ax.set_ylim(len(rows) - 0.5, -0.5)  # weakest on top, no empty margin
    ax.set_xlim(0, 1)
    ax.set_xlabel("mastery: predicted P(right) on the concept's questions")
    ax.set_title(title or "mastery per concept (grey: never answered)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def test_learners(run: KTRun) -> np.ndarray:
    """Dense ids of the run's test learners (``answers.npz``'s folds; for a run saved
    without them, the folds of its data set, read again)."""
    from rectk.data.kt import TEST_FOLD

    fold = run.fold
    if fold is None:
        fold = run.cfg.data.load().answers.fold
    return np.flatnonzero(np.asarray(fold) == TEST_FOLD).astype(np.int32)


def held_out_predictions(
    run: KTRun, learners: np.ndarray, *, rows: int = 64
) -> tuple[np.ndarray, np.ndarray]:
    """``(prob, label)`` of every answer but each learner's first, each predicted from the
    answers before it: windows of ``maxlen`` answers overlapping by one, every position but a
    window's first read (one compiled shape)."""
    width, stride = run.maxlen, run.maxlen - 1
    windows = []
    for u in np.asarray(learners):
        lo, hi = int(run.ptr[u]), int(run.ptr[u + 1])
        for start in range(lo, max(hi - 1, lo), stride):
            windows.append((start, min(start + width, hi)))
    probs, labels = [], []
    for b in range(0, len(windows), rows):
        q = np.zeros((rows, width), np.int32)
        r = np.zeros((rows, width), np.int32)
        mask = np.zeros((rows, width), bool)
        mask[:, 0] = True  # padding rows: one harmless answer each
        q[:, 0] = 1
        batch = windows[b : b + rows]
        for i, (s, e) in enumerate(batch):
            q[i, : e - s] = run.question[s:e]
            r[i, : e - s] = run.response[s:e]
            mask[i, : e - s] = True
        prob = np.asarray(run.probabilities(q, r, mask))
        for i, (s, e) in enumerate(batch):
            probs.append(prob[i, 1 : e - s])
            labels.append(r[i, 1 : e - s])
    if not probs:
        return np.zeros(0), np.zeros(0, np.int32)
    return np.concatenate(probs).astype(np.float64), np.concatenate(labels)


def calibration(run: KTRun, *, bins: int = 10, learners: np.ndarray | None = None) -> dict:
    """The calibration of the run's predictions on its test learners' answers (or on
    ``learners``): ECE, AUC, counts and the reliability table per equal-width bin."""
    who = test_learners(run) if learners is None else np.asarray(learners)
    prob, label = held_out_predictions(run, who)
    table = reliability(prob, label, bins)
    return {
        "ece": expected_calibration_error(prob, label, bins),
        "auc": auc(prob, label),
        "answers": len(prob),
        "learners": len(who),
        "bins": bins,
        "count": table["count"].astype(int).tolist(),
        "mean_prob": [None if np.isnan(x) else float(x) for x in table["mean_prob"]],
        "accuracy": [None if np.isnan(x) else float(x) for x in table["accuracy"]],
    }


def reliability_chart(result: dict, path: str | Path, *, title: str = "") -> Path:
    """The reliability diagram of ``calibration``'s result (bars: share of right answers per
    bin against its mean prediction; the diagonal is perfect calibration), as PNG."""
    plt = _pyplot()
    path = Path(path)
    bins = result["bins"]
    edges = np.linspace(0, 1, bins + 1)
    centres = 0.5 * (edges[:-1] + edges[1:])
    acc = np.asarray([np.nan if a is None else a for a in result["accuracy"]], float)
    mean = np.asarray([np.nan if a is None else a for a in result["mean_prob"]], float)
    count = np.asarray(result["count"], float)
    fig, (ax, hx) = plt.subplots(
        2, 1, figsize=(5, 5.6), sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    ax.plot([0, 1], [0, 1], color="gray", linestyle="--", linewidth=1, label="perfect")
    ax.bar(
        centres,
        np.nan_to_num(acc),
        width=1 / bins,
        edgecolor="black",
        alpha=0.7,
        label="share right",
    )
    ax.plot(mean, acc, "o-", color="tab:red", markersize=3, label="(mean prediction, share right)")
    ax.set_ylim(0, 1)
    ax.set_ylabel("share of right answers")
    ax.set_title(title or f"reliability (ECE {result['ece']:.4f}, {result['answers']} answers)")
    ax.legend(loc="upper left", fontsize=8)
    hx.bar(centres, count, width=1 / bins, color="tab:gray", edgecolor="black")
    hx.set_xlabel("predicted P(right)")
    hx.set_ylabel("answers")
    hx.set_xlim(0, 1)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
