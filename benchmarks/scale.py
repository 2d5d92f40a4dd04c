"""Item tables sharded over the ``model`` mesh axis: step time, memory per device and full-ranking
time by catalogue size and shard count, on the synthetic catalogue.

    python benchmarks/scale.py --sizes 1e4,1e5 --shards 1,2,4,8 --json scale.json
    python benchmarks/scale.py --sizes 1e6 --shards 8 --steps 3

Each (V, shards) pair runs in its own process with 8 XLA CPU devices, on a mesh of ``data =
1`` x ``model = shards`` of them: every device runs the whole batch through the encoder and
holds ``1 / shards`` of the item table, its Adam moments and its gradients (vocabulary
parallelism); 1 shard is one device holding all of it. The data is the ``synthetic`` data set with ``V - 1`` items and
``--learners`` learners (default: as many as items); the model SASRec (``--dim``, one block,
``max_len`` 20); the loss ``--loss`` (sampled softmax by default: 1,000 uniform negatives,
logQ-corrected; ``softmax_ce`` is the full softmax, vocabulary-parallel when sharded).

Per row it prints: ms per train step (after ``--warmup`` steps), the bytes per device of the
train state as placed (the item table with its gradients' Adam moments; measured from each
array's shard on device 0), XLA's compiled peak per device of the train step (arguments +
outputs + temporaries - donated; ``Compiled.memory_analysis``), the process's peak RSS (all
8 CPU devices share it, the data set included), and the seconds to rank every item for
``--eval-learners`` learners (full ranking, seen items masked; after one warm-up call).
"""

from __future__ import annotations

import argparse
import itertools
import json
import resource
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _train_steps import ROOT, run_child, seconds_per_step

MIB = 2**20


def _sets(v: int, shards: int, a) -> list[str]:
    learners = a.learners or v
    sets = [
        "data.type=synthetic",
        f"data.num_items={v - 1}",
        f"data.num_learners={learners}",
        "mesh.data=1",
        f"mesh.model={shards}",
        f"model.dim={a.dim}",
        "model.max_len=20",
        "model.encoder.layers=1",
        f"train.batch_size={a.batch}",
        "train.steps=1000",
        "eval.batch_size=256",
        f"loss.type={a.loss}",
    ]
    if a.loss == "sampled_softmax":
        sets.append("loss.num_negatives=1000")
    return sets


def _bytes_on(tree, device) -> int:
    import jax

    total = 0
    for leaf in jax.tree.leaves(tree):
        for shard in leaf.addressable_shards:
            if shard.device == device:
                total += shard.data.nbytes
    return total


def measure(a, sets: list[str]) -> dict:
    """In the child: build, train ``warmup + steps`` steps, rank ``eval_learners`` learners."""
    from rectk import sharding as shd

    shd.set_cpu_devices(8)
    import jax

    from rectk import recipe as recipe_lib
    from rectk import steps as steps_lib
    from rectk.evaluate import Evaluator
    from rectk.loop import weights_of
    from rectk.setup import create_state, model_ranker, prepare, setup, train_batches

    t0 = time.perf_counter()
    cfg = recipe_lib.load(ROOT / "recipes/quickstart.toml", sets).config
    data, sp = prepare(cfg)
    data_s = time.perf_counter() - t0
    s = setup(cfg, data, sp, shd.make_mesh(cfg.mesh.data, cfg.mesh.model))
    del data
    batches = list(itertools.islice(train_batches(s, sp, epochs=1), a.warmup + a.steps))
    fn = steps_lib.jit_train_step(s.bound, s.state_shardings, s.batch_sharding, s.replicated)
    state, key = create_state(s), jax.random.key(cfg.seed + 1)
    dev = jax.devices()[0]
    rows = s.abstract_state["params"]["item_tower"]["embedding"].shape[0]
    compiled = fn.lower(state, jax.device_put(batches[0], s.batch_sharding), key).compile()
    mem = compiled.memory_analysis()
    peak = (
        mem.argument_size_in_bytes
        + mem.output_size_in_bytes
        + mem.temp_size_in_bytes
        - mem.alias_size_in_bytes
    )
    need = a.warmup + a.steps
    batches = (batches * (-(-need // len(batches))))[:need]
    trained: Any
    _, _, trained = seconds_per_step(s, fn, state, key, batches[: a.warmup])
    wall, _, trained = seconds_per_step(s, fn, trained, key, batches[a.warmup :])

    examples = _first(sp.valid, a.eval_learners)
    ev = Evaluator(
        examples,
        max_len=s.cfg.model.max_len,
        batch_size=256,
        mask_seen=True,
        ks=(10,),
        sharding=s.batch_sharding,
        multiple=s.mesh.shape["data"],
    )
    ranks = model_ranker(s)
    weights = weights_of(trained)
    ev.ranks(lambda b: ranks(weights, b))  # compiles
    t = time.perf_counter()
    ev.ranks(lambda b: ranks(weights, b))
    eval_s = time.perf_counter() - t
    stats = dev.memory_stats()
    table = [x for x in jax.tree.leaves(trained) if x.ndim and x.shape[0] == rows]
    return {
        "V": s.num_items + 1,
        "shards": s.mesh.shape["model"],
        "data": s.mesh.shape["data"],
        "table_rows": rows,
        "loss": a.loss,
        "ms_per_step": round(1000 * wall, 1),
        "state_mib_per_device": round(_bytes_on(trained, dev) / MIB, 1),
        "table_and_moments_mib_per_device": round(_bytes_on(table, dev) / MIB, 1),
        "compiled_peak_mib_per_device": round(peak / MIB, 1),
        "device_memory_stats": stats,
        "process_peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "eval_learners": len(examples),
        "eval_seconds": round(eval_s, 3),
        "data_seconds": round(data_s, 1),
    }


def _first(examples, n: int):
    """The first ``n`` evaluation examples of ``examples``."""
    from rectk.data.split import EvalSet, Sequences

    n = min(n, len(examples))
    ptr = examples.hist.ptr[: n + 1]
    hist = Sequences(ptr=ptr, items=examples.hist.items[: ptr[-1]])
    return EvalSet(user=examples.user[:n], target=examples.target[:n], hist=hist)


def _parse_sizes(text: str) -> list[int]:
    return [int(float(x)) for x in text.split(",") if x]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="1e4,1e5,1e6", help="item vocabularies V, comma-separated")
    p.add_argument("--shards", default="1,2,4,8", help="model-axis sizes, comma-separated")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--learners", type=int, default=0, help="0 = as many as items")
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--loss", default="sampled_softmax", choices=["sampled_softmax", "softmax_ce"])
    p.add_argument("--eval-learners", type=int, default=512)
    p.add_argument("--json", type=Path)
    p.add_argument("--child", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        print(json.dumps(measure(a, json.loads(a.child))))
        return
    args = sys.argv[1:]
    rows = []
    head = (
        f"{'V':>9} {'shards':>6} {'ms/step':>8} {'state MiB/dev':>13} {'table+Adam MiB/dev':>18} "
        f"{'XLA peak MiB/dev':>16} {'RSS MiB':>8} {'eval s':>7}"
    )
    print(head, flush=True)
    for v in _parse_sizes(a.sizes):
        for shards in _parse_sizes(a.shards):
            row = run_child(__file__, args, _sets(v, shards, a), 8, f"V={v} shards={shards}")
            rows.append(row)
            print(
                f"{row['V']:>9} {row['shards']:>6} {row['ms_per_step']:>8} "
                f"{row['state_mib_per_device']:>13} {row['table_and_moments_mib_per_device']:>18} "
                f"{row['compiled_peak_mib_per_device']:>16} {row['process_peak_rss_mib']:>8} "
                f"{row['eval_seconds']:>7}",
                flush=True,
            )
            if a.json:
                a.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
