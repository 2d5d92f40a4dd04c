"""Deletion test of explanations: does taking out the top-attributed history item lower the
recommended item more than taking out a random one, or the most recent one?

For each learner of a finished run (and, with ``--cuts C``, the same learner one, two, ...
items earlier: its history without its last ``c`` items, ``c < C``), the model's top-1 unseen
item ``r`` is recommended from the history (its last ``model.max_len`` items, as the model sees
them). One history item is deleted, the history left-padded again, and ``r`` rescored and
reranked among all unseen items (the deleted item stays masked, so the candidates are the same):

- ``occlusion``: the item with the largest leave-one-out weight (``rectk.explain.occlusion``,
  what ``rectk recommend --explain`` shows). By construction it is the single deletion with
  the largest score drop, so its shares below are a check of the code, not of the method.
- ``grad_x_input``: the item with the largest gradient x input over the history embeddings
  (``rectk.explain.gradient_x_input``): not measured by deletion, so its shares are the
  non-tautological test.
- ``random``: a uniformly random history item (``--seed``).
- ``recent``: the most recent history item.

It prints, per run, the mean score drop and mean rank drop (0-based rank after minus before)
of ``r`` per choice, and for the two attributions the share of cases whose score drop strictly
exceeds random's, recent's and both (ties, as when both pick the same item, count as not
exceeding; ``>=``: at least as large). Learners with fewer than two items are skipped.

Usage::

    python benchmarks/explain_faithfulness.py --run runs/quickstart \\
        --run runs/explain/ml100k_sasrec --cuts 2 --json results/explain_faithfulness.json
"""

from __future__ import annotations

import argparse
import functools
import json
import platform
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from rectk import steps
from rectk.compiler import jit_inference
from rectk.data.pipeline import left_pad
from rectk.evaluate import item_chunk
from rectk.explain import Explainer, deletions, score_items
from rectk.predict import load_run

CHOICES = ("occlusion", "grad_x_input", "random", "recent")


def _rescore(bound, num_items, chunk, weights, input_nl, seen_nh, target_n):
    """Score and 0-based rank of each row's target given its input history."""
    users_n = jnp.zeros(input_nl.shape[0], jnp.int32)
    score_n = score_items(bound, weights, input_nl, users_n, target_n[:, None])[:, 0]
    batch = {"input": input_nl, "user": users_n, "seen": seen_nh, "target": target_n}
    return score_n, steps.model_ranks(bound, num_items, chunk, weights, batch)


def cases(run, cuts: int, learners: int, seed: int) -> tuple[list[np.ndarray], int]:
    """The histories measured (each learner's, then the same learner's without its last
    1..cuts-1 items; at least two items each) and the number of learners they come from."""
    users = np.arange(1, len(run.vocab["user_ids"]) + 1)
    if learners and learners < len(users):
        users = np.sort(np.random.default_rng(seed).choice(users, learners, replace=False))
    out, who = [], set()
    for u in users:
        row = run.history.row(int(u))
        for c in range(cuts):
            if len(row) - c >= 2:
                out.append(row[: len(row) - c])
                who.add(int(u))
    return out, len(who)


def measure(run_dir: str, *, cuts: int, learners: int, seed: int, batch: int) -> dict:
    run = load_run(run_dir)
    ex = Explainer(run)
    chunk = item_chunk(run.cfg.eval.item_chunk, run.num_items)
    rescore = jit_inference(
        functools.partial(_rescore, ex.bound, run.num_items, chunk),
        library_dots=ex.bound.library_dots,
    )
    hists, n_learners = cases(run, cuts, learners, seed)
    seen_len = -(-max(len(h) for h in hists) // 64) * 64
    rng = np.random.default_rng(seed)
    drops: dict[str, list[np.ndarray]] = {c: [] for c in CHOICES}
    rank_drops: dict[str, list[np.ndarray]] = {c: [] for c in CHOICES}
    same_recent, n_items, gap = [], [], []
    start = time.perf_counter()
    for lo in range(0, len(hists), batch):
        part = hists[lo : lo + batch]
        real = len(part)
        part = part + [part[-1]] * (batch - real)  # one shape: compiled once
        hist_bl = ex.windows(part)
        seen_bh = np.stack([left_pad(h, seen_len) for h in part])
        zeros_b = np.zeros(batch, np.int32)
        _, top_b1 = run.top_k(1, run.weights, {"user": zeros_b, "input": hist_bl, "seen": seen_bh})
        top_b = np.asarray(top_b1)[:, 0]
        _, occ_bl1 = ex.occlusion(hist_bl, top_b[:, None])
        gxi_bl = ex.gradient_x_input(hist_bl, top_b)
        valid_bl = hist_bl > 0
        lengths = valid_bl.sum(1)
        last = hist_bl.shape[1] - 1
        picks = {
            "occlusion": np.argmax(np.where(valid_bl, occ_bl1[..., 0], -np.inf), axis=1),
            "grad_x_input": np.argmax(np.where(valid_bl, gxi_bl, -np.inf), axis=1),
            "random": last - (rng.random(batch) * lengths).astype(int),
            "recent": np.full(batch, last),
        }
        del_bll = np.asarray(deletions(jnp.asarray(hist_bl)))
        inputs = [hist_bl] + [del_bll[np.arange(batch), picks[c]] for c in CHOICES]
        n = len(inputs)
        score_n, rank_n = rescore(
            run.weights,
            np.concatenate(inputs),
            np.tile(seen_bh, (n, 1)),
            np.tile(top_b, n),
        )
        score_nb = np.asarray(score_n).reshape(n, batch)[:, :real]
        rank_nb = np.asarray(rank_n).reshape(n, batch)[:, :real]
        for i, c in enumerate(CHOICES, 1):
            drops[c].append(score_nb[0] - score_nb[i])
            rank_drops[c].append(rank_nb[i] - rank_nb[0])
        same_recent.append((picks["occlusion"] == last)[:real])
        occ_b = occ_bl1[np.arange(batch), picks["occlusion"], 0][:real]
        gap.append(float(np.abs(occ_b - (score_nb[0] - score_nb[1])).max()))
        n_items.append(lengths[:real])
    seconds = time.perf_counter() - start
    d = {c: np.concatenate(v) for c, v in drops.items()}
    r = {c: np.concatenate(v) for c, v in rank_drops.items()}
    rows = {}
    for c in CHOICES:
        row = {"score_drop": float(d[c].mean()), "rank_drop": float(r[c].mean())}
        if c in ("occlusion", "grad_x_input"):
            beats_random, beats_recent = d[c] > d["random"], d[c] > d["recent"]
            row |= {
                "share_gt_random": float(beats_random.mean()),
                "share_gt_recent": float(beats_recent.mean()),
                "share_gt_both": float((beats_random & beats_recent).mean()),
                "share_ge_both": float(((d[c] >= d["random"]) & (d[c] >= d["recent"])).mean()),
                "rank_share_gt_both": float(((r[c] > r["random"]) & (r[c] > r["recent"])).mean()),
            }
        rows[c] = row
    return {
        "run": run_dir,
        "recipe": run.cfg.name,
        "learners": n_learners,
        "cases": len(hists),
        "cuts": cuts,
        "mean_items_considered": float(np.concatenate(n_items).mean()),
        "occlusion_picks_most_recent": float(np.concatenate(same_recent).mean()),
        # the occlusion weight of the item removed against its drop measured by rescoring
        "occlusion_weight_vs_drop_max_abs": max(gap),
        "seconds": seconds,
        "choices": rows,
    }


def table(res: dict) -> str:
    head = (
        f"{'removed item':<14}{'score drop':>12}{'rank drop':>11}"
        f"{'> random':>10}{'> recent':>10}{'> both':>8}{'>= both':>9}"
    )
    lines = [head]
    for c, row in res["choices"].items():
        shares = (
            f"{row['share_gt_random']:>10.3f}{row['share_gt_recent']:>10.3f}"
            f"{row['share_gt_both']:>8.3f}{row['share_ge_both']:>9.3f}"
            if "share_gt_both" in row
            else ""
        )
        lines.append(f"{c:<14}{row['score_drop']:>12.3f}{row['rank_drop']:>11.2f}{shares}")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", action="append", required=True, help="a finished run directory")
    p.add_argument("--learners", type=int, default=0, help="learners sampled (0 = all)")
    p.add_argument("--cuts", type=int, default=1, help="histories per learner (see above)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--json", type=Path, help="write the results here")
    args = p.parse_args()
    results = []
    for run_dir in args.run:
        res = measure(
            run_dir, cuts=args.cuts, learners=args.learners, seed=args.seed, batch=args.batch
        )
        results.append(res)
        print(
            f"\n{res['recipe']} ({run_dir}): {res['learners']} learners, {res['cases']} "
            f"histories, {res['mean_items_considered']:.1f} items considered on average; "
            f"occlusion's top item is the most recent in {res['occlusion_picks_most_recent']:.1%}"
        )
        print(table(res))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        meta = {"machine": platform.machine(), "jax": jax.__version__, "seed": args.seed}
        args.json.write_text(json.dumps({"meta": meta, "runs": results}, indent=2))
        print(f"\nwritten: {args.json}")


if __name__ == "__main__":
    main()
