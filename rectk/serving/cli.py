"""The ``export`` and ``serve`` sub-commands of ``rectk`` (registered by ``rectk.cli``)."""

from __future__ import annotations

import argparse
import json

COMMANDS = ("export", "serve")


def add_parsers(sub) -> None:
    """Adds ``export`` and ``serve`` to the ``rectk`` sub-command parsers ``sub``."""
    ex = sub.add_parser(
        "export",
        help="a finished run as a self-contained artefact: the predict function (jax.export, "
        "StableHLO), its weights (safetensors), the catalogue and learners (docs/serving.md)",
    )
    ex.add_argument("--run", required=True, help="run directory, e.g. runs/quickstart")
    ex.add_argument("--out", required=True, help="the folder to write (must not exist)")
    ex.add_argument("--k-max", type=int, default=100, help="the longest list served (default 100)")
    ex.add_argument(
        "--chain",
        default=None,
        help="the reranker chain built into the function (default: the recipe's rerank.use; "
        "'none' = the model's own ranking)",
    )
    ex.add_argument("--force", action="store_true", help="replace --out if it exists")

    sv = sub.add_parser(
        "serve",
        help="an HTTP JSON API over an export: POST /recommend (micro-batched), GET /health, "
        "GET /metrics (docs/serving.md)",
    )
    sv.add_argument("--export", required=True, help="a folder written by rectk export")
    sv.add_argument("--host", default="127.0.0.1", help="default 127.0.0.1")
    sv.add_argument("--port", type=int, default=8000, help="default 8000")
    sv.add_argument(
        "--max-batch", type=int, default=64, help="most requests per jitted call (default 64)"
    )
    sv.add_argument(
        "--max-wait-ms",
        type=float,
        default=2.0,
        help="how long a request waits for others to batch with (default 2 ms)",
    )
    sv.add_argument(
        "--max-history",
        type=int,
        default=2048,
        help="longest history a request may send (default 2048; longer: 413)",
    )
    sv.add_argument("--access-log", action="store_true", help="log every request")


def run(args: argparse.Namespace) -> None:
    """Runs the ``export`` or ``serve`` command ``args`` names."""
    from rectk.errors import RectkError

    if args.command == "export":
        from rectk.serving.export import export_run

        out = export_run(args.run, args.out, k_max=args.k_max, chain=args.chain, force=args.force)
        manifest = json.loads((out / "manifest.json").read_text())
        chain = manifest["source"].get("chain") or "none"
        print(
            f"exported {args.run} (step {manifest['source'].get('step')}) to {out}: "
            f"{manifest['num_items']} items, k <= {manifest['k_max']}, reranker chain {chain}, "
            f"platforms {', '.join(manifest['platforms'])}"
        )
        return
    for name in ("max_batch", "port", "max_history"):
        if getattr(args, name) < 1:
            raise RectkError(f"--{name.replace('_', '-')} must be at least 1")
    if args.max_wait_ms < 0:
        raise RectkError("--max-wait-ms must be >= 0")
    from rectk.serving.server import serve

    serve(
        args.export,
        host=args.host,
        port=args.port,
        max_batch=args.max_batch,
        max_wait_ms=args.max_wait_ms,
        max_history=args.max_history,
        access_log=args.access_log,
    )
