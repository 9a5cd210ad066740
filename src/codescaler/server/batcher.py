"""Micro-batching of concurrent scoring requests into one model call (layer L3).

Contract
--------
- ``submit(prompts, responses, languages)`` enqueues one request (a group of items) on a bounded
  ``asyncio.Queue`` and awaits its ``Score`` list. A full queue raises ``Overloaded`` at once (the app
  answers 503 + Retry-After) instead of letting latency grow without bound.
- One collector task takes the first waiting request, then keeps taking requests until ``max_batch``
  items are gathered or ``max_wait_ms`` have passed since the first one, and runs the whole batch through
  ``score_fn`` in ONE worker thread (the Scorer is not thread-safe, and a single thread keeps the event
  loop free to accept connections while the model runs). A request is never split: one larger than
  ``max_batch`` forms its own batch.
- While the model runs, new requests queue up and form the next batch, so under load batches fill
  without waiting.
- If a batch fails, each of its requests is retried alone, so one bad request cannot fail the others;
  the failing one gets the exception.
- A request whose caller went away (cancelled future, e.g. a dropped client) is still scored if already
  in a batch, and its result is dropped.
- ``close()`` stops accepting, scores everything already queued (drain), then stops the thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from codescaler.records import Score

logger = logging.getLogger(__name__)

ScoreFn = Callable[[list[str], list[str], list[str | None]], list[Score]]


class Overloaded(Exception):
    """The queue is full: the client should retry after ``retry_after_s`` seconds."""

    def __init__(self, queued: int, retry_after_s: float) -> None:
        self.queued = queued
        self.retry_after_s = retry_after_s
        super().__init__(f"scoring queue is full ({queued} requests waiting); retry after {retry_after_s:g} s")


class ShuttingDown(Exception):
    """The batcher is closing and accepts no new work."""


@dataclass
class _Job:
    prompts: list[str]
    responses: list[str]
    languages: list[str | None]
    future: asyncio.Future[list[Score]] = field(repr=False)


class Batcher:
    """Collects concurrent requests into batches for one ``score_fn`` running in one worker thread."""

    def __init__(self, score_fn: ScoreFn, *, max_batch: int = 64, max_wait_ms: float = 5.0,
                 max_queue: int = 1024, retry_after_s: float = 1.0) -> None:
        if max_batch < 1 or max_queue < 1 or max_wait_ms < 0:
            raise ValueError(f"need max_batch >= 1, max_queue >= 1, max_wait_ms >= 0; got {max_batch}, "
                             f"{max_queue}, {max_wait_ms}")
        self._score_fn = score_fn
        self.max_batch = max_batch
        self.max_wait_s = max_wait_ms / 1000.0
        self.retry_after_s = retry_after_s
        self._max_queue = max_queue
        self._queue: asyncio.Queue[_Job] | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.batches = 0        # counters for /info and tests
        self.items_scored = 0

    # ----------------------------------------------------------------------------------------------
    async def start(self) -> None:
        """Create the queue, the worker thread and the collector task (inside the running loop)."""
        self._queue = asyncio.Queue(maxsize=self._max_queue)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="codescaler-scorer")
        self._task = asyncio.create_task(self._collect_forever(self._queue), name="codescaler-batcher")

    async def close(self, timeout_s: float = 60.0) -> None:
        """Stop accepting, drain what is queued (up to ``timeout_s``), then stop the worker thread."""
        self._closing = True
        if self._queue is not None and self._task is not None:
            try:
                await asyncio.wait_for(self._queue.join(), timeout=timeout_s)
            except TimeoutError:
                logger.warning("scoring queue not drained after %.0f s; dropping the rest", timeout_s)
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._executor is not None:
            self._executor.shutdown(wait=True)

    @property
    def queued(self) -> int:
        return self._queue.qsize() if self._queue is not None else 0

    async def submit(self, prompts: Sequence[str], responses: Sequence[str],
                     languages: Sequence[str | None] | None = None) -> list[Score]:
        """Score one request's items; raises ``Overloaded`` when the queue is full, ``ShuttingDown``
        after ``close()``, or whatever ``score_fn`` raised for these items."""
        if self._queue is None:
            raise RuntimeError("Batcher.start() was not called")
        if self._closing:
            raise ShuttingDown("the server is shutting down")
        if not prompts:
            return []
        loop = asyncio.get_running_loop()
        langs: list[str | None] = list(languages) if languages is not None else [None] * len(prompts)
        job = _Job(list(prompts), list(responses), langs, loop.create_future())
        try:
            self._queue.put_nowait(job)
        except asyncio.QueueFull:
            raise Overloaded(self._queue.qsize(), self.retry_after_s) from None
        return await job.future

    # ----------------------------------------------------------------------------------------------
    async def _collect_forever(self, queue: asyncio.Queue[_Job]) -> None:
        while True:
            first = await queue.get()
            jobs = [first]
            size = len(first.prompts)
            deadline = time.monotonic() + self.max_wait_s
            while size < self.max_batch:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    job = await asyncio.wait_for(queue.get(), timeout=remaining)
                except TimeoutError:
                    break
                jobs.append(job)
                size += len(job.prompts)
            try:
                await self._run(jobs)
            finally:
                for _ in jobs:
                    queue.task_done()

    async def _run(self, jobs: list[_Job]) -> None:
        live = [job for job in jobs if not job.future.done()]
        if not live:
            return
        loop = asyncio.get_running_loop()
        prompts = [p for job in live for p in job.prompts]
        responses = [r for job in live for r in job.responses]
        languages = [lang for job in live for lang in job.languages]
        started = time.perf_counter()
        try:
            scores = await loop.run_in_executor(self._executor, self._score_fn, prompts, responses, languages)
        except Exception as err:
            if len(live) == 1:
                _settle(live[0], error=err)
                return
            logger.warning("a batch of %d requests failed (%s); retrying them one by one",
                           len(live), type(err).__name__)
            for job in live:
                await self._run([job])
            return
        self.batches += 1
        self.items_scored += len(prompts)
        logger.debug("scored a batch of %d items from %d requests in %.3f s", len(prompts), len(live),
                      time.perf_counter() - started)
        start = 0
        for job in live:
            end = start + len(job.prompts)
            _settle(job, result=scores[start:end])
            start = end


def _settle(job: _Job, *, result: list[Score] | None = None, error: BaseException | None = None) -> None:
    if job.future.done():  # the caller went away; nobody reads this result
        return
    if error is not None:
        job.future.set_exception(error)
    else:
        job.future.set_result(result or [])
