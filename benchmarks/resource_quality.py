"""Resources for a topic on LectureBank: BM25 against the text tower and a two-tower model.

    python benchmarks/resource_quality.py [--data ../shared/data/lecturebank]
        [--json results/resource_quality.json] [--steps 300 (0: skip)] [--seed 0]

The labelled resources are split at random (``--seed``) into train (70%) and test (30%). Each
query is a taxonomy topic with at least one test resource, as text (its name and its parent's,
``LectureBank.topic_text``); its relevant resources are the test resources labelled with it.
Every method ranks the test resources only (train resources are neither candidates nor
relevant). Methods: BM25 over the titles (``bm25s``), the frozen all-MiniLM-L6-v2 text tower,
that tower with its top two layers fine-tuned by in-batch contrastive learning on (topic
text, train resource title) pairs, and a two-tower model trained on the train labels over
frozen text embeddings (a residual linear resource tower; a topic-id tower started at the
topic's text embedding), which also serves topics it never saw in training from their text.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from rectk.resources import recall_ndcg_at_k
from rectk_plugins.datasets.lecturebank import LectureBank, read_lecturebank
from rectk_plugins.text import default_model_dir, load_bert, load_tokenizer, mean_pool, tokenize
from rectk_plugins.text.embedder import text_embedder

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "lecturebank"
K = 10


def split(lb: LectureBank, seed: int, test_share: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    """Labelled resource indices, shuffled with ``seed`` and cut into (train, test)."""
    rows = np.random.default_rng(seed).permutation(lb.labelled)
    n_test = round(len(rows) * test_share)
    return np.sort(rows[n_test:]), np.sort(rows[:n_test])


def bm25_scores(queries: list[str], docs: list[str]) -> np.ndarray:
    import bm25s

    retriever = bm25s.BM25()
    retriever.index(bm25s.tokenize(docs, stopwords="en", show_progress=False), show_progress=False)
    q_tokens = bm25s.tokenize(queries, stopwords="en", return_ids=False, show_progress=False)
    return np.stack([retriever.get_scores(q) for q in q_tokens]).astype(np.float32)


def finetune(
    lb: LectureBank, train: np.ndarray, *, steps: int, seed: int, top_n: int = 2, batch: int = 32
) -> nnx.Module:
    """The text tower with its top ``top_n`` layers trained by symmetric in-batch InfoNCE on
    (topic text, resource title) pairs: each batch holds ``batch`` distinct topics, one train
    resource each, so no in-batch negative shares its topic."""
    folder = default_model_dir()
    bert, cfg = load_bert(folder, rngs=nnx.Rngs(seed))
    tok = load_tokenizer(folder)
    first = cfg.num_layers - top_n

    def trainable(path, value) -> bool:
        return isinstance(value, nnx.Param) and path[0] == "layers" and int(path[1]) >= first

    topics = np.unique(lb.topic_r[train])
    by_topic = {int(t): train[lb.topic_r[train] == t] for t in topics}
    t_ids, t_mask = tokenize(tok, [lb.topic_text(int(t)) for t in topics], max_length=24)
    r_ids, r_mask = tokenize(tok, [lb.titles[i] for i in train], max_length=32)
    row_of = {int(r): j for j, r in enumerate(train)}
    graphdef, params, rest = nnx.split(bert, trainable, ...)  # type: ignore[misc]
    opt = optax.adamw(optax.warmup_cosine_decay_schedule(0.0, 1e-4, steps // 10, steps))
    opt_state = opt.init(params)

    def loss_fn(params, rest, tq, tm, rq, rm):
        model = nnx.merge(graphdef, params, rest)
        q_bd = unit_j(mean_pool(model(tq, tm), tm))
        r_bd = unit_j(mean_pool(model(rq, rm), rm))
        logits_bb = q_bd @ r_bd.T / 0.05
        labels_b = jnp.arange(logits_bb.shape[0])
        ce = optax.softmax_cross_entropy_with_integer_labels
        return (ce(logits_bb, labels_b).mean() + ce(logits_bb.T, labels_b).mean()) / 2

    @jax.jit
    def step(params, opt_state, rest, tq, tm, rq, rm):
        loss, grads = jax.value_and_grad(loss_fn)(params, rest, tq, tm, rq, rm)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    rng = np.random.default_rng(seed)
    b = min(batch, len(topics))
    for s in range(steps):
        pick = rng.choice(len(topics), b, replace=False)
        res = [row_of[int(rng.choice(by_topic[int(topics[p])]))] for p in pick]
        params, opt_state, loss = step(
            params, opt_state, rest, t_ids[pick], t_mask[pick], r_ids[res], r_mask[res]
        )
        if s % 100 == 0 or s == steps - 1:
            print(f"  fine-tune step {s}: loss {float(loss):.3f}", flush=True)
    return nnx.merge(graphdef, params, rest)


def unit_j(x_bd: jax.Array) -> jax.Array:
    return x_bd / jnp.maximum(jnp.linalg.norm(x_bd, axis=-1, keepdims=True), 1e-12)


def two_tower(
    lb: LectureBank, train: np.ndarray, emb_rd: np.ndarray, emb_td: np.ndarray, *, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Trains a resource tower (``x + x @ W``) and a topic tower (``text_t + delta_t``) with a
    softmax over every topic on the train labels; returns (resource vectors, topic vectors)."""
    d = emb_rd.shape[1]
    x_nd, y_n = jnp.asarray(emb_rd[train]), jnp.asarray(lb.topic_r[train])
    params = {"w_dd": jnp.zeros((d, d)), "delta_td": jnp.zeros_like(emb_td)}
    text_td = jnp.asarray(emb_td)

    def towers(p, x_nd):
        return unit_j(x_nd + x_nd @ p["w_dd"]), unit_j(text_td + p["delta_td"])

    def loss_fn(p, x_nd, y_n):
        r_nd, t_td = towers(p, x_nd)
        logits_nt = r_nd @ t_td.T / 0.05
        ce = optax.softmax_cross_entropy_with_integer_labels(logits_nt, y_n).mean()
        return ce + 1e-3 * (jnp.sum(p["w_dd"] ** 2) + jnp.sum(p["delta_td"] ** 2))

    opt = optax.adam(1e-3)
    state = opt.init(params)

    @jax.jit
    def step(p, state, key):
        rows = jax.random.choice(key, x_nd.shape[0], (512,), replace=False)
        loss, g = jax.value_and_grad(loss_fn)(p, x_nd[rows], y_n[rows])
        upd, state = opt.update(g, state, p)
        return optax.apply_updates(p, upd), state, loss

    key = jax.random.key(seed)
    for s in range(600):
        params, state, loss = step(params, state, jax.random.fold_in(key, s))
    print(f"  two-tower: final loss {float(loss):.3f}", flush=True)
    r_rd, t_td = towers(params, jnp.asarray(emb_rd))
    return np.asarray(r_rd), np.asarray(t_td)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=str(DATA), help="the LectureBank folder")
    ap.add_argument("--json", default="results/resource_quality.json", help="where to write")
    ap.add_argument(
        "--steps", type=int, default=300, help="contrastive fine-tuning steps (0: skip)"
    )
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    lb = read_lecturebank(args.data)
    train, test = split(lb, args.seed)
    q_topics = np.unique(lb.topic_r[test])
    queries = [lb.topic_text(int(t)) for t in q_topics]
    relevant_qr = lb.topic_r[test][None, :] == q_topics[:, None]
    docs = [lb.titles[i] for i in test]
    seen = set(lb.topic_r[train].tolist())
    print(
        f"LectureBank {args.data}: {len(lb.resource_ids)} resources, {len(lb.labelled)} "
        f"labelled with {len(set(lb.topic_r[lb.labelled].tolist()))} of {len(lb.topic_names)} "
        f"taxonomy topics; train {len(train)}, test {len(test)}; {len(queries)} topic queries "
        f"({sum(int(t) not in seen for t in q_topics)} without train resources), ranking the "
        f"{len(test)} test resources",
        flush=True,
    )
    rows: dict[str, dict] = {}

    def record(name: str, scores_qr: np.ndarray, seconds: float) -> None:
        recall_q, ndcg_q = recall_ndcg_at_k(scores_qr, relevant_qr, k=K)
        rows[name] = {
            f"recall@{K}": float(recall_q.mean()),
            f"ndcg@{K}": float(ndcg_q.mean()),
            "seconds": round(seconds, 1),
        }
        print(f"  {name}: {rows[name]}", flush=True)

    t0 = time.perf_counter()
    record("BM25 (bm25s, titles)", bm25_scores(queries, docs), time.perf_counter() - t0)

    t0 = time.perf_counter()
    embed = text_embedder()
    emb_rd = embed(list(lb.titles))
    emb_td = embed([lb.topic_text(t) for t in range(len(lb.topic_names))])
    record(
        "text tower, frozen (MiniLM-L6)",
        emb_td[q_topics] @ emb_rd[test].T,
        time.perf_counter() - t0,
    )

    if args.steps > 0:
        t0 = time.perf_counter()
        tuned = text_embedder(model=finetune(lb, train, steps=args.steps, seed=args.seed))
        record(
            f"text tower, top 2 layers fine-tuned ({args.steps} steps)",
            tuned(queries) @ tuned(docs).T,
            time.perf_counter() - t0,
        )

    t0 = time.perf_counter()
    r_rd, t_td = two_tower(lb, train, emb_rd, emb_td, seed=args.seed)
    record(
        "two-tower on topic labels (frozen text)",
        t_td[q_topics] @ r_rd[test].T,
        time.perf_counter() - t0,
    )

    report = {
        "data": str(args.data),
        "resources": len(lb.resource_ids),
        "labelled": len(lb.labelled),
        "train": len(train),
        "test": len(test),
        "queries": len(queries),
        "ranked_over": "test resources",
        "seed": args.seed,
        "k": K,
        "methods": rows,
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "jax_backend": jax.default_backend(),
        },
    }
    print(f"\n{'method':<48}{'recall@10':>11}{'ndcg@10':>10}{'seconds':>9}")
    for name, r in rows.items():
        print(f"{name:<48}{r['recall@10']:>11.4f}{r['ndcg@10']:>10.4f}{r['seconds']:>9.1f}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
        print(f"written: {args.json}")


if __name__ == "__main__":
    main()
