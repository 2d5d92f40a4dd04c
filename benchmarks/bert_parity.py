"""Parity and throughput of rectk's BERT encoder against PyTorch ``transformers.BertModel``.

Both encode the same texts with the same weights (all-MiniLM-L6-v2 by default), the same batch
size and ``max_length``, end to end (tokenisation included), and both embeddings are mean-pooled
over the attention mask. PyTorch runs in a subprocess from its own virtual environment
(``.bench-venvs/torch``, created on first use with ``pip install torch==2.13.0 transformers
safetensors numpy``), float32, under ``torch.inference_mode()`` with its default thread count.
rectk runs in-process under ``jax.jit``, float32. Warm-up passes (which include rectk's
compilations) are excluded. The timed passes are interleaved (PyTorch, PyTorch sorted, rectk,
repeated ``--repeats`` times) so that load from other processes falls on all alike; the table
shows the best pass and the median.

PyTorch is timed the way ``transformers`` is usually driven (texts in input order, each batch
padded to its longest text) and, for reference, also over length-sorted batches. rectk's
``encode_texts`` sorts by length and pads each batch to a multiple of ``--bucket`` tokens.

Usage::

    python benchmarks/bert_parity.py --json /tmp/bert_parity.json
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import subprocess
import sys
import tempfile
import textwrap
import time
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / ".bench-venvs" / "torch"
COURSES = ROOT.parent / "shared" / "data" / "university-courses" / "cs_courses.csv"
TORCH_REQUIREMENTS = ["torch==2.13.0", "transformers", "safetensors", "numpy"]
# Eigen's thread pool for XLA:CPU; set before JAX is imported.
XLA_CPU_FLAGS = "--xla_cpu_multi_thread_eigen=true"

FALLBACK_TEXTS = [
    "Introduction to algorithms: sorting, searching, graph traversal and dynamic programming.",
    "Machine learning covers supervised learning, generalisation, kernels and neural networks.",
    "Operating systems: processes, threads, scheduling, virtual memory and file systems.",
    "Databases: the relational model, SQL, query optimisation, transactions and recovery.",
    "Computer networks from the physical layer to TCP/IP, routing and congestion control.",
    "A first course in programming.",
    "Compilers: lexing, parsing, type checking, intermediate representations, register "
    "allocation and the optimisations that make generated code fast on modern processors.",
    "Probability and statistics for computer scientists.",
]

TORCH_WORKER = textwrap.dedent(
    """
    import json, sys, time
    import numpy as np
    import torch
    from transformers import AutoTokenizer, BertModel

    args = json.loads(sys.argv[1])
    texts = json.loads(open(args["texts"], encoding="utf-8").read())
    tok = AutoTokenizer.from_pretrained(args["folder"], local_files_only=True)
    model = BertModel.from_pretrained(
        args["folder"], local_files_only=True, add_pooling_layer=False
    ).eval()
    bs, max_length = args["batch_size"], args["max_length"]

    def encode(order):
        out = np.empty((len(texts), model.config.hidden_size), np.float32)
        with torch.inference_mode():
            for start in range(0, len(texts), bs):
                rows = order[start : start + bs]
                enc = tok([texts[i] for i in rows], padding=True, truncation=True,
                          max_length=max_length, return_tensors="pt")
                hidden = model(input_ids=enc["input_ids"],
                               attention_mask=enc["attention_mask"]).last_hidden_state
                m = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                out[rows] = ((hidden * m).sum(1) / m.sum(1).clamp(min=1)).numpy()
        return out

    lengths = [len(x) for x in tok(texts, truncation=True, max_length=max_length)["input_ids"]]
    orders = {"input": list(range(len(texts))),
              "sorted": sorted(range(len(texts)), key=lambda i: lengths[i])}
    print(json.dumps({"threads": torch.get_num_threads(), "torch": torch.__version__}), flush=True)
    for line in sys.stdin:  # one command per line: an order name; the reply is its timing
        name = line.strip()
        t0 = time.perf_counter()
        emb = encode(orders[name])
        seconds = time.perf_counter() - t0
        np.save(args["out"] + f".{name}.npy", emb)
        print(json.dumps({"order": name, "seconds": seconds}), flush=True)
    """
)
ORDERS = ("input", "sorted")


class _TorchWorker:
    """PyTorch in its own venv and process, timing one full pass per request."""

    def __init__(self, python: Path, folder: Path, texts: list[str], args, tmp: Path):
        (tmp / "texts.json").write_text(json.dumps(texts), encoding="utf-8")
        (tmp / "worker.py").write_text(TORCH_WORKER, encoding="utf-8")
        self.out = tmp / "emb"
        worker_args = {
            "folder": str(folder),
            "texts": str(tmp / "texts.json"),
            "out": str(self.out),
            "batch_size": args.batch_size,
            "max_length": args.max_length,
        }
        env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
        env.pop("XLA_FLAGS", None)
        self.stderr = open(tmp / "stderr.txt", "w+")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [str(python), str(tmp / "worker.py"), json.dumps(worker_args)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            text=True,
            env=env,
        )
        self.info = self._reply()

    def _reply(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait()
            self.stderr.seek(0)
            raise SystemExit(f"the PyTorch worker failed:\n{self.stderr.read()[-4000:]}")
        return json.loads(line)

    def time_pass(self, order: str) -> float:
        self.proc.stdin.write(order + "\n")
        self.proc.stdin.flush()
        return self._reply()["seconds"]

    def embeddings(self, order: str):
        import numpy as np

        return np.load(f"{self.out}.{order}.npy")

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait()
        self.stderr.close()


def _import_plugins() -> None:
    """Makes ``rectk_plugins`` (the ``plugins/`` folder) importable without installing rectk."""
    sys.path.insert(0, str(ROOT))
    try:
        import rectk_plugins  # noqa: F401
    except ModuleNotFoundError:
        module = types.ModuleType("rectk_plugins")
        module.__path__ = [str(ROOT / "plugins")]
        sys.modules["rectk_plugins"] = module


def _load_texts(limit: int | None) -> tuple[list[str], str]:
    if COURSES.is_file():
        with COURSES.open(newline="", encoding="utf-8") as f:
            texts = [row[1] for row in csv.reader(f) if len(row) >= 2 and row[1].strip()]
        source = f"{COURSES.relative_to(ROOT.parent)} ({len(texts)} course texts)"
    else:
        texts = (FALLBACK_TEXTS * 82)[:654]
        source = f"built-in sentences repeated ({len(texts)} texts)"
    return (texts[:limit] if limit else texts), source


def _torch_python() -> Path:
    python = VENV / "bin" / "python"
    check = [str(python), "-c", "import torch, transformers, safetensors, numpy"]
    if python.is_file() and subprocess.run(check, capture_output=True).returncode == 0:
        return python
    print(f"creating {VENV.relative_to(ROOT)} with {' '.join(TORCH_REQUIREMENTS)} ...", flush=True)
    VENV.parent.mkdir(parents=True, exist_ok=True)
    (VENV.parent / ".gitignore").write_text("*\n")  # keep the venvs out of git
    subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", *TORCH_REQUIREMENTS],
        check=True,
    )
    return python


def _rectk_encoder(folder: Path, texts: list[str], args: argparse.Namespace):
    from flax import nnx

    from rectk_plugins.text import encode_texts, load_bert, load_tokenizer

    model, _ = load_bert(folder, rngs=nnx.Rngs(0))
    tokenizer = load_tokenizer(folder)

    def encode():
        return encode_texts(
            model,
            tokenizer,
            texts,
            batch_size=args.batch_size,
            max_length=args.max_length,
            bucket=args.bucket,
        )

    return encode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, help="write the results to this JSON file")
    parser.add_argument("--model", type=Path, help="model folder (default: all-MiniLM-L6-v2)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--bucket", type=int, default=16, help="rectk's padded-length multiple")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes of each; best counts")
    parser.add_argument("--limit", type=int, help="use only the first N texts")
    args = parser.parse_args(argv)

    # XLA flags must be in place before JAX initialises its CPU backend.
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {XLA_CPU_FLAGS}".strip()
    _import_plugins()
    import jax
    import numpy as np

    from rectk_plugins.text import default_model_dir

    folder = args.model or default_model_dir()
    texts, source = _load_texts(args.limit)
    n = len(texts)
    print(f"texts: {source}; model: {folder}", flush=True)
    python = _torch_python()
    encode = _rectk_encoder(folder, texts, args)

    seconds: dict[str, list[float]] = {"input": [], "sorted": [], "rectk": []}
    with tempfile.TemporaryDirectory() as tmp:
        torch_worker = _TorchWorker(python, folder, texts, args, Path(tmp))
        try:
            for order in ORDERS:  # warm-up passes, not timed
                torch_worker.time_pass(order)
            t0 = time.perf_counter()
            encode()  # compiles one program per length bucket
            warmup = time.perf_counter() - t0
            # Interleaved, so that load from other processes hits all three alike.
            for r in range(args.repeats):
                for order in ORDERS:
                    seconds[order].append(torch_worker.time_pass(order))
                t0 = time.perf_counter()
                emb_rectk = encode()
                seconds["rectk"].append(time.perf_counter() - t0)
                print(
                    f"pass {r + 1}/{args.repeats}: "
                    + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in seconds.items()),
                    flush=True,
                )
            emb_torch = {order: torch_worker.embeddings(order) for order in ORDERS}
        finally:
            torch_worker.close()

    torch_version = torch_worker.info["torch"]
    labels = {
        "input": f"pytorch {torch_version} (input order, pad to longest)",
        "sorted": f"pytorch {torch_version} (length-sorted, pad to longest)",
        "rectk": f"rectk, jax {jax.__version__} (sorted, buckets of {args.bucket})",
    }
    diffs = {
        "input": float(np.abs(emb_torch["input"] - emb_torch["sorted"]).max()),
        "sorted": float(np.abs(emb_torch["sorted"] - emb_torch["input"]).max()),
        "rectk": float(np.abs(emb_rectk - emb_torch["input"]).max()),
    }
    rows = [
        {
            "implementation": labels[k],
            "sentences_per_s": n / min(v),
            "sentences_per_s_median": n / float(np.median(v)),
            "seconds": v,
            "max_abs_diff_vs_torch": diffs[k],
        }
        for k, v in seconds.items()
    ]
    ratio = rows[2]["sentences_per_s"] / rows[0]["sentences_per_s"]
    ratio_sorted = rows[2]["sentences_per_s"] / rows[1]["sentences_per_s"]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")

    print(
        f"\n{n} texts, batch size {args.batch_size}, max_length {args.max_length}, float32, "
        f"mean pooling, tokenisation included; best (and median) of {args.repeats} interleaved "
        f"passes after a warm-up; {os.cpu_count()} CPUs, load average {load:.1f}.\n"
        f"PyTorch: torch.inference_mode(), default thread count "
        f"({torch_worker.info['threads']}). rectk: jax.jit on {jax.devices()[0]}, "
        f"XLA_FLAGS={os.environ['XLA_FLAGS']!r}; warm-up incl. compilation {warmup:.1f} s "
        "(excluded). Max |diff|: PyTorch rows against each other, rectk against PyTorch.\n"
    )
    width = max(len(r["implementation"]) for r in rows)
    print(f"{'implementation':<{width}}  {'sentences/s':>11}  {'(median)':>8}  {'max |diff|':>10}")
    for r in rows:
        print(
            f"{r['implementation']:<{width}}  {r['sentences_per_s']:>11.1f}  "
            f"{r['sentences_per_s_median']:>8.1f}  {r['max_abs_diff_vs_torch']:>10.2e}"
        )
    print(
        f"\nrectk / PyTorch (input order): {ratio:.2f}x; "
        f"rectk / PyTorch (length-sorted): {ratio_sorted:.2f}x"
    )
    ok = diffs["rectk"] < 1e-4
    print(f"parity (max abs diff < 1e-4): {'OK' if ok else 'FAILED'}")

    if args.json:
        report = {
            "texts": source,
            "n": n,
            "batch_size": args.batch_size,
            "max_length": args.max_length,
            "bucket": args.bucket,
            "repeats": args.repeats,
            "torch_threads": torch_worker.info["threads"],
            "xla_flags": os.environ["XLA_FLAGS"],
            "cpu_count": os.cpu_count(),
            "load_average_1min": load,
            "machine": platform.platform(),
            "rectk_warmup_seconds": warmup,
            "rows": rows,
            "ratio_rectk_over_torch": ratio,
            "ratio_rectk_over_torch_sorted": ratio_sorted,
            "parity_ok": ok,
        }
        args.json.write_text(json.dumps(report, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
