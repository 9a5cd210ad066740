"""Micro-batching of concurrent scoring requests into one model call (layer L3).

Contract
--------
- ``submit(prompts, responses, languages)`` enqueues one request on a bounded ``asyncio.Queue`` and
  awaits its ``Score`` list. A full queue raises ``Overloaded`` at once (the app answers 503 +
  Retry-After) instead of letting latency grow without bound.
- A request of more than ``max_batch`` items is split into chunks of ``max_batch`` items that go through
  the queue one after another, at most ``CHUNKS_IN_FLIGHT`` at a time: the model never sees more than
  ``max_batch`` items at once (memory stays bounded whatever the request size), and other clients'
  requests are served between the chunks of a large one. Only the first chunk can meet ``Overloaded``;
  later chunks of an admitted request wait for room.
- One collector task takes the first waiting chunk, then keeps taking chunks until ``max_batch`` items
  are gathered or ``max_wait_ms`` have passed since the first one, and runs the whole batch through
  ``score_fn`` in ONE worker thread (the Scorer is not thread-safe, and a single thread keeps the event
  loop free to accept connections while the model runs).
- While the model runs, new requests queue up and form the next batch, so under load batches fill
  without waiting.
- If a batch fails, it is split in two halves that are retried separately, recursively, until the failing
  request is alone: one bad request among k costs about 2*log2(k) extra model calls (retrying all k one
  by one cost k calls of one request each and cut every other client's throughput ~3x). The failing
  request gets the exception; the others their scores.
- A request whose caller went away (cancelled) is still scored if already in a batch, and its result is
  dropped; its chunks not yet queued are never queued.
- If the collector itself stops (a fault outside ``score_fn``'s ordinary exceptions), every waiting and
  later request fails at once with ``BatcherStopped`` and ``failure`` says why: nothing hangs, and the
  app's ``/health`` reports it.
- ``close()`` stops accepting, finishes every admitted request (drain), then stops the thread.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from codescaler.records import Score

logger = logging.getLogger(__name__)

ScoreFn = Callable[[list[str], list[str], list[str | None]], list[Score]]

# Chunks of one large request queued at a time: two keep the model busy (the next chunk waits while one
# runs) without letting one request fill the queue ahead of everybody else.
CHUNKS_IN_FLIGHT = 2
MAX_WAIT_MS_LIMIT = 60_000.0


class Overloaded(Exception):
    """The queue is full: the client should retry after ``retry_after_s`` seconds."""

    def __init__(self, queued: int, retry_after_s: float) -> None:
        self.queued = queued
        self.retry_after_s = retry_after_s
        super().__init__(f"scoring queue is full ({queued} requests waiting); retry after {retry_after_s:g} s")


class ShuttingDown(Exception):
    """The batcher is closing and accepts no new work."""


class BatcherStopped(Exception):
    """The collector task stopped on a fault; no request can be scored until the server restarts."""


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
        if max_batch < 1 or max_queue < 1 or not 0 <= max_wait_ms <= MAX_WAIT_MS_LIMIT:
            raise ValueError(f"need max_batch >= 1, max_queue >= 1, 0 <= max_wait_ms <= {MAX_WAIT_MS_LIMIT:g}; "
                             f"got {max_batch}, {max_queue}, {max_wait_ms}")
        if not math.isfinite(retry_after_s) or retry_after_s < 0:
            raise ValueError(f"need a finite retry_after_s >= 0, got {retry_after_s}")
        self._score_fn = score_fn
        self.max_batch = max_batch
        self.max_wait_s = max_wait_ms / 1000.0
        self.retry_after_s = retry_after_s
        self._max_queue = max_queue
        self._queue: asyncio.Queue[_Job] | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._active = 0                     # submit() calls in progress (close() waits for them)
        self._idle: asyncio.Event | None = None
        self.failure: str | None = None      # why the collector stopped; None while it runs
        self.batches = 0        # counters for /info and tests
        self.items_scored = 0
        self.failed_batches = 0

    # ----------------------------------------------------------------------------------------------
    async def start(self) -> None:
        """Create the queue, the worker thread and the collector task (inside the running loop)."""
        self._queue = asyncio.Queue(maxsize=self._max_queue)
        self._idle = asyncio.Event()
        self._idle.set()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="codescaler-scorer")
        self._task = asyncio.create_task(self._collect_forever(self._queue), name="codescaler-batcher")
        self._task.add_done_callback(self._on_collector_done)

    async def close(self, timeout_s: float = 60.0) -> None:
        """Stop accepting, finish admitted requests (up to ``timeout_s``), then stop the worker thread."""
        self._closing = True
        if self._queue is not None and self._task is not None and self._idle is not None:
            try:
                await asyncio.wait_for(self._drain(self._queue, self._idle), timeout=timeout_s)
            except TimeoutError:
                logger.warning("scoring queue not drained after %.0f s; dropping the rest", timeout_s)
            self._task.cancel()
            await asyncio.wait({self._task})  # a collector that died on a fault: already logged, not re-raised
        if self._executor is not None:
            self._executor.shutdown(wait=True)

    @staticmethod
    async def _drain(queue: asyncio.Queue[_Job], idle: asyncio.Event) -> None:
        await idle.wait()   # every admitted request has all its chunks answered (or was cancelled)
        await queue.join()  # and what cancelled requests left in the queue has been taken

    @property
    def queued(self) -> int:
        return self._queue.qsize() if self._queue is not None else 0

    async def submit(self, prompts: Sequence[str], responses: Sequence[str],
                     languages: Sequence[str | None] | None = None) -> list[Score]:
        """Score one request's items; raises ``Overloaded`` when the queue is full, ``ShuttingDown``
        after ``close()``, ``BatcherStopped`` when the collector has stopped, or whatever ``score_fn``
        raised for these items."""
        if self._queue is None or self._idle is None:
            raise RuntimeError("Batcher.start() was not called")
        if self.failure is not None:
            raise BatcherStopped(self.failure)
        if self._closing:
            raise ShuttingDown("the server is shutting down")
        if not prompts:
            return []
        langs: list[str | None] = list(languages) if languages is not None else [None] * len(prompts)
        starts = range(0, len(prompts), self.max_batch)
        first = self._job(prompts, responses, langs, 0)
        try:
            self._queue.put_nowait(first)
        except asyncio.QueueFull:
            raise Overloaded(self._queue.qsize(), self.retry_after_s) from None
        self._active += 1
        self._idle.clear()
        pending: deque[_Job] = deque([first])
        results: list[Score] = []
        try:
            for start in starts[1:]:
                while len(pending) >= CHUNKS_IN_FLIGHT:
                    results.extend(await pending.popleft().future)
                job = self._job(prompts, responses, langs, start)
                pending.append(job)
                await self._queue.put(job)
                if self.failure is not None:  # the collector stopped while we waited for room
                    _settle(job, error=BatcherStopped(self.failure))
            while pending:
                results.extend(await pending.popleft().future)
        finally:
            for job in pending:  # a chunk failed or the caller went away: drop the rest
                job.future.cancel()
            self._active -= 1
            if self._active == 0:
                self._idle.set()
        return results

    def _job(self, prompts: Sequence[str], responses: Sequence[str], langs: list[str | None], start: int) -> _Job:
        end = start + self.max_batch
        return _Job(list(prompts[start:end]), list(responses[start:end]), langs[start:end],
                    asyncio.get_running_loop().create_future())

    # ----------------------------------------------------------------------------------------------
    def _on_collector_done(self, task: asyncio.Task[None]) -> None:
        if self._closing and task.cancelled():
            return  # the normal end of close()
        error = None if task.cancelled() else task.exception()
        self.failure = f"{type(error).__name__}: {error}" if error is not None else "the collector was cancelled"
        logger.error("the scoring collector stopped (%s); every request now fails with 503", self.failure,
                     exc_info=error)
        queue = self._queue
        while queue is not None and not queue.empty():
            _settle(queue.get_nowait(), error=BatcherStopped(self.failure))
            queue.task_done()

    async def _collect_forever(self, queue: asyncio.Queue[_Job]) -> None:
        jobs: list[_Job] = []
        try:
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
                jobs = []
        except BaseException as err:
            # Whatever stops the collector, the requests it holds get an answer instead of hanging.
            for job in jobs:
                _settle(job, error=BatcherStopped(f"{type(err).__name__}: {err}"))
            raise

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
            if len(scores) != len(prompts):
                raise RuntimeError(f"score_fn returned {len(scores)} scores for {len(prompts)} items")
        except Exception as err:
            self.failed_batches += 1
            if len(live) == 1:
                _settle(live[0], error=err)
                return
            logger.warning("a batch of %d requests failed (%s); retrying it in halves to isolate the failing "
                           "request", len(live), type(err).__name__)
            half = len(live) // 2
            await self._run(live[:half])
            await self._run(live[half:])
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
