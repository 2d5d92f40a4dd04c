"""Learning paths planned by a trained model against two valid baselines, scored by the learner
simulator that made the bundled data.

For ``--learners`` simulated learners (seeded), the history is the first ``t`` courses the
simulator gave them (``t`` uniform over their sequence) and the goal one course not taken whose
prerequisite closure needs ``--min-steps``..``--max-steps`` new courses. Each planner plans a
path to it; each path is scored by the simulator's own choice model
(``choice_probabilities``, the distribution the learner's courses were drawn from): the
log-probability that this learner, in the state their history left them, takes the path's
courses in that order. Also measured: goal attainment (the path is valid and reaches the goal
within the length limit), path length and the prerequisite-violation rate (steps taken before
one of their prerequisites). ``model, unconstrained`` sorts the same courses by the model's
scores after the history alone, ignoring prerequisites: what the constraint prevents. All
planners order the same courses (the goal's closure), so they differ in order only; "gain over
random" is the paired mean difference in log-likelihood from the random valid order (with its
standard error).

    python benchmarks/plan_quality.py --run runs/quickstart --json results/plan_quality.json
"""

from __future__ import annotations

import argparse
import importlib.resources
import json
import time
from pathlib import Path

import numpy as np

from rectk.contracts import Plan, PlannerPlugin, PlanRequest
from rectk.errors import PlanError
from rectk.plan import make_request, path_problems, run_graph, run_scorer, violations
from rectk.predict import load_run
from rectk_plugins.datasets.university import (
    LearnerSimulator,
    SimulatorConfig,
    choice_probabilities,
    read_course_catalogue,
)
from rectk_plugins.planners import BeamSearch, PopularityOrder, RandomOrder


class Unconstrained(PlannerPlugin):
    """The goal's closure sorted by the model's scores after the history (no constraint)."""

    def plan(self, request: PlanRequest) -> Plan:
        scores_v = request.scorer(request.history[None])[0]
        order = sorted(request.required.tolist(), key=lambda i: -scores_v[i])
        return Plan(path=np.asarray(order, np.int64))


PLANNERS: dict[str, PlannerPlugin] = {
    "model, beam (width 64)": BeamSearch(width=64),
    "model, greedy (width 1)": BeamSearch(width=1),
    "random valid order": RandomOrder(),
    "popularity valid order": PopularityOrder(),
    "model, unconstrained": Unconstrained(),
}


def simulator_of(data_cfg) -> LearnerSimulator:
    """The simulator behind a ``university_courses`` run (the loader's own construction)."""
    config = SimulatorConfig(
        num_learners=data_cfg.num_learners,
        seed=data_cfg.seed,
        min_courses=data_cfg.min_courses,
        max_courses=data_cfg.max_courses,
    )
    folder = importlib.resources.files("rectk_plugins.datasets.university").joinpath("data")
    with (
        importlib.resources.as_file(folder.joinpath("cs_courses.csv")) as courses,
        importlib.resources.as_file(folder.joinpath("cs_edges.csv")) as edges,
    ):
        return LearnerSimulator(read_course_catalogue(courses, edges), config)


def log_likelihood(sim: LearnerSimulator, state, history: np.ndarray, path: np.ndarray) -> float:
    """log P(the learner takes ``path`` in order | their state and ``history`` taken)."""
    taken_v = np.zeros(sim.num_items + 1, bool)
    taken_v[history] = True
    total = 0.0
    for item in path.tolist():
        p = float(choice_probabilities(sim, state, taken_v)[item])
        if p <= 0:
            return float("-inf")
        total += np.log(p)
        taken_v[item] = True
        state = sim.advance(state, np.array([item]))
    return total


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", default="runs/quickstart", help="a finished university_courses run")
    p.add_argument("--learners", type=int, default=400, help="learner-goal pairs to plan")
    p.add_argument("--min-steps", type=int, default=2, help="fewest new courses a goal needs")
    p.add_argument("--max-steps", type=int, default=10, help="most new courses a goal needs")
    p.add_argument(
        "--goals",
        choices=("future", "any"),
        default="future",
        help="future: a course the learner took later in their simulated sequence; any: any "
        "course not taken",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="write the results here")
    args = p.parse_args(argv)

    run = load_run(args.run)
    if type(run.cfg.data).__name__ != "UniversityCourses":
        raise SystemExit("plan_quality needs a run of the university_courses data set")
    sim = simulator_of(run.cfg.data)
    seqs = sim.simulate()
    states0, _ = sim.initial_states()
    graph = run_graph(run)
    to_run = np.array([0, *(graph.index[c] for c in sim.catalogue.item_ids)])  # sim -> model id
    to_sim = np.argsort(to_run)  # model id -> sim id
    pop_v = run.require_side().pop_v
    scorer = run_scorer(run)
    rng = np.random.default_rng(args.seed)

    rows: dict[str, dict[str, list[float]]] = {n: {} for n in PLANNERS}
    cases = 0
    for u in rng.permutation(len(states0))[: args.learners * 3]:
        if cases == args.learners:
            break
        seq = seqs.item[seqs.user == u + 1]
        t = int(rng.integers(1, len(seq)))
        history = to_run[seq[:t]]
        pool = to_run[seq[t:]] if args.goals == "future" else np.arange(1, run.num_items + 1)
        candidates = rng.permutation(np.setdiff1d(pool, history))
        request = None
        for goal in candidates:
            try:
                req = make_request(
                    graph,
                    history=history,
                    goal=np.array([goal]),
                    scorer=scorer,
                    popularity_v=pop_v,
                    max_len=args.max_steps,
                    seed=int(rng.integers(2**31)),
                )
            except PlanError:
                continue
            if len(req.required) >= args.min_steps:
                request = req
                break
        if request is None:
            continue
        cases += 1
        state = states0.take(np.array([u]))
        for item in seq[:t]:
            state = sim.advance(state, np.array([item]))
        for name, planner in PLANNERS.items():
            start = time.perf_counter()
            try:
                plan = planner.plan(request)
                ok = not path_problems(request, plan.path)
            except PlanError:
                plan, ok = Plan(path=np.zeros(0, np.int64)), False
            seconds = time.perf_counter() - start
            reached = set(request.goal.tolist()) <= set(plan.path.tolist())
            r = rows[name]
            r.setdefault("attained", []).append(float(ok and reached))
            r.setdefault("log_lik", []).append(
                log_likelihood(sim, state, to_sim[request.history], to_sim[plan.path])
            )
            r.setdefault("length", []).append(len(plan.path))
            r.setdefault("violations", []).append(
                violations(plan.path, request.history, request.prereq_vp)
            )
            r.setdefault("exact", []).append(float(plan.exact))
            r.setdefault("seconds", []).append(seconds)

    table = {}
    for name, r in rows.items():
        log_lik = np.asarray(r["log_lik"])
        table[name] = {
            "attainment": float(np.mean(r["attained"])),
            "mean_log_likelihood": float(log_lik.mean()),
            "median_likelihood": float(np.exp(np.median(log_lik))),
            "mean_length": float(np.mean(r["length"])),
            "violation_rate": float(np.sum(r["violations"]) / max(1, np.sum(r["length"]))),
            "exact_share": float(np.mean(r["exact"])),
            "ms_per_plan": 1000 * float(np.mean(r["seconds"])),
        }
    # Paired against the random valid order on the same learner and goal: mean and standard
    # error of the difference in log-likelihood.
    base = np.asarray(rows["random valid order"]["log_lik"])
    for name, r in rows.items():
        diff = np.asarray(r["log_lik"]) - base
        table[name]["gain_over_random"] = float(diff.mean())
        table[name]["gain_over_random_se"] = float(diff.std(ddof=1) / np.sqrt(len(diff)))

    print(
        f"{cases} learner-goal pairs, {args.goals} goals needing {args.min_steps}-"
        f"{args.max_steps} new courses; run {args.run}; simulator seed {run.cfg.data.seed}; seed {args.seed}\n"
    )
    head = ("planner", "attainment", "mean log-lik", "median lik", "length", "violations",
            "gain over random", "exact", "ms/plan")  # fmt: skip
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for name, m in table.items():
        print(
            f"| {name} | {m['attainment']:.3f} | {m['mean_log_likelihood']:.2f} | "
            f"{m['median_likelihood']:.2e} | {m['mean_length']:.2f} | "
            f"{m['violation_rate']:.3f} | "
            f"{m['gain_over_random']:+.2f} ± {m['gain_over_random_se']:.2f} | "
            f"{m['exact_share']:.2f} | {m['ms_per_plan']:.1f} |"
        )
    if args.json:
        out = {
            "run": args.run,
            "pairs": cases,
            "args": vars(args),
            "planners": table,
        }
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
