"""Fan (problem, candidate) jobs over workers, stream Verdicts, cache them by content (layer L2).

Contract:
- ``execute(jobs, options)`` yields one ``Verdict`` per job, in completion order, as soon as it is
  known. Candidates without a valid program (extraction failed) give ``Status.NO_CODE`` without running.
- Each job runs through ``codescaler.sandbox.run_candidate`` in a worker thread (the work itself happens in
  sandboxed child processes, so threads are enough). At most ``4 * workers`` jobs are in flight, so an
  unbounded job stream uses bounded memory.
- Cache: a verdict is stored under sha256(harness version, language, tests, setup, entry_point, code,
  limits) in ``<cache_dir>/verdicts.sqlite``; the same program on the same tests never runs twice.
  Verdicts with ``Status.ERROR`` (our fault) are not cached. The cache lives in ``$CODESCALER_CACHE``
  or ``~/.cache/codescaler/verdicts``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
from collections.abc import Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path

from codescaler.errors import InputError
from codescaler.extract import candidate_item, item_extraction
from codescaler.records import Candidate, ExtractMode, Limits, Problem, Status, Verdict
from codescaler.sandbox import HARNESS_VERSION, run_candidate, trusted_prelude

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExecuteOptions:
    """Settings for one execution run (resolved once by the CLI)."""

    workers: int | None = None                 # None: os.cpu_count()
    limits: Limits = field(default_factory=Limits)
    extract_mode: ExtractMode = ExtractMode.LENIENT
    cache_dir: Path | None = None              # None: default_cache_dir()
    use_cache: bool = True

    def validate(self) -> None:
        """Raise ``InputError`` naming the setting for a value the sandbox cannot run with; nothing is read."""
        if self.workers is not None and self.workers < 1:
            raise InputError(f"must be >= 1, got {self.workers}", field="workers",
                             fix="pass None for one worker per CPU")
        self.limits.validate()
        if self.extract_mode not in tuple(ExtractMode):
            raise InputError(f"unknown extraction mode {self.extract_mode!r}", field="extract_mode",
                             fix="use strict or lenient")

    def worker_count(self) -> int:
        return max(1, self.workers or os.cpu_count() or 1)


def default_cache_dir() -> Path:
    """``$CODESCALER_CACHE/verdicts`` if set, else ``~/.cache/codescaler/verdicts``."""
    root = os.environ.get("CODESCALER_CACHE")
    base = Path(root) if root else Path.home() / ".cache" / "codescaler"
    return base / "verdicts"


def program_of(problem: Problem, candidate: Candidate, mode: ExtractMode) -> tuple[str | None, str]:
    """The program to run for a candidate, or (None, why) when there is none.

    The program is the one the RM scores (``extract.item_extraction`` of ``extract.candidate_item``:
    ``candidate.code`` without its leading/trailing blank lines, else the code extracted from
    ``candidate.response``); this adds the reason in words for the ``NO_CODE`` verdict.
    """
    if candidate.code is None and candidate.response is None:
        return None, "candidate has neither response nor code"
    found = item_extraction(candidate_item(problem, candidate), mode)
    if found.valid and found.code is not None:
        return found.code, ""
    if candidate.code is not None:
        return None, "empty code"
    return None, f"no valid code in the response ({found.status}, {mode} extraction)"


def cache_key(problem: Problem, code: str, limits: Limits) -> str:
    """Content hash of everything that decides a verdict (not the ids)."""
    material = {
        "harness": HARNESS_VERSION,
        # the tests' helpers may come from the prompt (sandbox.trusted_prelude): part of what decides
        "prelude": trusted_prelude(problem.setup, problem.prompt, problem.tests.functional or "",
                                   problem.entry_point) if problem.tests.functional else "",
        "language": str(problem.language),
        "functional": problem.tests.functional,
        "stdio": [[c.input, c.output] for c in problem.tests.stdio],
        "setup": problem.setup,
        "entry_point": problem.entry_point,
        "code": code,
        "limits": asdict(limits),
    }
    blob = json.dumps(material, sort_keys=True, ensure_ascii=False).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()


class VerdictCache:
    """sqlite-backed map from cache key to a verdict (ids are not stored). Use from one thread."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / "verdicts.sqlite"
        try:
            directory.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=30)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("CREATE TABLE IF NOT EXISTS verdicts (key TEXT PRIMARY KEY, verdict TEXT NOT NULL)")
        except (OSError, sqlite3.Error) as err:  # a file where the folder should be, a corrupt database
            raise InputError(f"verdict cache unusable: {err}", path=str(self.path),
                             fix="delete it, pass another --cache-dir, or run with --no-cache") from None

    def get(self, key: str, task_id: str, candidate_id: str) -> Verdict | None:
        row = self._db.execute("SELECT verdict FROM verdicts WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        try:
            data = json.loads(row[0])
            return Verdict(task_id, candidate_id, Status(data["status"]), data.get("passed"),
                           data.get("total"), float(data.get("seconds", 0.0)), data.get("detail", ""))
        except (ValueError, KeyError, TypeError):
            logger.warning("ignoring an unreadable cache entry %s in %s", key[:12], self.path)
            return None

    def put(self, key: str, verdict: Verdict) -> None:
        if verdict.status is Status.ERROR:
            return
        data = {"status": str(verdict.status), "passed": verdict.passed, "total": verdict.total,
                "seconds": verdict.seconds, "detail": verdict.detail}
        with self._db:
            self._db.execute("INSERT OR REPLACE INTO verdicts VALUES (?, ?)", (key, json.dumps(data)))

    def close(self) -> None:
        self._db.close()


def _run_job(problem: Problem, candidate: Candidate, code: str, limits: Limits) -> Verdict:
    try:
        return run_candidate(problem, candidate.candidate_id, code, limits)
    except Exception as err:  # our fault: record it as data so one bad job does not stop the run
        logger.exception("sandbox failed on %s/%s", problem.task_id, candidate.candidate_id)
        return Verdict(problem.task_id, candidate.candidate_id, Status.ERROR,
                       detail=f"harness failure: {type(err).__name__}: {err}")


def execute(jobs: Iterable[tuple[Problem, Candidate]], options: ExecuteOptions | None = None) -> Iterator[Verdict]:
    """Run every (problem, candidate) job; yield Verdicts in completion order (see module docstring).

    Bad ``options`` raise ``InputError`` (``ExecuteOptions.validate``) at the first ``next()``."""
    options = options or ExecuteOptions()
    options.validate()
    cache = VerdictCache(options.cache_dir or default_cache_dir()) if options.use_cache else None
    workers = options.worker_count()
    inflight: dict[Future[Verdict], str | None] = {}
    try:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="codescaler-exec") as pool:
            for problem, candidate in jobs:
                code, why = program_of(problem, candidate, options.extract_mode)
                if code is None:
                    yield Verdict(problem.task_id, candidate.candidate_id, Status.NO_CODE, detail=why)
                    continue
                key = cache_key(problem, code, options.limits)
                cached = cache.get(key, problem.task_id, candidate.candidate_id) if cache else None
                if cached is not None:
                    yield cached
                    continue
                inflight[pool.submit(_run_job, problem, candidate, code, options.limits)] = key
                while len(inflight) >= 4 * workers:
                    yield from _drain(inflight, cache)
            while inflight:
                yield from _drain(inflight, cache)
    finally:
        for future in inflight:
            future.cancel()
        if cache is not None:
            cache.close()


def _drain(inflight: dict[Future[Verdict], str | None], cache: VerdictCache | None) -> Iterator[Verdict]:
    done, _ = wait(list(inflight), return_when=FIRST_COMPLETED)
    for future in done:
        key = inflight.pop(future)
        verdict = future.result()
        if cache is not None and key is not None:
            cache.put(key, verdict)
        yield verdict

