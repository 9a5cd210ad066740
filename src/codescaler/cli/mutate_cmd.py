"""``codescaler mutate``: reference solutions -> synthetic near-miss candidates (layer L4).

Writes the reference and its AST mutants as candidates (``code`` field); with ``--execute`` also runs
them through the executor and writes their verdicts, so ``codescaler pairs`` can pair passing programs
with the failing mutants.
"""

from __future__ import annotations

import argparse
import logging
from collections import Counter
from pathlib import Path
from typing import Any

from codescaler.cli import options
from codescaler.errors import InputError

logger = logging.getLogger(__name__)


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "mutate",
        help="make near-miss candidates by mutating reference solutions",
        description="For each problem with a reference: the reference ({task_id}/reference) and up to N "
        "single-site AST mutants ({task_id}/mut-{k}-{kind}) as candidate JSONL with code and mutation (the "
        "kind) fields, plus OUTPUT.manifest.json. --execute also labels them by running the tests (docs/pairs.md).",
    )
    p.add_argument("--problems", required=True, type=Path, help="problems JSONL (rows with a reference)")
    p.add_argument("--output", required=True, type=Path, help="candidates JSONL to write")
    p.add_argument("--per-problem", type=int, default=8, metavar="N", help="mutants per problem (default 8)")
    p.add_argument("--kinds", default=None,
                   help="comma-separated mutation kinds (default: all): " + _kind_names())
    options.add_limit(p, what="problems with a reference")
    p.add_argument("--no-reference", action="store_true", help="do not include the reference as a candidate")
    p.add_argument("--seed", type=int, default=0, help="seed of the mutant choice (default: %(default)s)")
    p.add_argument("--execute", action="store_true", help="run every candidate and write --verdicts")
    p.add_argument("--verdicts", type=Path, default=None, help="verdicts JSONL to write (with --execute)")
    p.add_argument("--workers", type=int, default=None, help="parallel executions (default: one per CPU)")
    p.add_argument("--timeout", type=float, default=None, metavar="S",
                   help="per-program CPU and wall-clock limit in seconds (default: the sandbox's)")
    p.set_defaults(func=run)


def _kind_names() -> str:
    from codescaler.mutate import MutationKind

    return ", ".join(k.value for k in MutationKind)


def run(args: argparse.Namespace) -> int:
    from codescaler import data
    from codescaler.data import file_sha256
    from codescaler.mutate import MutateSettings, mutate_problems

    kinds = tuple(k.strip() for k in args.kinds.split(",") if k.strip()) if args.kinds else None
    settings = MutateSettings(per_problem=args.per_problem, kinds=kinds, include_reference=not args.no_reference,
                              limit=args.limit, seed=args.seed)
    settings.validate()
    if args.timeout is not None and args.timeout <= 0:
        raise InputError(f"--timeout must be > 0 seconds, got {args.timeout}")
    if args.execute != (args.verdicts is not None):
        raise InputError("--execute and --verdicts go together", fix="pass both, or neither")
    if not args.problems.is_file():
        raise InputError("--problems file not found", path=str(args.problems), fix="check the path")
    for out in [args.output, args.verdicts]:
        if out is not None and not out.parent.is_dir():
            raise InputError("output folder does not exist", path=str(out.parent), fix="create it first")

    problems = data.read_problems(args.problems, require_tests=args.execute)
    made = mutate_problems(problems, settings, path=str(args.problems))
    candidates, descriptions = made.candidates, made.descriptions
    kind_counts = Counter(c.mutation for c in candidates if c.mutation is not None)
    data.write_candidates(args.output, candidates)
    manifest: dict[str, Any] = {
        "command": "codescaler mutate",
        "seed": args.seed,
        "per_problem": args.per_problem,
        "kinds": list(kinds) if kinds else "all",
        "input_hashes": {"problems": "sha256:" + file_sha256(args.problems)},
        "totals": {"problems": len(problems), "with_reference": made.with_reference,
                   "unparsable_references": made.unparsable,
                   "candidates": len(candidates), "mutants": len(descriptions), "mutants_by_kind": dict(kind_counts)},
        "mutants": descriptions,
    }
    if args.execute:
        manifest["execution"] = _execute(problems, candidates, args.verdicts, args.workers, args.timeout)
    data.atomic_write_json(args.output.with_name(args.output.name + ".manifest.json"), manifest)
    logger.info("wrote %d candidates (%d mutants) for %d problems to %s", len(candidates), len(descriptions),
                made.with_reference, args.output)
    return 0


def _execute(problems: list[Any], candidates: list[Any], verdicts_path: Path, workers: int | None,
             timeout: float | None) -> dict[str, Any]:
    """Run every candidate, write the verdicts, and return the kill-rate summary for the manifest."""
    from tqdm import tqdm

    from codescaler import data
    from codescaler.executor import ExecuteOptions, execute
    from codescaler.mutate import kill_summary
    from codescaler.records import Limits

    by_task = {p.task_id: p for p in problems}
    jobs = [(by_task[c.task_id], c) for c in candidates]
    verdicts = []
    # streamed line by line (flushed), so an interrupted run keeps what it has executed; a new run starts
    # afresh (the mutants may differ), so the verdicts of an old one are removed first
    verdicts_path.unlink(missing_ok=True)
    with data.AppendStore(verdicts_path, data.task_candidate_key) as store, \
            tqdm(total=len(jobs), desc="executing", unit="program") as bar:
        limits = Limits() if timeout is None else Limits(cpu_seconds=timeout, wall_seconds=timeout)
        for verdict in execute(jobs, ExecuteOptions(workers=workers, limits=limits)):
            store.append(data.verdict_to_json(verdict))
            verdicts.append(verdict)
            bar.update(1)
    summary = kill_summary(verdicts, candidates)
    logger.info("references passing: %d/%d; mutants killed: %d/%d (%.1f%%) on problems whose reference passes",
                summary["references_passed"], summary["references"], summary["mutants_killed"],
                summary["mutants_counted"], 100 * (summary["kill_rate"] or 0.0))
    return summary
