"""Batch scoring throughput: every learner's top-k from a finished run, per batch size.

    python benchmarks/batch_recommend.py runs/beauty_sasrec_ce --batch-sizes 1,64,256,1024
    python benchmarks/batch_recommend.py runs/ml100k_sasrec --json batch_ml100k.json

Loads the run (``rectk.predict.load_run``: its best checkpoint so far if it is still
training), then for each batch size B makes passes over the learners (every learner of the
run, or the first ``--learners``) through ``rectk.predict.recommend_many``, B at a time, the
last batch padded to B: the first compiles (one shape per pass) and runs, then ``--repeats``
passes are timed; learners/s and the mean batch's milliseconds are the fastest pass's.
Compile time is the model's jitted top-k lowered and compiled ahead of time for that shape (a
chain compiles besides). The load average printed beside them says how busy the machine was.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import time


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", help="a run directory")
    p.add_argument("--batch-sizes", default="1,64,256,1024", help="comma-separated")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--chain", default="none", help="a reranker chain of the run (default none)")
    p.add_argument("--learners", type=int, default=0, help="the first N learners (0 = all)")
    p.add_argument("--repeats", type=int, default=3, help="timed passes; the fastest counts")
    p.add_argument("--json", help="write the rows and conditions to this JSON file")
    a = p.parse_args()

    import jax

    from rectk.predict import _batch, _seen_len, load_run, recommend_many

    sizes = [int(b) for b in a.batch_sizes.split(",") if b.strip()]
    started = time.perf_counter()
    run = load_run(a.run)
    load_s = time.perf_counter() - started
    users = run.vocab["user_ids"][: a.learners or None]
    print(
        f"{a.run}: step {run.step}, {len(users)} learners, {run.num_items} items, "
        f"k {a.k}, chain {a.chain}; loaded in {load_s:.1f} s"
        + (f" ({run.notice})" if run.notice else "")
    )

    def timed(learners: list[str], batch: int) -> float:
        t = time.perf_counter()
        recommend_many(run, users=learners, k=a.k, chain=a.chain, batch_size=batch)
        return time.perf_counter() - t

    seqs = [run.history.row(run.learner(u)) for u in users]
    rows = []
    for b in sizes:
        batch = _batch(run, seqs[:b], _seen_len(seqs))  # the shape recommend_many compiles
        t = time.perf_counter()
        top_k, kwargs = run.top_k, {}
        if isinstance(top_k, functools.partial):  # a text tower's table, bound at load
            top_k, kwargs = top_k.func, top_k.keywords
        top_k.lower(a.k, run.weights, batch, **kwargs).compile()
        compile_s = time.perf_counter() - t
        timed(users, b)  # compiles, and warms the caches
        total = min(timed(users, b) for _ in range(a.repeats))
        batches = -(-len(users) // b)
        rows.append(
            {
                "batch_size": b,
                "learners": len(users),
                "learners_per_s": len(users) / total,
                "batch_ms": 1000 * total / batches,
                "compile_s": compile_s,
                "pass_s": total,
            }
        )
        r = rows[-1]
        print(
            f"  B {b:>5}: {r['learners_per_s']:9.0f} learners/s  {r['batch_ms']:9.1f} ms/batch  "
            f"compile {r['compile_s']:5.2f} s  pass {total:6.1f} s",
            flush=True,
        )
    device = jax.devices()[0]
    conditions = {
        "device": f"{device.platform}: {device.device_kind}",
        "cpu_count": os.cpu_count(),
        "load_average": os.getloadavg(),
        "platform": platform.platform(),
    }
    print(f"\n{'batch size':>10} {'learners/s':>11} {'ms/batch':>9} {'compile s':>10}")
    for r in rows:
        print(
            f"{r['batch_size']:>10} {r['learners_per_s']:>11.0f} {r['batch_ms']:>9.1f} "
            f"{r['compile_s']:>10.2f}"
        )
    load = ", ".join(f"{x:.1f}" for x in conditions["load_average"])
    print(f"({conditions['device']}, {conditions['cpu_count']} CPUs, load average {load})")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"run": a.run, "k": a.k, "chain": a.chain, **conditions, "rows": rows}, f)


if __name__ == "__main__":
    main()
