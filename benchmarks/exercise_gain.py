"""Exercise recommendation in closed loop: learning gain of exercise-picking policies on
simulated learners (``rectk.kt.simulator``), the KT-driven ones reading a trained run.

    python benchmarks/exercise_gain.py --run runs/assist2009_dkt [--learners 60] [--steps 15]
        [--warmup 15] [--coverage 0.3] [--seed 0] [--law slip=0.02 ...]
        [--json results/exercise_gain.json]

The environment is ``SimulatedLearners.from_run``: the run's questions and concepts, question
difficulties from the run's answers, BKT-style mastery that grows most on exercises answered
right with probability near 0.775. Every policy practises ``--steps`` distinct questions on
the same simulated learners (same start states, same placement test of ``--warmup`` random
questions, same answer randomness). Policies: ``target_band`` (the ``target_difficulty``
reranker on the run's predictions, band 0.7 to 0.85, weight ``--coverage`` on the weakest
concepts), ``target_band_only`` (the same, coverage 0), ``kt_argmax`` (the run's likeliest
right), ``random``, ``easiest`` and ``hardest`` (by the question's share of right answers in
the data), and ``oracle`` (the true success nearest the sweet spot: a reference only a
simulator allows). Gain: mean mastery over concepts after minus before, per learner; mean and
standard error over learners.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import jax

from rectk.kt import simulator as sim
from rectk.kt.predict import load_kt_run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", required=True, help="a knowledge-tracing run directory")
    ap.add_argument("--learners", type=int, default=60)
    ap.add_argument("--steps", type=int, default=15)
    ap.add_argument("--warmup", type=int, default=15)
    ap.add_argument("--coverage", type=float, default=0.3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default="results/exercise_gain.json")
    ap.add_argument(
        "--law",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a simulator parameter (SimulatedLearners field), e.g. slip=0.02 (repeatable)",
    )
    args = ap.parse_args()
    law = {k: float(v) for k, v in (item.split("=", 1) for item in args.law)}

    t0 = time.perf_counter()
    run = load_kt_run(args.run)
    env = sim.SimulatedLearners.from_run(run, **law)
    policies: dict[str, sim.Policy | None] = {
        "random": sim.random_policy,  # first: the others' paired differences are to it
        "target_band": sim.target_band(run, coverage=args.coverage),
        "target_band_only": sim.target_band(run, coverage=0.0),
        "kt_argmax": sim.kt_argmax(run),
        "easiest": sim.by_rate(env.right_rate, easiest=True),
        "hardest": sim.by_rate(env.right_rate, easiest=False),
        "oracle": None,
    }
    table = sim.simulate(
        env,
        policies,
        learners=args.learners,
        steps=args.steps,
        warmup=args.warmup,
        seed=args.seed,
    )
    seconds = time.perf_counter() - t0

    print(
        f"{args.learners} simulated learners, {args.steps} exercises each after a "
        f"{args.warmup}-question placement test; {env.num_questions} questions, "
        f"{env.num_concepts} concepts; KT run {args.run} ({type(run.cfg.model.tracer).__name__}, "
        f"step {run.step})"
    )
    print(
        f"{'policy':<18}{'gain':>9}{'± se':>8}{'- random':>10}{'± se':>8}{'P(right)':>10}"
        f"{'in band':>9}"
    )
    for name, row in table.items():
        print(
            f"{name:<18}{row['gain']:>9.4f}{row['se']:>8.4f}{row['vs_first']:>10.4f}"
            f"{row['vs_first_se']:>8.4f}{row['success']:>10.3f}{row['in_band']:>9.2f}"
        )
    print(f"{seconds:.0f} s")
    out = {
        "run": str(args.run),
        "run_step": run.step,
        "learners": args.learners,
        "steps": args.steps,
        "warmup": args.warmup,
        "coverage": args.coverage,
        "seed": args.seed,
        "environment": {
            k: getattr(env, k)
            for k in ("guess", "slip", "sharpness", "rate", "sweet", "width", "ability_sd")
        }
        | {"concept_sd": env.concept_sd},
        "policies": table,
        "seconds": round(seconds, 1),
        "hardware": f"{platform.processor() or platform.machine()}, {jax.default_backend()}",
    }
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
