"""``codescaler execute``: run candidates against their problems' tests -> verdicts JSONL (layer L4).

Resumable: verdicts already in ``--output`` (keyed by task_id, candidate_id) are skipped, new ones are
appended one line at a time with a flush, and a torn last line left by a killed run is cut off first.
A manifest (``OUTPUT.manifest.json``) records the settings, the isolation in force, input hashes and
counts.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Any

from codescaler.cli import options as cli
from codescaler.data import file_sha256
from codescaler.errors import InputError
from codescaler.records import MIN_MEMORY_MB, Candidate, ExtractMode, Limits, Problem

logger = logging.getLogger(__name__)


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "execute",
        help="run candidates against the problems' tests in the sandbox",
        description="Execute each candidate (its `code`, or the code extracted from its `response`) "
        "against its problem's tests in an isolated sandbox (docs/sandbox.md) and append one verdict "
        "per line to OUTPUT: task_id, candidate_id, status, passed, total, seconds, detail. "
        "Re-running with the same OUTPUT resumes where it stopped.",
    )
    p.add_argument("--problems", required=True, type=Path, help="problems JSONL (canonical form)")
    p.add_argument("--candidates", required=True, type=Path, help="candidates JSONL (response and/or code)")
    p.add_argument("--output", required=True, type=Path, help="verdicts JSONL (appended, resumable)")
    p.add_argument("--workers", type=cli.positive_int, default=None, help="parallel runs (default: CPU count)")
    p.add_argument("--timeout", type=cli.positive_seconds, default=Limits.cpu_seconds, metavar="S",
                   help="CPU seconds per run; the wall-clock limit is twice this (default %(default)s)")
    p.add_argument("--memory-mb", type=cli.memory_mb, default=Limits.memory_mb,
                   help=f"address space per run, at least {MIN_MEMORY_MB} (default %(default)s)")
    cli.add_extract_mode(p, default=ExtractMode.LENIENT.value, old=("--extract",),
                     help="how code is read out of `response` (default: lenient, unlike the RM verbs: a "
                     "test verdict should judge the program, not its formatting)")
    p.add_argument("--skip-unknown", action="store_true",
                   help="skip (and count) candidates whose task_id is not in --problems instead of failing")
    p.add_argument("--no-cache", action="store_true", help="neither read nor write the verdict cache")
    p.add_argument("--cache-dir", type=Path, default=None,
                   help="verdict cache folder (default $CODESCALER_CACHE/verdicts or ~/.cache/codescaler/verdicts)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from codescaler import data

    problems = _index_problems(data.read_problems(args.problems), args.problems)
    candidates = data.read_candidates(args.candidates, prompts={t: p.prompt for t, p in problems.items()})
    unknown = _check_candidates(candidates, problems, args.candidates, args.problems, args.skip_unknown)
    with cli.exclusive_output(args.output, "execute"):
        return _run_locked(args, problems, candidates, unknown)


def _run_locked(args: argparse.Namespace, problems: dict[str, Problem], candidates: list[Candidate],
                unknown: int) -> int:
    from tqdm import tqdm

    from codescaler import data
    from codescaler.executor import ExecuteOptions, VerdictCache, default_cache_dir, execute
    from codescaler.sandbox import HARNESS_VERSION, isolation

    with cli.writing_output(args.output):  # cutting a torn tail writes
        store = data.AppendStore(args.output, data.task_candidate_key,
                                 fix="choose another --output, or delete the damaged line to resume")
    done = store.done()
    jobs = [(problems[c.task_id], c) for c in candidates
            if c.task_id in problems and (c.task_id, c.candidate_id) not in done]
    limits = Limits(cpu_seconds=args.timeout, wall_seconds=2 * args.timeout, memory_mb=args.memory_mb)
    options = ExecuteOptions(workers=args.workers, limits=limits, extract_mode=ExtractMode(args.extract_mode),
                             cache_dir=args.cache_dir, use_cache=not args.no_cache)
    options.validate()
    if options.use_cache:  # refuse an unusable cache now, before any output is written
        VerdictCache(options.cache_dir or default_cache_dir()).close()
    iso = isolation()
    manifest: dict[str, Any] = {
        "command": "execute", "harness_version": HARNESS_VERSION,
        "isolation": {"kind": iso.kind, "detail": iso.detail},
        "settings": {"limits": asdict(limits),
                     "workers": options.worker_count(), "extract": args.extract_mode, "cache": not args.no_cache},
        "inputs": {"problems": {"path": str(args.problems), "sha256": file_sha256(args.problems)},
                   "candidates": {"path": str(args.candidates), "sha256": file_sha256(args.candidates)}},
    }
    logger.info("%d candidates: %d already in %s, %d to run, %d unknown task_id skipped; isolation: %s",
                len(candidates), len(done), args.output, len(jobs), unknown, iso.kind)
    counts: Counter[str] = Counter()
    manifest_path = args.output.with_name(args.output.name + ".manifest.json")
    with cli.writing_output(args.output):
        data.atomic_write_json(manifest_path, {**manifest, "counts": None, "finished": False})
        with store, tqdm(total=len(jobs), unit="cand", desc="execute", disable=None, file=sys.stderr) as bar:
            for verdict in execute(jobs, options):
                store.append(data.verdict_to_json(verdict))  # one line, flushed: a killed run keeps every line
                counts[str(verdict.status)] += 1
                bar.update(1)
                bar.set_postfix(passed=counts["passed"], refresh=False)
        manifest["counts"] = {"candidates": len(candidates), "resumed": len(done), "ran": sum(counts.values()),
                              "unknown_task_id": unknown, "by_status": dict(sorted(counts.items()))}
        manifest["finished"] = True
        data.atomic_write_json(manifest_path, manifest)
    summary = ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "nothing to run"
    print(f"codescaler execute: {summary} -> {args.output} (isolation: {iso.kind})", file=sys.stderr)
    return 0


def _index_problems(problems: list[Problem], path: Path) -> dict[str, Problem]:
    index: dict[str, Problem] = {}
    for problem in problems:
        if problem.task_id in index:
            raise InputError(f"task_id {problem.task_id!r} appears twice", path=str(path), field="task_id",
                             fix="give every problem a unique task_id")
        index[problem.task_id] = problem
    return index


def _check_candidates(candidates: list[Candidate], problems: dict[str, Problem], path: Path,
                      problems_path: Path, skip_unknown: bool) -> int:
    """Fail on duplicate ids; fail on (or count, with --skip-unknown) candidates of unknown problems."""
    seen: set[tuple[str, str]] = set()
    unknown: Counter[str] = Counter()
    for cand in candidates:
        key = (cand.task_id, cand.candidate_id)
        if key in seen:
            raise InputError(f"candidate ({cand.task_id!r}, {cand.candidate_id!r}) appears twice", path=str(path),
                             field="candidate_id", fix="give every candidate of a task a unique candidate_id")
        seen.add(key)
        if cand.task_id not in problems:
            unknown[cand.task_id] += 1
    if unknown and not skip_unknown:
        ids = ", ".join(repr(t) for t, _ in unknown.most_common(5))
        raise InputError(f"{sum(unknown.values())} candidates name task_ids not in {problems_path} (e.g. {ids})",
                         path=str(path), field="task_id",
                         fix="pass the problems file these candidates were sampled for, or --skip-unknown")
    if unknown:
        logger.warning("skipping %d candidates of %d unknown task_ids", sum(unknown.values()), len(unknown))
    return sum(unknown.values())
