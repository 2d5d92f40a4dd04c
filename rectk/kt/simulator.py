"""A closed-loop simulated learner for exercise recommendation, and the learning gain of
exercise-picking policies.

The simulated learner is BKT-style (Corbett & Anderson 1995), with mastery continuous:

- each concept c has a mastery ``m_c`` in [0, 1];
- answering question q of concept c is right with probability ``p = guess + (1 - guess -
  slip) * sigmoid(sharpness * (m_c - d_q))``, ``d_q`` the question's difficulty;
- practising q raises the mastery of its concept, ``m_c += rate * bump(p) * (1 - m_c)``, with
  ``bump(p) = exp(-((p - sweet) / width)^2 / 2)``: exercises the learner is likely but not
  certain to get right teach most, too easy or too hard ones little (the assumption behind
  the 85% rule, Wilson et al. 2019, made the environment's law here).

``SimulatedLearners.from_run`` calibrates the question difficulties to a knowledge-tracing
run's data (each question's share of right answers), so that the simulated class, over its
start states, answers each of the run's questions right as often as the real learners did. A start state draws an ability
``theta ~ N(0, ability_sd)`` and per-concept offsets ``N(0, concept_sd)``: ``m_c =
sigmoid(theta + offset_c)``; a placement test of ``warmup`` random questions (answered, no
learning) gives the policies their first evidence. Every random choice is seeded.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

import numpy as np

from rectk.kt.exercise import BAND, select_exercises
from rectk.kt.predict import KTRun

# policy(questions, responses, open_q, rng) -> a dense question id: the next exercise, among
# the open ones (``open_q[q - 1]``), after the answers so far.
Policy = Callable[[np.ndarray, np.ndarray, np.ndarray, np.random.Generator], int]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


@dataclasses.dataclass(frozen=True, kw_only=True)
class SimulatedLearners:
    """The environment: questions, their concepts and difficulties, and the learning law.

    Attributes:
      concept_of: int ``[Q + 1]`` each question's concept (dense ``1..C``).
      difficulty: float ``[Q + 1]`` each question's difficulty, in mastery units.
      right_rate: float ``[Q + 1]`` each question's share of right answers in the data (what
        easiest- and hardest-first order by).
      num_concepts: C.
      guess, slip: BKT's guess and slip probabilities.
      sharpness: how steeply success rises with mastery above difficulty.
      rate: the most mastery one exercise adds (a share of what is left to learn).
      sweet, width: the centre and width of the learning bump over the success probability.
      ability_sd, concept_sd: the spread of start states (learner ability, concept offsets).
    """

    concept_of: np.ndarray
    difficulty: np.ndarray
    right_rate: np.ndarray
    num_concepts: int
    guess: float = 0.1
    slip: float = 0.1
    sharpness: float = 8.0
    rate: float = 0.3
    sweet: float = 0.775
    width: float = 0.1
    ability_sd: float = 0.8
    concept_sd: float = 0.6

    @classmethod
    def from_run(cls, run: KTRun, *, prior: float = 5.0, **law: float) -> SimulatedLearners:
        """Difficulties from the run's answers: simulated learners drawn from ``start``
        answer question q right, on average, as often as the data's learners did (its share
        of right answers, shrunk towards its concept's with ``prior`` pseudo-answers)."""
        return cls.from_answers(
            run.question, run.response, run.concept_of, len(run.concept_ids), prior=prior, **law
        )

    @classmethod
    def from_answers(
        cls,
        question: np.ndarray,
        response: np.ndarray,
        concept_of: np.ndarray,
        num_concepts: int,
        *,
        prior: float = 5.0,
        **law: float,
    ) -> SimulatedLearners:
        """As ``from_run``, from answers (dense question ids, 0/1) and each question's concept."""
        nq = len(concept_of)
        q = np.asarray(question, np.int64)
        r = np.asarray(response, np.float64)
        n_q = np.bincount(q, minlength=nq)
        right_q = np.bincount(q, r, minlength=nq)
        c_q = concept_of[q]
        nc = num_concepts + 1
        overall = r.mean() if len(r) else 0.5
        rate_c = (np.bincount(c_q, r, minlength=nc) + prior * overall) / (
            np.bincount(c_q, minlength=nc) + prior
        )
        rate_q = (right_q + prior * rate_c[concept_of]) / (n_q + prior)
        env = cls(
            concept_of=np.asarray(concept_of, np.int64),
            difficulty=np.zeros(nq),
            right_rate=rate_q,
            num_concepts=num_concepts,
            **law,
        )
        return dataclasses.replace(env, difficulty=env._calibrated(rate_q))

    def _calibrated(self, rate_q: np.ndarray, iters: int = 50) -> np.ndarray:
        """Difficulties at which the start states' mean success is ``rate_q`` (bisection per
        question over a quantile grid of the start mastery ``sigmoid(N(0, sd))``)."""
        from scipy.stats import norm

        sd = float(np.hypot(self.ability_sd, self.concept_sd))
        m_g = _sigmoid(sd * norm.ppf((np.arange(64) + 0.5) / 64))  # [G] start masteries
        span = 1.0 - self.guess - self.slip
        target = np.clip(rate_q, self.guess + 0.01 * span, 1.0 - self.slip - 0.01 * span)
        lo, hi = np.full(len(rate_q), -2.0), np.full(len(rate_q), 3.0)
        for _ in range(iters):  # mean success falls as the difficulty rises
            d = 0.5 * (lo + hi)
            mean = (self.guess + span * _sigmoid(self.sharpness * (m_g - d[:, None]))).mean(1)
            lo, hi = np.where(mean > target, d, lo), np.where(mean > target, hi, d)
        return 0.5 * (lo + hi)

    @property
    def num_questions(self) -> int:
        return len(self.concept_of) - 1

    def success(self, mastery_c: np.ndarray, q: np.ndarray | int) -> np.ndarray:
        """The true probability of answering question(s) ``q`` right at mastery ``[C + 1]``."""
        m = mastery_c[self.concept_of[q]]
        z = _sigmoid(self.sharpness * (m - self.difficulty[q]))
        return self.guess + (1.0 - self.guess - self.slip) * z

    def practise(self, mastery_c: np.ndarray, q: int) -> np.ndarray:
        """Mastery after practising question ``q`` (only its concept moves)."""
        p = float(self.success(mastery_c, q))
        c = self.concept_of[q]
        bump = np.exp(-0.5 * ((p - self.sweet) / self.width) ** 2)
        out = mastery_c.copy()
        out[c] += self.rate * bump * (1.0 - out[c])
        return out

    def start(self, rng: np.random.Generator) -> np.ndarray:
        """A start state: mastery ``[C + 1]`` (entry 0 unused)."""
        theta = rng.normal(0.0, self.ability_sd)
        offsets = rng.normal(0.0, self.concept_sd, self.num_concepts + 1)
        m = _sigmoid(theta + offsets)
        m[0] = 0.0
        return m


# ---------------------------------------------------------------------------------------------
# Policies.
# ---------------------------------------------------------------------------------------------


def random_policy(q, r, open_q, rng) -> int:
    """A uniformly random open question."""
    del q, r
    return int(rng.choice(np.flatnonzero(open_q))) + 1


def by_rate(rate_q: np.ndarray, *, easiest: bool) -> Policy:
    """The open question with the highest (``easiest``) or lowest share of right answers in
    the data: the same order for every learner."""
    key = np.asarray(rate_q[1:], np.float64) * (1.0 if easiest else -1.0)

    def policy(q, r, open_q, rng) -> int:
        del q, r, rng
        return int(np.argmax(np.where(open_q, key, -np.inf))) + 1

    return policy


def kt_argmax(run: KTRun) -> Policy:
    """The open question the KT model predicts the learner likeliest to get right."""

    def policy(q, r, open_q, rng) -> int:
        del rng
        p = run.success(q, r)
        return int(np.argmax(np.where(open_q, p, -np.inf))) + 1

    return policy


def target_band(run: KTRun, *, band: tuple[float, float] = BAND, coverage: float = 0.3) -> Policy:
    """The ``target_difficulty`` reranker's first pick, from the KT model's predictions."""

    def policy(q, r, open_q, rng) -> int:
        del rng
        p = run.success(q, r)
        picked = select_exercises(
            p,
            run.concept_of,
            len(run.concept_ids),
            1,
            band=band,
            coverage=coverage,
            allowed_q=open_q,
        )
        return int(picked[0])

    return policy


# ---------------------------------------------------------------------------------------------
# The closed loop.
# ---------------------------------------------------------------------------------------------


def episode(
    env: SimulatedLearners,
    policy: Policy | None,
    mastery_c: np.ndarray,
    warm_q: np.ndarray,
    warm_r: np.ndarray,
    steps: int,
    rng: np.random.Generator,
) -> dict[str, float]:
    """One learner practising ``steps`` exercises chosen by ``policy`` (None: the oracle,
    the open question whose true success is nearest the environment's sweet spot), each
    question at most once; returns the learning gain (mean mastery over concepts after minus
    before), the mean true success of the exercises and their share inside the band."""
    hist_q, hist_r = list(warm_q), list(warm_r)
    open_q = np.ones(env.num_questions, bool)
    m = mastery_c.copy()
    successes = []
    for _ in range(steps):
        if policy is None:
            p_all = env.success(m, np.arange(1, env.num_questions + 1))
            q = int(np.argmin(np.where(open_q, np.abs(p_all - env.sweet), np.inf))) + 1
        else:
            q = policy(np.asarray(hist_q, np.int32), np.asarray(hist_r, np.int32), open_q, rng)
        p = float(env.success(m, q))
        hist_q.append(q)
        hist_r.append(int(rng.random() < p))
        m = env.practise(m, q)
        open_q[q - 1] = False
        successes.append(p)
    s = np.asarray(successes)
    return {
        "gain": float(m[1:].mean() - mastery_c[1:].mean()),
        "success": float(s.mean()),
        "in_band": float(((s >= BAND[0]) & (s <= BAND[1])).mean()),
    }


def simulate(
    env: SimulatedLearners,
    policies: Mapping[str, Policy | None],
    *,
    learners: int = 200,
    steps: int = 20,
    warmup: int = 30,
    seed: int = 0,
) -> dict[str, dict[str, float]]:
    """Every policy on the same ``learners`` simulated learners (the same start states,
    placement tests and answer randomness; paired): per policy the mean learning gain after
    ``steps`` exercises and its standard error, the mean paired difference to the first
    policy's gain (``vs_first``) and its standard error, the mean true success of the
    exercises and their share inside the band. A policy None is the oracle (see
    ``episode``)."""
    per: dict[str, list[dict[str, float]]] = {name: [] for name in policies}
    for i in range(learners):
        rng = np.random.default_rng([seed, i])
        m0 = env.start(rng)
        warm_q = rng.integers(1, env.num_questions + 1, warmup)
        warm_r = (rng.random(warmup) < env.success(m0, warm_q)).astype(np.int32)
        for name, policy in policies.items():
            run_rng = np.random.default_rng([seed, i, 1])  # the same for every policy
            per[name].append(episode(env, policy, m0, warm_q, warm_r, steps, run_rng))

    def se(x: np.ndarray) -> float:
        return float(x.std(ddof=1) / np.sqrt(len(x))) if len(x) > 1 else 0.0

    base = next(iter(per))
    base_gain = np.asarray([r["gain"] for r in per[base]])
    out = {}
    for name, rows in per.items():
        gain = np.asarray([r["gain"] for r in rows])
        out[name] = {
            "gain": float(gain.mean()),
            "se": se(gain),
            "vs_first": float((gain - base_gain).mean()),
            "vs_first_se": se(gain - base_gain),
            "success": float(np.mean([r["success"] for r in rows])),
            "in_band": float(np.mean([r["in_band"] for r in rows])),
        }
    return out
