"""Full-ranking evaluation time of a recipe's model: XLA:CPU fusions and window trimming.

    python benchmarks/eval_speed.py recipes/beauty_sasrec_ce.toml
    python benchmarks/eval_speed.py recipes/ml100k_sasrec.toml --set eval.mask_seen=false

Builds the recipe's model (initial weights: the time does not depend on them), then ranks the
test split's targets among all items with the recipe's evaluation settings, four ways: the
ranker compiled with XLA's default options or without XLA:CPU's YNNPACK library fusions
(``rectk.compiler.no_library_dots``; rectk picks one per encoder, see ``rectk.compiler``), and
windows of ``model.max_len`` or trimmed per batch to the longest history
(``Evaluator(trim=True)``, for encoders that declare ``variable_length``). Each way is timed
``--repeats`` times (a whole evaluation: ranks and metrics), the ways in turn, after one
untimed pass of each that compiles every batch shape; the table gives the median seconds, the
ratio to the first row, and the share of targets whose rank equals the first row's (compiled
differently, float sums may round differently). Runs in one process, on one XLA device unless
``--cpu-devices``.
``--only-rectk`` times rectk's own way alone (as ``benchmarks/vs_recbole.py`` does); ``--json``
writes the rows.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("recipe")
    p.add_argument("--set", action="append", default=[], help="recipe override")
    p.add_argument("--split", choices=["valid", "test"], default="test")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--cpu-devices", type=int, default=0)
    p.add_argument("--only-rectk", action="store_true", help="time rectk's own way only")
    p.add_argument("--json", help="write the rows to this JSON file")
    a = p.parse_args()

    from rectk import sharding as shd

    shd.set_cpu_devices(a.cpu_devices)
    import json

    import jax
    import numpy as np

    from rectk import recipe as recipe_lib
    from rectk import steps
    from rectk.compiler import inference_options, no_library_dots
    from rectk.setup import create_state, evaluator, prepare, setup, weights_of

    cfg = recipe_lib.load(a.recipe, a.set).config
    data, split = prepare(cfg)
    s = setup(cfg, data, split, shd.make_mesh(cfg.mesh.data, cfg.mesh.model))
    examples = getattr(split, a.split)
    weights = weights_of(create_state(s))

    def ranker(options):
        f = jax.jit(
            functools.partial(steps.model_ranks, s.bound, s.num_items, s.chunk),
            in_shardings=(weights_of(s.state_shardings), s.batch_sharding),
            compiler_options=options,
        )
        return lambda batch: f(weights, batch)

    ways = [("XLA defaults", None, False), ("no library dots", no_library_dots(), False)]
    if a.only_rectk:
        ways = [("rectk, its own settings", inference_options(s.bound.library_dots), None)]
    elif s.trim_windows:
        ways += [
            ("XLA defaults, trimmed windows", None, True),
            ("no library dots, trimmed windows", no_library_dots(), True),
        ]
    # Compile every way first, then time them round-robin: the machine's speed drifts by more
    # than the differences measured, and interleaving spreads the drift over every way alike.
    prepared, first = [], None
    for label, options, trim in ways:
        ev, rank = evaluator(s, examples, trim), ranker(options)
        t = time.perf_counter()
        ranks = ev.ranks(rank)  # compiles each batch shape
        warm = time.perf_counter() - t
        first = ranks if first is None else first
        prepared.append((label, ev, rank, warm, float(np.mean(ranks == first))))
    times: list[list[float]] = [[] for _ in prepared]
    for _ in range(a.repeats):
        for i, (_, ev, rank, _, _) in enumerate(prepared):
            t = time.perf_counter()
            ev.metrics(rank)  # a whole evaluation, as rectk's trainer runs it
            times[i].append(time.perf_counter() - t)
    rows = []
    for (label, ev, _, warm, same), ts in zip(prepared, times, strict=True):
        shapes = sorted({b["input"].shape[1] for b in ev.batches}, reverse=True)
        rows.append((label, statistics.median(ts), warm, same, shapes))

    print(
        f"{a.recipe} ({' '.join(a.set)}): {len(examples)} {a.split} targets, "
        f"{s.num_items} items, batch {cfg.eval.batch_size}, {len(jax.devices())} XLA device(s); "
        f"median of {a.repeats}"
    )
    print(f"{'way':<34}{'s':>8}{'first pass s':>14}{'speed-up':>10}{'same rank':>11}  widths")
    for label, sec, warm, same, shapes in rows:
        print(
            f"{label:<34}{sec:>8.3f}{warm:>14.2f}{rows[0][1] / sec:>9.2f}x{same:>11.1%}  {shapes}"
        )
    if a.json:
        keys = ("way", "median_s", "first_pass_s", "same_rank", "widths")
        with open(a.json, "w") as f:
            json.dump(
                {"repeats": a.repeats, "rows": [dict(zip(keys, r, strict=True)) for r in rows]}, f
            )


if __name__ == "__main__":
    main()
