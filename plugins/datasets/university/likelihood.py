"""The likelihood of learners' choices under the simulator's model, step by step and for paths.

These are the functions that made the data, public so that learning paths can be scored under
the same model: :func:`choice_probabilities` is the next-course distribution that
:meth:`LearnerSimulator.simulate` samples from, and :func:`path_log_probability` sums its logs
along a path. ``LearnerSimulator.choice_probabilities`` and ``.path_log_probability`` call them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .simulator import LearnerSimulator, LearnerState

__all__ = ["choice_probabilities", "path_log_probability"]


def choice_probabilities(
    sim: LearnerSimulator, state: LearnerState, taken: np.ndarray
) -> np.ndarray:
    """Probability that each learner takes each course next, under ``sim``'s choice model.

    The choice is a mixture of softmaxes of ``utilities / temperature`` over four candidate
    sets: {home university, other universities} x {prerequisites met, all untaken}, weighted
    ``(1 - other_group_prob, other_group_prob)`` x ``(strictness, 1 - strictness)``. An
    empty set passes its weight to the others; a learner with no untaken course gets zeros.

    Args:
      sim: the simulator whose courses and configuration define the model.
      state: the learners' state (B learners).
      taken: bool [V] or [B, V] (``V = num_items + 1``), courses already taken; index 0 is
        padding and never chosen.

    Returns:
      float [B, V], or [V] when ``taken`` is 1-D and B = 1: rows sum to 1, or are all
      zero.
    """
    cfg = sim.config
    taken = np.asarray(taken, bool)
    b = len(state)
    single = taken.ndim == 1 and b == 1
    if taken.ndim not in (1, 2) or taken.shape[-1] != sim.num_items + 1:
        raise ValueError(
            f"taken has shape {taken.shape}; expected [{sim.num_items + 1}] or "
            f"[{b}, {sim.num_items + 1}] (num_items + 1, index 0 is padding)"
        )
    taken_bv = np.broadcast_to(np.atleast_2d(taken), (b, sim.num_items + 1))
    open_bv = ~taken_bv
    open_bv[:, 0] = False
    met_bv = open_bv & sim.prerequisites_met(taken_bv)
    home_bv = sim.group_v[None, :] == state.group_b[:, None]
    g, s = cfg.other_group_prob, cfg.prerequisite_strictness
    # Sets: away & open, away & met, home & open, home & met; category = 2 * home + met.
    weight_4 = np.array([g * (1 - s), g * s, (1 - g) * (1 - s), (1 - g) * s])
    rows4_b = 4 * np.arange(b, dtype=np.intp)

    logits_bv = sim.logits(state)
    np.copyto(logits_bv, -np.inf, where=~open_bv)
    top_b = logits_bv.max(axis=1)
    top_b[~np.isfinite(top_b)] = 0.0
    logits_bv -= top_b[:, None]
    e_bv = np.exp(logits_bv, out=logits_bv)  # zero where not open

    groups = [
        (np.flatnonzero(state.group_b == g), sim.group_items[g]) for g in np.unique(state.group_b)
    ]

    def split(x_bv: np.ndarray, total_b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Sums of each row over the away and the home courses."""
        home_b = np.zeros(b)
        for rows_r, cols_c in groups:
            home_b[rows_r] = x_bv[rows_r[:, None], cols_c[None, :]].sum(axis=1)
        return total_b - home_b, home_b

    open_away_b, open_home_b = split(open_bv, np.count_nonzero(open_bv, axis=1))
    met_away_b, met_home_b = split(met_bv, np.count_nonzero(met_bv, axis=1))
    e_away_b, e_home_b = split(e_bv, e_bv.sum(axis=1))
    e_met_bv = e_bv * met_bv
    em_away_b, em_home_b = split(e_met_bv, e_met_bv.sum(axis=1))
    count_b4 = np.stack([open_away_b, met_away_b, open_home_b, met_home_b], axis=1)
    total_b4 = np.stack([e_away_b, em_away_b, e_home_b, em_home_b], axis=1)
    nonempty_b4 = count_b4 > 0.5
    lost_b = (nonempty_b4 & (total_b4 < 1e-150)).any(axis=1)

    share_b4 = weight_4 * nonempty_b4
    share_b4 /= np.maximum(share_b4.sum(axis=1, keepdims=True), 1e-300)
    coef_b4 = share_b4 / np.where(total_b4 > 0, total_b4, 1.0)
    coef_b4[:, 1] += coef_b4[:, 0]  # a course with its prerequisites met is in both sets
    coef_b4[:, 3] += coef_b4[:, 2]
    # Flat index of (learner, category) with category = 2 * home + met.
    category_bv = home_bv.view(np.int8) * np.int8(2)
    category_bv += met_bv.view(np.int8)
    index_bv = rows4_b[:, None] + category_bv
    probs_bv = e_bv
    probs_bv *= np.take(coef_b4.ravel(), index_bv)
    if lost_b.any():  # a whole set (nearly) underflowed: redo those rows exactly
        lost = np.flatnonzero(lost_b)
        sets = (~home_bv & open_bv, ~home_bv & met_bv, home_bv & open_bv, home_bv & met_bv)
        probs_bv[lost] = _mixture(sim.logits(state.take(lost)), [m[lost] for m in sets], weight_4)
    return probs_bv[0] if single else probs_bv


def path_log_probability(sim: LearnerSimulator, state: LearnerState, path: Sequence[int]) -> float:
    """Log-probability that one learner (B = 1) takes the courses of ``path`` in order.

    Each step is scored by :func:`choice_probabilities` given the courses before it, and the
    learner's state advances as in a simulation. A step with probability 0 (for example, a
    course taken twice) gives ``-inf``; an empty path gives 0.
    """
    taken_v = np.zeros(sim.num_items + 1, bool)
    total = 0.0
    for item in path:
        p = float(choice_probabilities(sim, state, taken_v)[int(item)])
        if p <= 0:
            return float("-inf")
        total += float(np.log(p))
        taken_v[int(item)] = True
        state = sim.advance(state, np.array([item]))
    return total


def _mixture(logits_rv: np.ndarray, sets: Sequence[np.ndarray], weights: np.ndarray) -> np.ndarray:
    """Mixture of softmaxes of ``logits_rv`` over boolean masks ``sets`` (slow, exact)."""
    probs_rv = np.zeros(logits_rv.shape)
    weight_r = np.zeros(logits_rv.shape[0])
    for w, mask_rv in zip(weights, sets, strict=True):
        nonempty_r = mask_rv.any(axis=1)
        if w <= 0 or not nonempty_r.any():
            continue
        masked_rv = np.where(mask_rv, logits_rv, -np.inf)
        top_r = np.where(nonempty_r, masked_rv.max(axis=1), 0.0)
        e_rv = np.exp(masked_rv - top_r[:, None])
        total_r = e_rv.sum(axis=1)
        probs_rv += e_rv * (w * nonempty_r / np.where(total_r > 0, total_r, 1.0))[:, None]
        weight_r += w * nonempty_r
    return probs_rv / np.where(weight_r > 0, weight_r, 1.0)[:, None]
