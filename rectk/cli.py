"""The ``rectk`` command line. Errors in the user's input are one paragraph, not a traceback."""

from __future__ import annotations

import argparse
import json
import sys


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
            help="call jax.distributed.initialize() first (multi-host runs)",
        )

    e = sub.add_parser("evaluate", help="print a finished run's validation and test metrics")
    e.add_argument("--run", required=True, help="run directory, e.g. runs/quickstart")
    e.add_argument("--json", action="store_true", help="print the run's results.json")

    rec = sub.add_parser("recommend", help="top-k items for a learner of a finished run")
    rec.add_argument("--run", required=True, help="run directory, e.g. runs/quickstart")
    who = rec.add_mutually_exclusive_group(required=True)
    who.add_argument("--user", help="a learner id of the run's data")
    who.add_argument("--history", help="comma-separated item ids of a (new) learner")
    rec.add_argument("--k", type=int, default=10, help="how many items to list (default 10)")
    rec.add_argument("--json", action="store_true", help="print JSON instead of a table")

    pl = sub.add_parser("plugins", help="list registered plugins and those that failed to import")
    pl.add_argument("--json", action="store_true", help="print JSON instead of a listing")
    return p


def format_metrics(scores: dict[str, dict[str, float]]) -> str:
    """A table: one row per scorer, one column per metric."""
    cols = list(next(iter(scores.values())))
    width = max(len(n) for n in scores) + 2
    lines = ["".ljust(width) + "".join(c.rjust(11) for c in cols)]
    for name, vals in scores.items():
        lines.append(name.ljust(width) + "".join(f"{vals[c]:11.4f}" for c in cols))
    return "\n".join(lines)


def _cmd_run(args, show_recs: bool) -> None:
    import jax

    from rectk import recipe as recipe_lib
    from rectk.predict import load_run, recommend
    from rectk.rundir import RunDir

    if args.distributed:
        jax.distributed.initialize()
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
        f"{cfg.train.monitor} at step {summary['best_step']}; {sec['total']:.1f} s in all"
    )
    print(
        f"\ntest metrics ({summary['test_targets']} learners, full ranking over all items, "
        f"seen items {'masked' if cfg.eval.mask_seen else 'not masked'}):"
    )
    print(format_metrics(summary["test"]))
    if summary.get("new_items"):
        print(
            f"\nnew items ({summary['held_out_items']} held out of training entirely; "
            f"{summary['new_item_targets']} learners, ranked among the new items only):"
        )
        print(format_metrics(summary["new_items"]))
    if show_recs and cfg.recommend.show_users > 0:
        loaded = load_run(RunDir.of(cfg).path)
        print(f"\ntop-{cfg.recommend.k} recommendations:")
        for user in loaded.vocab["user_ids"][: cfg.recommend.show_users]:
            recs = recommend(loaded, user=user, k=cfg.recommend.k)
            hist = loaded.history.row(loaded.vocab["user_ids"].index(user) + 1)
            last = [loaded.vocab["item_ids"][i - 1] for i in hist[-3:]]
            print(f"  learner {user} (last taken: {', '.join(last)}):")
            for n, r in enumerate(recs, 1):
                print(f"    {n:2d}. {r['item']:<20} {r['score']:8.3f}  {r['title'][:60]}")
    print(f"\nrun directory: {RunDir.of(cfg).path}")


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
    print(f"\ntest ({results['test_targets']} targets):")
    print(format_metrics(results["test"]))
    if results.get("new_items"):
        print(f"\nnew items ({results['new_item_targets']} targets):")
        print(format_metrics(results["new_items"]))


def _cmd_recommend(args) -> None:
    from rectk.predict import load_run, recommend

    loaded = load_run(args.run)
    history = None
    if args.history is not None:
        history = [h.strip() for h in args.history.split(",") if h.strip()]
    recs = recommend(loaded, user=args.user, history=history, k=args.k)
    if args.json:
        print(json.dumps(recs, indent=2))
        return
    for n, r in enumerate(recs, 1):
        print(f"{n:2d}. {r['item']:<20} {r['score']:8.3f}  {r['title']}")


def _cmd_plugins(args) -> None:
    from rectk import registry

    listing = {kind: {n: reg.origin(n) for n in reg.names()} for kind, reg in registry.ALL.items()}
    failed = registry.failed_plugins()
    if args.json:
        print(json.dumps({"registered": listing, "failed": failed}, indent=2))
        return
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


def main(argv: list[str] | None = None) -> int:
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
        elif args.command == "plugins":
            _cmd_plugins(args)
    except RectkError as err:
        print(f"rectk: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("rectk: interrupted; checkpoints already written are kept", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
