"""Fine-tuning the text tower: train-step time and memory against catalogue size, with the whole
item table encoded every step (``train.encode_items = "all"``, before) and with only the batch's
items (``"batch"``, after).

    python benchmarks/text_tower_steps.py --json text_tower_steps.json

Catalogues: the bundled courses (654 items, their titles and descriptions), MovieLens-100K
(1,682 movie titles; ../shared/data) and Amazon Beauty (12,101 items; ../shared/data). Beauty
has no item texts, so its items get placeholder titles ("beauty product 123"): the text
encoder's cost does not depend on the words, since every text is padded to
``--max-length`` tokens. The model: SASRec (dim 64, one block, ``max_len`` 20) over the
all-MiniLM-L6-v2 text tower, fine-tuned by ``lora`` (rank 8 on query and value) or ``top_n``
(the top layer); batches of ``--batch`` windows; the sampled softmax over ``--negatives``
uniform negatives (logQ-corrected), which both modes compute identically
(``tests/test_sparse_items.py``).

Each setting runs in its own process: one step to compile, then ``--steps`` timed steps; the
process's peak RSS covers the data, the model and the step. The whole-table step is not run on
catalogues over ``--all-limit`` items (its time grows with the catalogue, about 12,101 / 654 =
18.5x the bundled step on Beauty, and its memory with it); its row then says so.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
from pathlib import Path

from _train_steps import ROOT, run_child, seconds_per_step, train_step

SHARED = ROOT.parent / "shared" / "data"


def _beauty_csv(folder: Path) -> list[str]:
    """Beauty.txt as a CSV of (user, item, order) with a placeholder-title catalogue."""
    src = SHARED / "amazon-beauty" / "Beauty.txt"
    items: set[str] = set()
    with open(folder / "beauty.csv", "w") as out:
        out.write("user_id,item_id,timestamp\n")
        for line in src.read_text().splitlines():
            user, *seq = line.split()
            for t, item in enumerate(seq):
                out.write(f"{user},{item},{t}\n")
                items.add(item)
    with open(folder / "catalogue.csv", "w") as out:
        out.write("item_id,title\n")
        for item in sorted(items, key=int):
            out.write(f"{item},beauty product {item}\n")
    return [
        "data.type=csv",
        f"data.path={folder / 'beauty.csv'}",
        f"data.catalogue={folder / 'catalogue.csv'}",
    ]


CATALOGUES = {
    "bundled": ("recipes/quickstart.toml", lambda _: []),
    "ml-100k": ("recipes/ml100k_sasrec.toml", lambda _: []),
    "beauty": ("recipes/quickstart.toml", _beauty_csv),
}


def measure(recipe: str, sets: list[str], steps: int) -> dict:
    """In the child: seconds per step after a compiling step, and the peak RSS."""
    s, batches, fn, state, key = train_step(recipe, sets, steps + 1)
    compile_s, _, state = seconds_per_step(s, fn, state, key, batches[:1])
    wall, cpu, _ = seconds_per_step(s, fn, state, key, batches[1:])
    return {
        "items": s.num_items,
        "batch_items": bool(s.bound.batch_items),
        "s_per_step": wall,
        "cpu_s_per_step": cpu,
        "first_step_s": compile_s,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--catalogues", default="bundled,ml-100k,beauty")
    p.add_argument("--finetune", default="lora,top_n")
    p.add_argument("--steps", type=int, default=3, help="steps timed per setting")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--negatives", type=int, default=256)
    p.add_argument("--max-length", type=int, default=32, help="tokens per item text")
    p.add_argument("--all-limit", type=int, default=2000, help="largest catalogue run whole")
    p.add_argument("--json", type=Path)
    p.add_argument("--recipe", help=argparse.SUPPRESS)
    p.add_argument("--child", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        print(json.dumps(measure(a.recipe, json.loads(a.child), a.steps)))
        return
    sizes = {"bundled": 654, "ml-100k": 1682, "beauty": 12101}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in a.catalogues.split(","):
            recipe, data_sets = CATALOGUES[name]
            if name != "bundled" and not SHARED.exists():
                print(f"{name}: skipped, ../shared/data is absent", file=sys.stderr)
                continue
            data = data_sets(Path(tmp))
            for finetune in a.finetune.split(","):
                for mode in ("all", "batch"):
                    row = {"catalogue": name, "finetune": finetune, "encode_items": mode}
                    if mode == "all" and sizes[name] > a.all_limit:
                        rows.append({**row, "items": sizes[name], "not_run": True})
                        print(rows[-1], flush=True)
                        continue
                    sets = [
                        *data,
                        "model.dim=64",
                        "model.max_len=20",
                        "model.encoder.layers=1",
                        "model.item_tower.type=text",
                        f"model.item_tower.finetune={finetune}",
                        "model.item_tower.top_n=1",
                        f"model.item_tower.max_length={a.max_length}",
                        f"train.batch_size={a.batch}",
                        f"train.encode_items={mode}",
                        "loss.type=sampled_softmax",
                        f"loss.num_negatives={a.negatives}",
                        "loss.sampler=uniform",
                    ]
                    args = ["--recipe", recipe, "--steps", str(a.steps)]
                    out = run_child(__file__, args, sets, 0, f"{name} {finetune} {mode}")
                    rows.append({**row, **out})
                    print(rows[-1], flush=True)
    print(
        "\n| catalogue | items | fine-tuning | items encoded | s/step | steps/s | speed-up "
        "| peak RSS MiB |\n|---|---|---|---|---|---|---|---|"
    )
    for r in rows:
        if r.get("not_run"):
            print(
                f"| {r['catalogue']} | {r['items']:,} | {r['finetune']} | all | not run "
                f"(over --all-limit) | | | |"
            )
            continue
        base = next(
            (
                b
                for b in rows
                if b["catalogue"] == r["catalogue"]
                and b["finetune"] == r["finetune"]
                and b["encode_items"] == "all"
                and not b.get("not_run")
            ),
            None,
        )
        speed = f"{base['s_per_step'] / r['s_per_step']:.1f}x" if base else ""
        print(
            f"| {r['catalogue']} | {r['items']:,} | {r['finetune']} | {r['encode_items']} "
            f"| {r['s_per_step']:.2f} | {1 / r['s_per_step']:.2f} | {speed} "
            f"| {r['peak_rss_mib']:,.0f} |"
        )
    if a.json:
        a.json.write_text(json.dumps({"args": vars(a), "rows": rows}, indent=2, default=str))


if __name__ == "__main__":
    main()
