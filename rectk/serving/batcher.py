"""Micro-batching: concurrent requests answered by one batched call.

``MicroBatcher.submit(x)`` queues ``x`` and awaits its answer. A collector task takes the first
waiting request, then waits at most ``max_wait_s`` for more (up to ``max_batch``), and runs
``fn(list of requests) -> list of answers`` once for all of them in a worker thread, so the
event loop keeps accepting requests meanwhile; the next batch gathers while one runs. An
exception of ``fn`` is the answer of every request of its batch; the collector lives on.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import time
from collections.abc import Callable, Sequence
from typing import Any


class MicroBatcher:
    """See the module. Start it with ``start()`` inside a running event loop; ``stop()``
    cancels the collector and fails what is still queued."""

    def __init__(
        self,
        fn: Callable[[Sequence[Any]], Sequence[Any]],
        *,
        max_batch: int = 64,
        max_wait_s: float = 0.002,
    ):
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        if max_wait_s < 0:
            raise ValueError(f"max_wait_s must be >= 0, got {max_wait_s}")
        self.fn = fn
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.batches = 0  # calls of fn made
        self.batched = 0  # requests answered through them
        self._queue: asyncio.Queue | None = None
        self._task: asyncio.Task | None = None
        # One worker: the batched calls run one after another (the model is one device's).
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="rectk-batch")

    def start(self) -> None:
        self._queue = asyncio.Queue()
        self._task = asyncio.get_running_loop().create_task(self._collect())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        while self._queue is not None and not self._queue.empty():
            _, fut = self._queue.get_nowait()
            if not fut.done():
                fut.set_exception(RuntimeError("the server is shutting down"))
        self._pool.shutdown(wait=False)

    async def submit(self, request: Any) -> Any:
        """``request``'s answer, computed in a batch with whatever else is waiting."""
        if self._queue is None:
            raise RuntimeError("MicroBatcher.start() was not called")
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        await self._queue.put((request, fut))
        return await fut

    async def _collect(self) -> None:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._queue.get()]
            deadline = time.monotonic() + self.max_wait_s
            while len(batch) < self.max_batch:
                # what is already waiting joins at once; then wait out the deadline
                if not self._queue.empty():
                    batch.append(self._queue.get_nowait())
                    continue
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(self._queue.get(), left))
                except TimeoutError:
                    break
            live = [(r, f) for r, f in batch if not f.cancelled()]
            if not live:
                continue
            try:
                answers = await loop.run_in_executor(self._pool, self.fn, [r for r, _ in live])
                if len(answers) != len(live):
                    raise RuntimeError(f"{len(answers)} answers for {len(live)} requests")
            except Exception as err:  # every request of the batch gets the error
                for _, fut in live:
                    if not fut.done():
                        fut.set_exception(err)
                continue
            self.batches += 1
            self.batched += len(live)
            for (_, fut), answer in zip(live, answers, strict=True):
                if not fut.done():
                    fut.set_result(answer)
