"""The ``rectk`` command line. Errors in the user's input are one paragraph, not a traceback.

Run as ``rectk`` or ``python -m rectk.cli``, it first takes the current folder off the module
search path, so that a recipe's ``plugins = ["name"]`` never imports a file lying in the
folder the command was started from (``docs/trust.md``).
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import sys
from pathlib import Path


def _parser() -> argparse.ArgumentParser:
    from rectk import __version__

    p = argparse.ArgumentParser(prog="rectk", description="Recommender toolkit on JAX.")
    p.add_argument("--version", action="version", version=f"rectk {__version__}")
    p.add_argument(
        "--cpu-devices",
        type=int,
        default=0,
        metavar="N",
        help="split the CPU into N XLA devices (data-parallel); 0 = one device on all cores, "
        "the fastest on a CPU (XLA_FLAGS set by hand wins)",
    )
    sub = p.add_subparsers(dest="command", required=True)

    for name, help_ in (
        ("run", "train, evaluate on the test split, and show recommendations"),
        ("train", "train and evaluate, without showing recommendations"),
    ):
        r = sub.add_parser(name, help=help_)
        r.add_argument("recipe", help="recipe TOML file")
        r.add_argument(
            "--set",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="override a recipe key, e.g. --set train.steps=100 (repeatable)",
        )
        r.add_argument(
            "--progress",
            action=argparse.BooleanOptionalAction,
            default=None,
            help="show a progress bar (default: only when the output is a terminal)",
        )
        r.add_argument(
            "--distributed",
            action="store_true",
            help="one of many processes on JAX's distributed runtime (docs/distributed.md): "
            "settings detected on clusters JAX knows (Slurm, Open MPI, TPU), else the three "
            "options below",
        )
        r.add_argument(
            "--coordinator", metavar="HOST:PORT", help="process 0's address (with --distributed)"
        )
        r.add_argument(
            "--num-processes", type=int, metavar="N", help="how many processes (with --distributed)"
        )
        r.add_argument(
            "--process-id",
            type=int,
            metavar="I",
            help="this process, 0 to N-1 (with --distributed)",
        )

    e = sub.add_parser("evaluate", help="print a finished run's validation and test metrics")
    e.add_argument("--run", required=True, help="run directory, e.g. runs/quickstart")
    e.add_argument("--json", action="store_true", help="print the run's results.json")

    rec = sub.add_parser(
        "recommend", help="top-k items for a learner (or a file of learners) of a finished run"
    )
    rec.add_argument("--run", required=True, help="run directory, e.g. runs/quickstart")
    who = rec.add_mutually_exclusive_group(required=True)
    who.add_argument("--user", help="a learner id of the run's data")
    who.add_argument("--history", help="comma-separated item ids of a (new) learner")
    who.add_argument(
        "--users",
        metavar="FILE",
        help="many learners: a file of learner ids (one a line, or a CSV with a user_id "
        "column); their lists go to --out",
    )
    rec.add_argument("--k", type=int, default=10, help="how many items to list (default 10)")
    rec.add_argument("--json", action="store_true", help="print JSON instead of a table")
    rec.add_argument(
        "--out",
        metavar="FILE",
        help="with --users: the table written, .parquet or .csv (columns learner, rank, item, "
        "title, score)",
    )
    rec.add_argument(
        "--batch-size",
        type=int,
        default=256,
        help="with --users: learners scored at a time (default 256)",
    )
    rec.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="with --users: show a progress bar (default: only when the output is a terminal)",
    )
    rec.add_argument(
        "--chain",
        default=None,
        help="the reranker chain (a name in the recipe's rerank.chains) that makes the final "
        "list; 'none' = the model's own ranking (default: the recipe's rerank.use)",
    )
    rec.add_argument(
        "--explain",
        action="store_true",
        help="for each item, the history items that most raise its score (leave-one-out "
        "occlusion), their weights and a sentence (docs/explanations.md)",
    )

    sw = sub.add_parser(
        "sweep",
        help="trace a reranker chain's trade-off: one parameter over values, as a table (CSV, "
        "JSON) and a frontier plot (PNG) in the run directory",
    )
    sw.add_argument("--run", required=True, help="run directory, e.g. runs/quickstart_rerank")
    sw.add_argument("--chain", required=True, help="a chain of the recipe's rerank.chains")
    sw.add_argument(
        "--param", required=True, help="STAGE.FIELD, e.g. mmr.lambda_ (or 0.lambda_: by position)"
    )
    sw.add_argument(
        "--values",
        default="0,0.25,0.5,0.75,1",
        help="comma-separated values (default 0,0.25,0.5,0.75,1)",
    )
    sw.add_argument(
        "--split",
        choices=("valid", "test"),
        default="valid",
        help="the learners measured (default valid: choose a setting without the test split)",
    )
    sw.add_argument("--json", action="store_true", help="print the table as JSON")

    pn = sub.add_parser(
        "plan", help="a learning path to goal items, prerequisites first, ordered by the model"
    )
    pn.add_argument("--run", required=True, help="run directory, e.g. runs/quickstart")
    who = pn.add_mutually_exclusive_group(required=True)
    who.add_argument("--user", help="a learner id of the run's data")
    who.add_argument("--history", help="comma-separated item ids of a (new) learner")
    pn.add_argument("--goal", required=True, help="comma-separated goal item ids")
    pn.add_argument("--max-len", type=int, default=None, help="longest path allowed")
    pn.add_argument(
        "--planner", default="beam", help="a registered planner (default beam; rectk plugins)"
    )
    pn.add_argument("--json", action="store_true", help="print JSON instead of a table")

    rs = sub.add_parser(
        "resources",
        help="LectureBank lecture resources for bundled courses, a topic or a text "
        "(nearest by the text tower; docs/resources.md)",
    )
    rs.add_argument("lecturebank", help="the LectureBank folder (not bundled: pass its path)")
    what = rs.add_mutually_exclusive_group(required=True)
    what.add_argument(
        "--course", help="comma-separated course ids of the bundled catalogue (several: a history)"
    )
    what.add_argument("--topic", help="a topic, e.g. 'Parsing' (a taxonomy name or any text)")
    what.add_argument("--text", help="any text, e.g. a course description")
    rs.add_argument("--k", type=int, default=10, help="how many resources (default 10)")
    rs.add_argument("--json", action="store_true", help="print JSON instead of a table")

    from rectk.serving import cli as serving_cli

    serving_cli.add_parsers(sub)

    asm = sub.add_parser(
        "assess",
        help="a knowledge-tracing run's per-concept mastery of a learner (table and PNG chart) "
        "and its calibration on held-out answers (reliability diagram, ECE)",
    )
    asm.add_argument("--run", required=True, help="a knowledge-tracing run directory")
    asm.add_argument("--user", help="a learner id of the run's data: mastery per concept")
    asm.add_argument(
        "--calibration",
        action="store_true",
        help="the calibration of the run's predictions on its test learners' answers",
    )
    asm.add_argument("--bins", type=int, default=10, help="reliability bins (default 10)")
    asm.add_argument("--out", help="the folder for the PNG charts (default: the run directory)")
    asm.add_argument("--json", action="store_true", help="print JSON instead of tables")

    pl = sub.add_parser("plugins", help="list registered plugins and those that failed to import")
    pl.add_argument("--json", action="store_true", help="print JSON instead of a listing")
    return p


def format_metrics(scores: dict[str, dict[str, float]]) -> str:
    """A table: one row per scorer or chain, one column per metric ("-" where it has none).

    >>> print(format_metrics({"model": {"ndcg@10": 0.5}, "mmr": {"ndcg@10": 0.25, "ild@10": 1.0}}))
               ndcg@10     ild@10
    model       0.5000          -
    mmr         0.2500     1.0000
    """
    cols = list(dict.fromkeys(c for vals in scores.values() for c in vals))
    widths = [max(11, len(c) + 2) for c in cols]
    first = max(len(n) for n in scores) + 2
    lines = ["".ljust(first) + "".join(c.rjust(w) for c, w in zip(cols, widths, strict=True))]
    for name, vals in scores.items():
        cells = (
            (f"{vals[c]:.4f}" if c in vals else "-").rjust(w)
            for c, w in zip(cols, widths, strict=True)
        )
        lines.append(name.ljust(first) + "".join(cells))
    return "\n".join(lines)


def _cmd_run(args, show_recs: bool) -> None:
    import jax

    from rectk import recipe as recipe_lib
    from rectk.predict import load_run, recommend
    from rectk.rundir import RunDir

    _start_distributed(args)
    recipe = recipe_lib.load(args.recipe, args.set)
    cfg = recipe.config
    progress = args.progress
    if progress is None:  # a bar's frames would clutter a log file
        progress = sys.stdout.isatty() and sys.stderr.isatty()
    primary = jax.process_index() == 0  # only process 0 of a multi-host run prints
    if primary:
        print(f"recipe {args.recipe} (hash {recipe.hash})")
    summary = cfg.task.run(recipe, progress=progress)
    if not primary:
        return
    sec = summary["seconds"]
    if summary["stopped"] == "early_stopping":
        why = "early stopping"
    else:
        why = "reached train.steps" if cfg.train.steps else "reached train.epochs"
    print(
        f"\ntrained {summary['last_step']} steps ({why}); best validation "
        f"{cfg.monitor} at step {summary['best_step']}; {sec['total']:.1f} s in all"
    )
    what = summary.get("test_note") or (
        f"{summary['test_targets']} learners, full ranking over all items, "
        f"seen items {'masked' if cfg.eval.mask_seen else 'not masked'}"
    )
    print(f"\ntest metrics ({what}):")
    print(format_metrics(summary["test"]))
    if summary.get("new_items"):
        print(
            f"\nnew items ({summary['held_out_items']} held out of training entirely; "
            f"{summary['new_item_targets']} learners, ranked among the new items only):"
        )
        print(format_metrics(summary["new_items"]))
    if summary.get("rerank"):
        print(_rerank_heading(cfg.rerank.k, cfg.rerank.candidates, summary["test_targets"]))
        print(format_metrics(summary["rerank"]))
    if show_recs and cfg.task.recommends and jax.process_count() > 1:
        print(f"\nrecommendations: rectk recommend --run {RunDir.of(cfg).path} --user ...")
    elif show_recs and cfg.task.recommends and cfg.recommend.show_users > 0:
        loaded = load_run(RunDir.of(cfg).path)
        through = f" (through reranker chain {cfg.rerank.use!r})" if cfg.rerank.use else ""
        print(f"\ntop-{cfg.recommend.k} recommendations{through}:")
        for user in loaded.vocab["user_ids"][: cfg.recommend.show_users]:
            recs = recommend(loaded, user=user, k=cfg.recommend.k)
            hist = loaded.history.row(loaded.learner(user))
            last = [loaded.vocab["item_ids"][i - 1] for i in hist[-3:]]
            print(f"  learner {user} (last taken: {', '.join(last)}):")
            for n, r in enumerate(recs, 1):
                print(f"    {n:2d}. {r['item']:<20} {r['score']:8.3f}  {r['title'][:60]}")
    print(f"\nrun directory: {RunDir.of(cfg).path}")


def _start_distributed(args) -> None:
    """Joins JAX's distributed runtime for ``--distributed``: from ``--coordinator``,
    ``--num-processes`` and ``--process-id`` (all three or none: then JAX detects them)."""
    from rectk.errors import RectkError

    given = {
        "--coordinator": args.coordinator,
        "--num-processes": args.num_processes,
        "--process-id": args.process_id,
    }
    named = [k for k, v in given.items() if v is not None]
    if not args.distributed:
        if named:
            raise RectkError(f"{', '.join(named)}: only with --distributed")
        return
    if named and len(named) < len(given):
        missing = [k for k in given if k not in named]
        raise RectkError(
            f"--distributed with {', '.join(named)} needs {', '.join(missing)} too (give all "
            "three, or none to let JAX detect them on Slurm, Open MPI or TPU)"
        )
    if named:
        n, i = args.num_processes, args.process_id
        if n < 1 or not 0 <= i < n:
            raise RectkError(f"--process-id {i} must lie in 0..{n - 1} (--num-processes {n})")
        host, _, port = args.coordinator.rpartition(":")
        if not host or not port.isdigit():
            raise RectkError(f"--coordinator {args.coordinator!r} must be HOST:PORT")
    import jax

    try:
        jax.distributed.initialize(args.coordinator, args.num_processes, args.process_id)
    except (ValueError, RuntimeError) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:300]
        raise RectkError(
            f"--distributed: cannot join JAX's distributed runtime ({first}); outside a "
            "cluster JAX detects, give --coordinator, --num-processes and --process-id"
        ) from None


def _cmd_evaluate(args) -> None:
    from rectk.rundir import RunDir

    rd = RunDir(args.run)
    rd.record()
    results = rd.read_json("results.json")
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"validation (the model at its best step, {results['best_step']}):")
    print(format_metrics({"model": results["valid"]}))
    print(f"\ntest ({results.get('test_note') or str(results['test_targets']) + ' targets'}):")
    print(format_metrics(results["test"]))
    if results.get("new_items"):
        print(f"\nnew items ({results['new_item_targets']} targets):")
        print(format_metrics(results["new_items"]))
    if results.get("rerank"):
        lists = results["rerank_lists"]
        print(_rerank_heading(lists["k"], lists["candidates"], results["test_targets"]))
        print(format_metrics(results["rerank"]))


def _rerank_heading(k: int, candidates: int, targets: int) -> str:
    return (
        f"\nreranker chains ({targets} test learners; final lists of {k} from the model's "
        f"top {candidates} unseen items; accuracy and beyond-accuracy metrics at {k}):"
    )


def _check_request(args) -> None:
    """Refuses ``--k`` below 1 and an unknown ``--user`` or ``--history`` item from the run's
    record and vocabulary alone, before the model is rebuilt and restored."""
    from rectk.errors import RectkError
    from rectk.rundir import RunDir

    if args.k < 1:
        raise RectkError(f"--k must be at least 1, got {args.k}")
    rd = RunDir(args.run)
    rd.record()
    vocab, _ = rd.load_vocab()
    if args.user is not None and args.user not in vocab["user_ids"]:
        raise RectkError(
            f"unknown learner {args.user!r}: not in the data of {rd.path} "
            "(use --history c1,c2,... for a new learner)"
        )
    items = set(vocab["item_ids"])
    history = [h.strip() for h in (args.history or "").split(",") if h.strip()]
    unknown = [h for h in history if h not in items]
    if unknown:
        raise RectkError(f"--history: unknown item id(s) {', '.join(unknown)}")


def _cmd_recommend(args) -> None:
    from rectk.errors import RectkError
    from rectk.predict import load_run, recommend

    if args.users is not None:
        _recommend_users(args)
        return
    if args.out is not None:
        raise RectkError("--out goes with --users FILE (many learners' lists in a table)")
    _check_request(args)  # before the model is loaded: a typo costs no restore
    loaded = load_run(args.run)
    if loaded.notice:
        print(f"rectk: note: {loaded.notice}", file=sys.stderr)
    history = None
    if args.history is not None:
        history = [h.strip() for h in args.history.split(",") if h.strip()]
    recs = recommend(
        loaded, user=args.user, history=history, k=args.k, chain=args.chain, explain=args.explain
    )
    if args.json:
        print(json.dumps(recs, indent=2))
        return
    for n, r in enumerate(recs, 1):
        print(f"{n:2d}. {r['item']:<20} {r['score']:8.3f}  {r['title']}")
        if args.explain:
            print(f"    {r['sentence']}")
            weights = "   ".join(f"{b['item']} {b['weight']:+.3f}" for b in r["because"])
            print(f"    weights: {weights or '(no history item raises it on its own)'}")
            if "similar" in r:
                s = r["similar"]
                print(
                    f"    most similar course you took (by text): {s['title'] or s['item']} "
                    f"(cosine {s['cosine']:.2f})"
                )


def _recommend_users(args) -> None:
    """``rectk recommend --users FILE --out TABLE``: every listed learner's top k, scored in
    batches, written whole or not at all; unknown learners are refused before the model is
    loaded, and nothing is written."""
    from rectk import api
    from rectk.data.readers import read_ids
    from rectk.errors import RectkError
    from rectk.rundir import RunDir

    if args.out is None:
        raise RectkError("--users needs --out FILE (.parquet or .csv): the table of lists")
    if args.explain or args.json:
        raise RectkError("--explain and --json take one learner (--user or --history)")
    if args.batch_size < 1:
        raise RectkError(f"--batch-size must be at least 1, got {args.batch_size}")
    out = api.check_table_path(args.out)
    _check_request(args)
    users = read_ids(args.users, "learner file")
    known = set(RunDir(args.run).load_vocab()[0]["user_ids"])
    unknown = list(dict.fromkeys(u for u in users if u not in known))
    if unknown:
        shown = ", ".join(map(repr, unknown[:5])) + (", ..." if len(unknown) > 5 else "")
        raise RectkError(
            f"{args.users}: {len(unknown)} unknown learner(s), not in the data of {args.run}: "
            f"{shown}; nothing written"
        )
    run = api.open_run(args.run)
    if run.loaded.notice:
        print(f"rectk: note: {run.loaded.notice}", file=sys.stderr)
    progress = sys.stderr.isatty() if args.progress is None else args.progress
    frame = run.recommend(
        users, k=args.k, chain=args.chain, batch_size=args.batch_size, progress=progress
    )
    api.write_table(frame, out)
    print(f"{len(users)} learners, {len(frame)} rows: {out}")


def _cmd_plan(args) -> None:
    from rectk import registry
    from rectk.plan import plan_for_run
    from rectk.predict import load_run

    planner = registry.planners.get(args.planner)()  # before the model is loaded
    loaded = load_run(args.run)
    if loaded.notice:
        print(f"rectk: note: {loaded.notice}", file=sys.stderr)

    def ids(text: str | None) -> list[str] | None:
        return None if text is None else [h.strip() for h in text.split(",") if h.strip()]

    out = plan_for_run(
        loaded,
        goal=ids(args.goal) or [],
        user=args.user,
        history=ids(args.history),
        max_len=args.max_len,
        planner=planner,
    )
    if args.json:
        print(json.dumps({**out, "planner": args.planner}, indent=2))
        return
    exact = ", exact" if out["exact"] else ""
    print(
        f"{len(out['path'])} step(s) to {', '.join(out['goal'])} (planner {args.planner}{exact}; "
        f"model log-probability {out['log_prob']:.2f})"
    )
    if out["already_taken"]:
        print(f"already taken: {', '.join(out['already_taken'])}")
    for n, step in enumerate(out["path"], 1):
        print(f"{n:2d}. {step['item']:<20} {step['log_prob']:7.2f}  {step['title']}")


def _cmd_sweep(args) -> None:
    from rectk.errors import RectkError
    from rectk.predict import load_run
    from rectk.rerank.sweep import sweep, write_sweep
    from rectk.rundir import RunDir
    from rectk.setup import prepare

    try:
        values = [float(v) for v in args.values.split(",") if v.strip()]
    except ValueError:
        raise RectkError(
            f"--values {args.values!r}: expected numbers separated by commas"
        ) from None
    run = load_run(args.run)
    data, sp = prepare(run.cfg)
    recorded = RunDir(args.run).record().get("data_fingerprint")
    if recorded and data.interactions.fingerprint() != recorded:
        raise RectkError(
            f"the data of {args.run} has changed since it was trained (version "
            f"{data.interactions.fingerprint()}, trained on {recorded}): a sweep needs the "
            "same learners"
        )
    rows = sweep(run, getattr(sp, args.split), args.chain, args.param, values)
    accuracy = f"ndcg@{run.cfg.rerank.k}"
    stem = f"{args.chain}-{args.param.replace('.', '-')}-{args.split}"
    paths = write_sweep(Path(args.run) / "sweeps", stem, rows, param=args.param, accuracy=accuracy)
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    named = {
        ("model alone" if r["value"] is None else f"{args.param}={r['value']:g}"): {
            k: v for k, v in r.items() if k not in ("chain", "value")
        }
        for r in rows
    }
    print(
        f"chain {args.chain!r} on the {args.split} split ({len(getattr(sp, args.split))} learners):"
    )
    print(format_metrics(named))
    print("\nwritten: " + ", ".join(str(p) for p in paths))


def _cmd_resources(args) -> None:
    from rectk_plugins.datasets.course_resources import recommend_resources

    courses = [c.strip() for c in (args.course or "").split(",") if c.strip()]
    recs = recommend_resources(
        args.lecturebank, courses=courses, topic=args.topic or "", text=args.text or "", k=args.k
    )
    if args.json:
        print(json.dumps(recs, indent=2))
        return
    for n, r in enumerate(recs, 1):
        print(f"{n:2d}. {r['id']:<10} {r['score']:6.3f}  {r['title'][:60]:<60}  [{r['topic']}]")


def _cmd_assess(args) -> None:
    from rectk.errors import RectkError

    if args.user is None and not args.calibration:
        raise RectkError("rectk assess needs --user U, --calibration or both")
    if args.bins < 1:
        raise RectkError(f"--bins must be at least 1, got {args.bins}")
    from rectk.kt import assess
    from rectk.kt.predict import load_kt_run

    run = load_kt_run(args.run)
    out = Path(args.out) if args.out else Path(args.run)
    report: dict = {}
    if args.user is not None:
        q, r = run.learner(args.user)
        rows = assess.concept_mastery(run, q, r)
        safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in str(args.user))
        title = f"learner {args.user}: mastery (grey: never answered)"
        chart = assess.mastery_chart(rows, out / f"mastery_{safe}.png", title=title)
        report["mastery"] = {"user": args.user, "answers": len(q), "chart": str(chart)}
        report["mastery"]["concepts"] = rows
    if args.calibration:
        cal = assess.calibration(run, bins=args.bins)
        cal["chart"] = str(assess.reliability_chart(cal, out / "calibration.png"))
        report["calibration"] = cal
    if args.json:
        print(json.dumps(report, indent=2))
        return
    if "mastery" in report:
        m = report["mastery"]
        print(f"learner {m['user']}: {m['answers']} answers; mastery per concept, weakest first")
        print(assess.format_mastery(m["concepts"]))
        print(f"chart: {m['chart']}")
    if "calibration" in report:
        c = report["calibration"]
        print(
            f"calibration on {c['answers']} held-out answers of {c['learners']} test learners: "
            f"ECE {c['ece']:.4f}, AUC {c['auc']:.4f}"
        )
        print(f"{'bin':<12}{'answers':>9}{'mean P':>9}{'right':>9}")
        for i in range(c["bins"]):
            mp, acc = c["mean_prob"][i], c["accuracy"][i]
            cells = "-".rjust(9) * 2 if mp is None else f"{mp:>9.3f}{acc:>9.3f}"
            span = f"{i / c['bins']:.2f}-{(i + 1) / c['bins']:.2f}"
            print(f"{span:<12}{c['count'][i]:>9d}{cells}")
        print(f"reliability diagram: {c['chart']}")


def _cmd_plugins(args) -> int:
    """Lists the registered plugins; exit status 1 when a plugin module failed to import (a
    script or CI job can test for it), after listing everything."""
    from rectk import registry

    listing = {kind: {n: reg.origin(n) for n in reg.names()} for kind, reg in registry.ALL.items()}
    failed = registry.failed_plugins()
    if args.json:
        print(json.dumps({"registered": listing, "failed": failed}, indent=2))
        return 1 if failed else 0
    for kind, entries in listing.items():
        print(f"{kind}:")
        for name, origin in entries.items():
            print(f"  {name:<22} {origin}")
        if not entries:
            print("  (none)")
    print("failed to import:")
    for mod, err in failed.items():
        print(f"  {mod}: {err}")
    if not failed:
        print("  (none)")
        return 0
    print(f"rectk: {len(failed)} plugin module(s) failed to import (listed above)", file=sys.stderr)
    return 1


def _drop_implicit_cwd() -> None:
    """Removes the entry Python puts first on ``sys.path`` for ``python -m`` and ``-c`` (the
    current folder, or ``""``); entries the user set (``PYTHONPATH``) stay."""
    if sys.path and (sys.path[0] == "" or os.path.realpath(sys.path[0]) == os.path.realpath(".")):
        del sys.path[0]


_OS_REMEDY = {
    errno.EACCES: "check the permissions of the file and of its folders",
    errno.EPERM: "check the permissions of the file and of its folders",
    errno.EROFS: "the file system is read-only: write elsewhere (e.g. --set run_dir=PATH)",
    errno.ENOSPC: "the disk is full: free space, or write elsewhere (--set run_dir=PATH)",
    errno.EDQUOT: "the disk quota is used up: free space, or write elsewhere",
    errno.ENOENT: "check the path",
    errno.EISDIR: "name a file, not a folder",
}


def _os_error_message(err: OSError | UnicodeDecodeError | json.JSONDecodeError, args) -> str:
    """One paragraph for a file the command could not read or write."""
    run = vars(args).get("run")  # evaluate and recommend read a run directory
    where = f" in the run directory {run}" if run else ""
    if isinstance(err, UnicodeDecodeError):
        return (
            f"a file{where} is not UTF-8 text ({err.reason} at byte {err.start}); "
            "rectk reads and writes its files as UTF-8: re-save or regenerate the file"
        )
    if isinstance(err, json.JSONDecodeError):
        return (
            f"a JSON file{where} is damaged ({err.msg}, line {err.lineno} column {err.colno}); "
            "a run directory's files are written by rectk: restore the file, or rerun"
        )
    name = err.filename if err.filename is not None else "a file"
    text = err.strerror or str(err) or type(err).__name__
    remedy = _OS_REMEDY.get(err.errno or 0)
    return f"{name}: {text}{'; ' + remedy if remedy else ''}"


def main(argv: list[str] | None = None) -> int:
    if argv is None:  # run as a command, not called from Python
        _drop_implicit_cwd()
    args = _parser().parse_args(argv)
    from rectk.sharding import set_cpu_devices

    set_cpu_devices(args.cpu_devices)  # before JAX initialises its backends
    from rectk.errors import RectkError

    try:
        if args.command in ("run", "train"):
            _cmd_run(args, show_recs=args.command == "run")
        elif args.command == "evaluate":
            _cmd_evaluate(args)
        elif args.command == "recommend":
            _cmd_recommend(args)
        elif args.command == "sweep":
            _cmd_sweep(args)
        elif args.command == "plan":
            _cmd_plan(args)
        elif args.command == "resources":
            _cmd_resources(args)
        elif args.command == "assess":
            _cmd_assess(args)
        elif args.command == "plugins":
            return _cmd_plugins(args)
        elif args.command in ("export", "serve"):
            from rectk.serving import cli as serving_cli

            serving_cli.run(args)
    except RectkError as err:
        print(f"rectk: error: {err}", file=sys.stderr)
        return 2
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        # Files that cannot be read or written (permissions, a read-only or full disk) or are
        # damaged: the user's to fix, so one paragraph; any other exception is a bug and keeps
        # its traceback.
        print(f"rectk: error: {_os_error_message(err, args)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("rectk: interrupted; checkpoints already written are kept", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
