"""One prepared accelerator check: SASRec on Amazon Beauty and the BERT text tower, in bf16.

For each job it builds the recipe's own jitted train step (the one ``rectk train`` runs),
compiles it, times ``--steps`` steps after ``--warmup`` and prints examples/s, step time, and
model FLOP utilisation: XLA's FLOP count of the compiled step (``cost_analysis``) per second,
against the chip's dense bf16 peak (``PEAK_BF16``; ``--peak-tflops`` for another chip).

    python benchmarks/accelerator_check.py --json results/accelerator.json
    python benchmarks/accelerator_check.py --steps 3 --warmup 1   # a smoke run on a CPU

Jobs: ``sasrec`` (recipes/beauty_sasrec_ce.toml, bf16, batch 256) and ``text_lora`` /
``text_full`` (the bundled courses, all-MiniLM-L6-v2 fine-tuned with LoRA / in full, bf16).
On a CPU no peak is known and MFU is left out.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Dense bf16 peak TFLOP/s by device kind (vendor data sheets, without sparsity).
PEAK_BF16 = {
    "H100": 989.0,  # SXM; PCIe 756
    "H200": 989.0,
    "A100": 312.0,
    "L4": 121.0,
    "L40S": 362.0,
    "TPU v4": 275.0,
    "TPU v5 lite": 197.0,
    "TPU v5e": 197.0,
    "TPU v5p": 459.0,
    "TPU v6 lite": 918.0,
    "TPU v6e": 918.0,
}

JOBS = {
    "sasrec": (
        "recipes/beauty_sasrec_ce.toml",
        ["train.dtype=bfloat16", "train.batch_size=256"],
    ),
    "text_lora": (
        "recipes/quickstart.toml",
        [
            "train.dtype=bfloat16",
            "model.item_tower.type=text",
            "model.item_tower.finetune=lora",
            "model.item_tower.max_length=32",
            "train.batch_size=64",
        ],
    ),
    "text_full": (
        "recipes/quickstart.toml",
        [
            "train.dtype=bfloat16",
            "model.item_tower.type=text",
            "model.item_tower.finetune=full",
            "model.item_tower.max_length=32",
            "train.batch_size=64",
        ],
    ),
}


def peak_tflops(kind: str) -> float | None:
    for name, peak in sorted(PEAK_BF16.items(), key=lambda kv: -len(kv[0])):
        if name.lower() in kind.lower():
            return peak
    return None


def run_job(name: str, steps: int, warmup: int, peak: float | None) -> dict:
    import jax

    from rectk import recipe as recipe_lib
    from rectk import sharding as shd
    from rectk import steps as steps_lib
    from rectk.setup import create_state, prepare, setup, train_batches

    path, sets = JOBS[name]
    cfg = recipe_lib.load(ROOT / path, sets).config
    data, split = prepare(cfg)
    s = setup(cfg, data, split, shd.make_mesh(cfg.mesh.data, cfg.mesh.model))
    batches = list(itertools.islice(train_batches(s, split, epochs=2), warmup + steps))
    if len(batches) < warmup + steps:
        raise SystemExit(f"{name}: only {len(batches)} batches, asked for {warmup + steps}")
    fn = steps_lib.jit_train_step(s.bound, s.state_shardings, s.batch_sharding, s.replicated)
    state, key = create_state(s), jax.random.key(0)
    put = [jax.device_put(b, s.batch_sharding) for b in batches]
    t0 = time.perf_counter()
    compiled = fn.lower(state, put[0], key).compile()
    compile_s = time.perf_counter() - t0
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    flops = float(cost.get("flops", 0.0)) if cost else 0.0
    for b in put[:warmup]:
        state, _ = fn(state, b, key)
    jax.block_until_ready(state)
    times = []
    for b in put[warmup:]:
        t = time.perf_counter()
        state, metrics = fn(state, b, key)
        jax.block_until_ready(metrics)
        times.append(time.perf_counter() - t)
    times.sort()
    step_s = times[len(times) // 2]
    examples = int(batches[0]["input"].shape[0])
    row = {
        "job": name,
        "recipe": path,
        "batch": examples,
        "compile_s": round(compile_s, 1),
        "step_ms": round(step_s * 1000, 2),
        "examples_per_s": round(examples / step_s, 1),
        "tflops_per_step": round(flops / 1e12, 4),
        "achieved_tflops": round(flops / step_s / 1e12, 2),
        "mfu": round(flops / step_s / 1e12 / peak, 4) if peak and flops else None,
        "loss": float(metrics["loss"]),
    }
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--jobs", default="sasrec,text_lora,text_full")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--peak-tflops", type=float, default=None, help="override the chip's peak")
    ap.add_argument("--json", help="write the rows here")
    args = ap.parse_args()
    import jax

    device = jax.devices()[0]
    kind = getattr(device, "device_kind", device.platform)
    peak = args.peak_tflops or (None if device.platform == "cpu" else peak_tflops(kind))
    print(f"device: {kind} x {jax.device_count()} ({device.platform}); bf16 peak {peak} TFLOP/s")
    rows = []
    for name in args.jobs.split(","):
        rows.append(run_job(name, args.steps, args.warmup, peak))
        print(json.dumps(rows[-1]), flush=True)
    print("\n| job | batch | step ms | examples/s | TFLOP/step | TFLOP/s | MFU | compile s |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        mfu = f"{100 * r['mfu']:.1f}%" if r["mfu"] is not None else "n/a"
        print(
            f"| {r['job']} | {r['batch']} | {r['step_ms']} | {r['examples_per_s']} | "
            f"{r['tflops_per_step']} | {r['achieved_tflops']} | {mfu} | {r['compile_s']} |"
        )
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"device": kind, "peak": peak, "rows": rows}))


if __name__ == "__main__":
    main()
