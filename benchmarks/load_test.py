"""Load test of ``rectk serve``: requests/s and latency quantiles at several concurrencies.

Starts ``rectk serve`` on an export as a subprocess, then drives it with asynchronous clients:
at each concurrency C, C clients each send ``POST /recommend`` one after another for
``--seconds`` (after a warm-up second), with histories drawn from the export's learners (or
random ones where it has none). Latency is the client's: from sending to the whole answer. The default client speaks HTTP/1.1
over asyncio streams (kept-alive connections); ``--client httpx`` uses httpx's AsyncClient,
which costs more CPU per request than the server does.

    python benchmarks/load_test.py --export exports/quickstart --json results/load.json
    python benchmarks/load_test.py --synthetic 100000 --json results/load_100k.json

``--synthetic N`` exports the quickstart recipe's model over N items with fresh (seeded)
weights first: a catalogue size no data set here has, with a trained model's shapes and costs.
Client and server share the machine's cores; the table says how many.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def histories(export: Path, n: int, seed: int = 0) -> list[list[str]]:
    """``n`` request histories: learners' own (their last 50 items), else random ones."""
    rng = np.random.default_rng(seed)
    items = json.loads((export / "catalogue.json").read_text())["item_ids"]
    learners = export / "learners.npz"
    if learners.exists():
        with np.load(learners) as z:
            ptr, ids = z["ptr"], z["items"]
        rows = rng.integers(0, len(ptr) - 1, n)
        out = [[items[i - 1] for i in ids[ptr[r] : ptr[r + 1]][-50:]] for r in rows]
        return [h for h in out if h] or [[items[0]]]
    lengths = rng.integers(5, 30, n)
    return [[items[i] for i in rng.integers(0, len(items), m)] for m in lengths]


async def _post(reader, writer, host: str, body: bytes) -> tuple[int, bytes]:
    """One ``POST /recommend`` on a kept-alive HTTP/1.1 connection: ``(status, body)``."""
    head = (
        f"POST /recommend HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    writer.write(head.encode() + body)
    await writer.drain()
    lines = (await reader.readuntil(b"\r\n\r\n")).split(b"\r\n")
    status = int(lines[0].split()[1])
    length = next(
        int(line.split(b":", 1)[1]) for line in lines if line.lower().startswith(b"content-length")
    )
    return status, await reader.readexactly(length)


async def drive_raw(url: str, pool: list[list[str]], concurrency: int, seconds: float, k: int):
    """As ``drive``, over plain asyncio streams (one kept-alive connection per client): a
    client light enough that on a shared 2-core machine it measures the server, not itself."""
    host, port = url.split("//")[1].split(":")
    bodies = [json.dumps({"history": h, "k": k}).encode() for h in pool]
    latencies: list[float] = []
    errors = 0
    start = time.perf_counter()
    warm_until = start + 1.0
    stop_at = warm_until + seconds

    async def worker(w: int) -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection(host, int(port))
        i = w
        try:
            while True:
                t0 = time.perf_counter()
                if t0 >= stop_at:
                    return
                status, body = await _post(reader, writer, host, bodies[i % len(bodies)])
                i += concurrency
                t1 = time.perf_counter()
                if t0 < warm_until:
                    continue
                if status == 200 and b'"item"' in body:
                    latencies.append((t1 - t0) * 1000)
                else:
                    errors += 1
        finally:
            writer.close()

    await asyncio.gather(*(worker(w) for w in range(concurrency)))
    return latencies, errors, seconds


async def drive(url: str, pool: list[list[str]], concurrency: int, seconds: float, k: int):
    """``(latencies in ms of answered requests, errors, seconds measured)``, by an httpx
    ``AsyncClient``."""
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    latencies: list[float] = []
    errors = 0
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as client:
        start = time.perf_counter()
        warm_until = start + 1.0
        stop_at = warm_until + seconds

        async def worker(w: int) -> None:
            nonlocal errors
            i = w
            while True:
                t0 = time.perf_counter()
                if t0 >= stop_at:
                    return
                body = {"history": pool[i % len(pool)], "k": k}
                i += concurrency
                r = await client.post("/recommend", json=body)
                t1 = time.perf_counter()
                if t0 < warm_until:
                    continue
                if r.status_code == 200 and r.json()["items"]:
                    latencies.append((t1 - t0) * 1000)
                else:
                    errors += 1

        await asyncio.gather(*(worker(w) for w in range(concurrency)))
    return latencies, errors, seconds


def wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 900) -> float:
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        if proc.poll() is not None:
            raise SystemExit(f"rectk serve exited with {proc.returncode}: see its log")
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return time.perf_counter() - t0
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit("rectk serve did not come up")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--export", help="a folder written by rectk export")
    src.add_argument("--synthetic", type=int, metavar="N", help="export a fresh N-item model")
    ap.add_argument("--recipe", default=str(ROOT / "recipes/quickstart.toml"))
    ap.add_argument("--concurrency", default="1,16,64")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--max-batch", type=int, default=64)
    ap.add_argument("--max-wait-ms", type=float, default=2.0)
    ap.add_argument(
        "--client",
        choices=("raw", "httpx"),
        default="raw",
        help="raw: asyncio streams (default); httpx: an httpx AsyncClient, whose own CPU cost "
        "dominates on 2 shared cores",
    )
    ap.add_argument("--json", help="write the table here as JSON")
    args = ap.parse_args()

    tmp = tempfile.TemporaryDirectory()
    if args.synthetic:
        from rectk.serving.export import synthetic_scorer, write_artifact

        export = Path(tmp.name) / "synthetic"
        t0 = time.perf_counter()
        scorer = synthetic_scorer(args.recipe, args.synthetic)
        ids = [f"item_{i:07d}" for i in range(args.synthetic)]
        write_artifact(scorer, export, k=100, item_ids=ids, source={"synthetic": args.synthetic})
        print(f"exported a fresh {args.synthetic}-item model in {time.perf_counter() - t0:.1f} s")
    else:
        export = Path(args.export)
    manifest = json.loads((export / "manifest.json").read_text())
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = open(Path(tmp.name) / "serve.log", "w")  # noqa: SIM115 (lives as long as the server)
    cmd = [sys.executable, "-m", "rectk.cli", "serve", "--export", str(export)]
    cmd += ["--port", str(port), "--max-batch", str(args.max_batch)]
    cmd += ["--max-wait-ms", str(args.max_wait_ms)]
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    rows = []
    try:
        startup = wait_healthy(url, proc)
        print(f"server up in {startup:.1f} s (compiles the batch buckets first)")
        pool = histories(export, 2000)
        for c in (int(x) for x in args.concurrency.split(",")):
            before = httpx.get(url + "/metrics").json()
            client = drive_raw if args.client == "raw" else drive
            lat, errors, secs = asyncio.run(client(url, pool, c, args.seconds, args.k))
            after = httpx.get(url + "/metrics").json()
            lat_ms = np.asarray(lat)
            batches = after["batches"] - before["batches"]
            answered = after["requests"] - before["requests"]
            rows.append(
                {
                    "items": manifest["num_items"],
                    "concurrency": c,
                    "requests_per_s": round(len(lat) / secs, 1),
                    "p50_ms": round(float(np.percentile(lat_ms, 50)), 2),
                    "p99_ms": round(float(np.percentile(lat_ms, 99)), 2),
                    "errors": errors,
                    "mean_batch": round(answered / batches, 1) if batches else 0.0,
                }
            )
            print(rows[-1], flush=True)
    finally:
        proc.terminate()
        proc.wait(30)
    cores = len(os.sched_getaffinity(0))
    print(
        f"\nrectk serve, {manifest['num_items']} items, {cores} cores shared by client and server"
    )
    print("| concurrency | requests/s | p50 ms | p99 ms | errors | mean batch |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['concurrency']} | {r['requests_per_s']} | {r['p50_ms']} | {r['p99_ms']} "
            f"| {r['errors']} | {r['mean_batch']} |"
        )
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(
            json.dumps({"startup_s": round(startup, 1), "cores": cores, "rows": rows}, indent=2)
        )
    tmp.cleanup()


if __name__ == "__main__":
    main()
