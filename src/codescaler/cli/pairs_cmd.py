"""``codescaler pairs``: labelled candidates -> preference pairs JSONL + manifest (layer L4)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from codescaler.cli import options
from codescaler.data import file_sha256
from codescaler.errors import InputError

logger = logging.getLogger(__name__)


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "pairs",
        help="form preference pairs from executed candidates",
        description="Pair passing with failing candidates of the same problem (docs/pairs.md). Writes "
        "JSONL rows task_id, prompt, chosen, rejected, chosen_id, rejected_id, margin, language and "
        "OUTPUT.manifest.json (rule, options, input hashes, counts).",
    )
    p.add_argument("--problems", required=True, type=Path, help="problems JSONL")
    p.add_argument("--candidates", required=True, type=Path, help="candidates JSONL (response and/or code)")
    p.add_argument("--verdicts", required=True, type=Path, help="verdicts JSONL from `codescaler execute`")
    p.add_argument("--output", required=True, type=Path, help="pairs JSONL to write")
    p.add_argument("--rule", choices=["codescaler", "pass-rate"], default="codescaler",
                   help="codescaler: all-pass vs any-fail (the paper); pass-rate: rate gap rule")
    p.add_argument("--min-pass-rate", type=float, default=0.8, help="pass-rate rule: better candidate's rate")
    p.add_argument("--min-gap", type=float, default=0.4, help="pass-rate rule: least rate gap")
    p.add_argument("--max-pairs-per-problem", type=options.cap, default=8, metavar="N",
                   help="cap per problem, 0 = no cap (default 8)")
    p.add_argument("--no-dedup", action="store_true", help="keep programs that normalise to the same code")
    p.add_argument("--keep-docstrings", action="store_true", help="dedup: programs differing in docstrings differ")
    p.add_argument("--exclude-invalid-rejected", action="store_true",
                   help="never use responses without valid code as rejected")
    p.add_argument("--length-balance", action="store_true",
                   help="drop pairs until the rejected is longer as often as shorter")
    p.add_argument("--cross-problem-fraction", type=float, default=0.0, metavar="F",
                   help="share of pairs whose rejected is a correct program of another problem")
    options.add_extract_mode(p, default="strict", help="how code is read out of responses (default: strict)")
    p.add_argument("--seed", type=int, default=0, help="seed of the pair sampling (default: %(default)s)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from codescaler import data
    from codescaler.pairs import PairRule, PairSettings, build_pairs
    from codescaler.records import ExtractMode

    for flag in ("problems", "candidates", "verdicts"):
        path = getattr(args, flag)
        if not path.is_file():
            raise InputError(f"--{flag} file not found", path=str(path), fix="check the path")
    if not args.output.parent.is_dir():
        raise InputError("output folder does not exist", path=str(args.output.parent),
                         fix="create it or choose another --output")
    settings = PairSettings(
        rule=PairRule(args.rule), min_pass_rate=args.min_pass_rate, min_gap=args.min_gap,
        include_invalid_rejected=not args.exclude_invalid_rejected, dedup=not args.no_dedup,
        strip_docstrings=not args.keep_docstrings, max_pairs_per_problem=args.max_pairs_per_problem,
        length_balance=args.length_balance, cross_problem_fraction=args.cross_problem_fraction,
        extract_mode=ExtractMode(args.extract_mode), seed=args.seed,
    )
    problems = data.read_problems(args.problems, require_tests=False)  # pairing needs only the prompt
    candidates = data.read_candidates(args.candidates, prompts={p.task_id: p.prompt for p in problems})
    verdicts = list(data.index_verdicts(args.verdicts).values())  # conflicting duplicates are refused
    paths = {"problems": str(args.problems), "candidates": str(args.candidates), "verdicts": str(args.verdicts)}
    hashes = {name: "sha256:" + file_sha256(Path(p)) for name, p in paths.items()}
    from tqdm import tqdm

    with tqdm(total=len(candidates), desc="pairs", unit="candidate", disable=None, delay=2) as bar:
        result = build_pairs(problems, candidates, verdicts, settings, input_hashes=hashes, paths=paths,
                             progress=bar.update)
    if not result.pairs:
        raise InputError(f"no pairs formed: {result.manifest['empty_reason']}", path=paths["verdicts"],
                         fix="execute more candidates per problem, or relax --rule/--min-gap")
    data.write_pairs(args.output, result.pairs)
    manifest_path = args.output.with_name(args.output.name + ".manifest.json")
    manifest = {"command": "codescaler pairs", "output": str(args.output), **result.manifest}
    try:
        from codescaler import __version__
        manifest["codescaler_version"] = __version__
    except ImportError:  # pragma: no cover - the package always defines it
        pass
    data.atomic_write_json(manifest_path, manifest)
    totals = result.manifest["totals"]
    logger.info("wrote %d pairs for %d of %d problems to %s (manifest %s)", totals["pairs"],
                totals["problems_with_pairs"], totals["problems"], args.output, manifest_path)
    return 0
