"""Metrics of predicted success probabilities against graded answers."""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata


def auc(prob: np.ndarray, label: np.ndarray) -> float:
    """Area under the ROC curve (the Mann-Whitney statistic; tied scores count one half), as
    scikit-learn's ``roc_auc_score``; NaN where only one class is present.

    >>> auc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1]))
    0.75
    """
    label = np.asarray(label).astype(bool)
    pos, neg = int(label.sum()), int((~label).sum())
    if pos == 0 or neg == 0:
        return float("nan")
    ranks = rankdata(np.asarray(prob, np.float64))
    return float((ranks[label].sum() - pos * (pos + 1) / 2) / (pos * neg))


def accuracy(prob: np.ndarray, label: np.ndarray, threshold: float = 0.5) -> float:
    """The share of answers whose prediction ``prob >= threshold`` matches (pyKT's rule)."""
    return float(np.mean((np.asarray(prob) >= threshold) == np.asarray(label).astype(bool)))


def expected_calibration_error(prob: np.ndarray, label: np.ndarray, bins: int = 10) -> float:
    """ECE over ``bins`` equal-width probability bins: the answer-weighted mean gap between
    each bin's mean prediction and its share of right answers.

    >>> expected_calibration_error(np.array([0.2, 0.2, 0.9, 0.9]), np.array([0, 1, 1, 1]))
    0.2
    """
    table = reliability(prob, label, bins)
    n = table["count"].sum()
    gaps = np.abs(table["mean_prob"] - table["accuracy"]) * table["count"]
    return float(round(np.nansum(gaps) / max(n, 1), 12))


def reliability(prob: np.ndarray, label: np.ndarray, bins: int = 10) -> dict[str, np.ndarray]:
    """Per equal-width bin: ``count``, ``mean_prob`` and ``accuracy`` (NaN where empty)."""
    prob = np.asarray(prob, np.float64)
    label = np.asarray(label, np.float64)
    which = np.minimum((prob * bins).astype(np.int64), bins - 1)
    count = np.bincount(which, minlength=bins).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_prob = np.bincount(which, prob, minlength=bins) / count
        acc = np.bincount(which, label, minlength=bins) / count
    return {"count": count, "mean_prob": mean_prob, "accuracy": acc}


def binary_metrics(prob: np.ndarray, label: np.ndarray) -> dict[str, float]:
    """AUC, accuracy and expected calibration error of one set of predictions."""
    return {
        "auc": auc(prob, label),
        "accuracy": accuracy(prob, label),
        "ece": expected_calibration_error(prob, label),
    }
