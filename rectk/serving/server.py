"""``rectk serve``: an exported run behind an HTTP JSON API (Starlette on uvicorn).

Endpoints:

* ``POST /recommend`` ``{"history": ["item", ...]}`` or ``{"user": "learner id"}``, optional
  ``"k"`` (default 10) -> ``{"items": [{"item", "title", "score"}, ...], "k": k}``.
  Concurrent requests are micro-batched into one jitted call (``MicroBatcher``).
* ``GET /health`` -> ``{"status": "ok", ...}`` with the export's shape.
* ``GET /metrics`` -> requests and errors by status, latency quantiles (ms) over the last
  ``LATENCY_WINDOW`` requests, batches and their mean size.

A bad request gets a 4xx JSON ``{"error": "..."}`` saying what was wrong (malformed JSON 400,
unknown learner 404, a body or history over its limit 413, anything else about the fields
422); an unexpected failure a 500 of the same shape. The server never stops on input.
"""

from __future__ import annotations

import collections
import contextlib
import gc
import json
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from rectk.serving.artifact import Artifact, RequestError
from rectk.serving.batcher import MicroBatcher

LATENCY_WINDOW = 10_000
_FIELDS = frozenset({"history", "user", "k"})


class Stats:
    """Request counts by status and a window of recent latencies."""

    def __init__(self) -> None:
        self.started = time.time()
        self.by_status: collections.Counter[int] = collections.Counter()
        self.latency_ms: collections.deque[float] = collections.deque(maxlen=LATENCY_WINDOW)

    def record(self, status: int, ms: float) -> None:
        self.by_status[status] += 1
        if status == 200:
            self.latency_ms.append(ms)

    def summary(self, batcher: MicroBatcher) -> dict[str, Any]:
        lat = np.asarray(self.latency_ms, np.float64)
        quantiles = (
            {f"p{q}": round(float(np.percentile(lat, q)), 3) for q in (50, 90, 99)}
            if len(lat)
            else {}
        )
        return {
            "uptime_s": round(time.time() - self.started, 1),
            "requests": sum(self.by_status.values()),
            "by_status": {str(s): n for s, n in sorted(self.by_status.items())},
            "latency_ms": {"window": len(lat), **quantiles},
            "batches": batcher.batches,
            "mean_batch": round(batcher.batched / batcher.batches, 2) if batcher.batches else 0,
        }


def parse(art: Artifact, body: bytes, *, max_history: int) -> tuple[np.ndarray, int]:
    """A request body -> ``(the history as model ids, k)``; a ``RequestError`` otherwise."""
    try:
        obj = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise RequestError(f"malformed JSON: {err}", 400) from None
    if not isinstance(obj, dict):
        raise RequestError(
            f"the body must be a JSON object, got {type(obj).__name__}: "
            'e.g. {"history": ["item", ...], "k": 10}',
            400,
        )
    unknown = sorted(set(obj) - _FIELDS)
    if unknown:
        raise RequestError(f"unknown field(s) {', '.join(unknown)}: expected history or user, k")
    if ("history" in obj) == ("user" in obj):
        raise RequestError("give exactly one of history (a list of item ids) or user")
    k = obj.get("k", 10)
    if not isinstance(k, int) or isinstance(k, bool):
        raise RequestError(f"k must be an integer, got {json.dumps(k)}")
    if not 1 <= k <= art.k_max:
        raise RequestError(f"k must lie in 1..{art.k_max} (this export's k_max), got {k}")
    if "user" in obj:
        if not isinstance(obj["user"], str):
            raise RequestError(f"user must be a string, got {json.dumps(obj['user'])[:80]}")
        rows = art.history_of(obj["user"])
    else:
        history = obj["history"]
        if not isinstance(history, list) or not all(isinstance(h, str) for h in history):
            raise RequestError("history must be a list of item id strings")
        if len(history) > max_history:
            raise RequestError(
                f"a history of {len(history)} items exceeds this server's limit of "
                f"{max_history} (--max-history)",
                413,
            )
        rows = art.encode(history)
    if len(rows) == 0:
        raise RequestError("the history is empty: at least one item is needed")
    return rows, k


def create_app(
    art: Artifact,
    *,
    max_batch: int = 64,
    max_wait_ms: float = 2.0,
    max_history: int = 2048,
    max_body_bytes: int = 1 << 20,
    warm_up: bool = True,
) -> Starlette:
    """The ASGI application serving ``art`` (see the module)."""
    stats = Stats()

    def score(requests: Sequence[tuple[np.ndarray, int]]) -> list[list[dict]]:
        k = max(k for _, k in requests)
        scores, ids = art.top_k([rows for rows, _ in requests], k)
        return [art.items(scores[i, :k], ids[i, :k]) for i, (_, k) in enumerate(requests)]

    batcher = MicroBatcher(score, max_batch=max_batch, max_wait_s=max_wait_ms / 1000)

    def error(status: int, message: str, t0: float) -> JSONResponse:
        stats.record(status, (time.perf_counter() - t0) * 1000)
        return JSONResponse({"error": message}, status_code=status)

    async def recommend(request: Request) -> JSONResponse:
        t0 = time.perf_counter()
        try:
            size = int(request.headers.get("content-length", "0") or 0)
        except ValueError:
            return error(400, "malformed Content-Length header", t0)
        if size > max_body_bytes:
            return error(413, f"a body of {size} bytes exceeds the limit of {max_body_bytes}", t0)
        body = await request.body()
        if len(body) > max_body_bytes:
            return error(413, f"a body over {max_body_bytes} bytes", t0)
        try:
            rows, k = parse(art, body, max_history=max_history)
            items = await batcher.submit((rows, k))
        except RequestError as err:
            return error(err.status, str(err), t0)
        except Exception as err:  # a fault of ours: say so, keep serving
            return error(500, f"internal error: {type(err).__name__}: {err}", t0)
        stats.record(200, (time.perf_counter() - t0) * 1000)
        return JSONResponse({"items": items, "k": k})

    async def health(_: Request) -> JSONResponse:
        return JSONResponse(
            {
                "status": "ok",
                "items": art.num_items,
                "k_max": art.k_max,
                "learners": len(art.user_ids),
                "source": art.manifest.get("source", {}),
            }
        )

    async def metrics(_: Request) -> JSONResponse:
        return JSONResponse(stats.summary(batcher))

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        if warm_up:  # compile every batch bucket now, not on the first requests
            probe = np.asarray([1], np.int32)
            b = 1
            while True:
                art.top_k([probe] * b, art.k_max)
                if b >= max_batch:
                    break
                b *= 2
        # Everything loaded so far lives as long as the server: move it out of the cyclic
        # garbage collector's sight, so its full collections stop scanning it under load.
        gc.collect()
        gc.freeze()
        batcher.start()
        yield
        await batcher.stop()

    return Starlette(
        routes=[
            Route("/recommend", recommend, methods=["POST"]),
            Route("/health", health, methods=["GET"]),
            Route("/metrics", metrics, methods=["GET"]),
        ],
        lifespan=lifespan,
    )


def serve(
    export: str,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    max_batch: int = 64,
    max_wait_ms: float = 2.0,
    max_history: int = 2048,
    access_log: bool = False,
) -> None:
    """Loads the export and serves it until interrupted."""
    import uvicorn

    app = create_app(
        Artifact(export), max_batch=max_batch, max_wait_ms=max_wait_ms, max_history=max_history
    )
    uvicorn.run(app, host=host, port=port, log_level="info", access_log=access_log)
