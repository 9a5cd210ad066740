"""``codescaler score``: score responses with a reward model (JSONL in, JSONL out).

Input: one JSON object per line with ``id``, ``prompt`` (the problem statement), ``response`` (the raw
model answer; code is extracted from it) and optionally ``language`` (default python). Output: every
input line's fields plus ``raw_score`` (null when no valid code), ``valid`` and ``reward``, in input
order, written atomically (a temp file in the output's folder, then renamed), so an interrupted run
never leaves a half-written output.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

from codescaler.errors import InputError
from codescaler.records import Language

logger = logging.getLogger(__name__)

_CHUNK = 256  # items handed to the Scorer at a time: bounds memory and drives the progress bar


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "score",
        help="score responses with a reward model",
        description="Extract code from each response, score it with an RM, and shape the reward "
        "(no valid code -> raw_score null, reward 0).",
    )
    parser.add_argument("--model", default="default",
                        help="'default', a checkpoint folder, a short name (minilm, qwen2.5-coder-0.5b-instruct) "
                        "or a hub id (default: %(default)s)")
    parser.add_argument("--input", required=True, type=Path, help="JSONL with id, prompt, response[, language]")
    parser.add_argument("--output", required=True, type=Path, help="JSONL to write (input fields + scores)")
    parser.add_argument("--batch-size", type=int, default=16, help="sequences per forward pass (default: 16)")
    parser.add_argument("--max-length", type=int, default=None, help="token limit (default: the checkpoint's)")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    parser.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"])
    parser.add_argument("--extract-mode", choices=["strict", "lenient"], default=None,
                        help="override the checkpoint's extraction mode (default: strict)")
    parser.add_argument("--input-format", choices=["chat_template", "plain"], default=None,
                        help="for plain HF reward models without codescaler.json")
    parser.add_argument("--no-prefix-sharing", dest="prefix_sharing", action="store_false",
                        help="run every item in full instead of reusing a problem's shared prefix across its "
                        "candidates (same scores to float noise; for timing comparisons)")
    parser.set_defaults(func=run)


def read_items(path: Path) -> list[dict[str, Any]]:
    """Read and validate the input JSONL; raises InputError naming the line and field."""
    from codescaler.data.jsonl import parse_json_line, read_text_input

    text = read_text_input(path, fix="pass the --input JSONL file")
    items = []
    seen: dict[str, int] = {}
    for number, line in enumerate(text.split("\n"), start=1):  # not splitlines(): U+2028 in strings
        if not line.strip():
            continue
        item = parse_json_line(line, path, number)
        for field in ("id", "prompt", "response"):
            if field not in item:
                raise InputError("missing", path=str(path), line=number, field=field,
                                 fix="each line needs id, prompt and response")
        for field in ("prompt", "response"):
            if not isinstance(item[field], str):
                raise InputError(f"expected a string, got {type(item[field]).__name__}", path=str(path),
                                 line=number, field=field)
        language = item.get("language")
        if language is not None and not isinstance(language, str):
            raise InputError(f"expected a string, got {language!r}", path=str(path), line=number, field="language")
        try:
            Language.parse(language)
        except ValueError as err:
            raise InputError(str(err), path=str(path), line=number, field="language") from None
        key = json.dumps(item["id"])
        if key in seen:
            raise InputError(f"duplicate id {item['id']!r} (first on line {seen[key]})", path=str(path),
                             line=number, field="id", fix="give every line a unique id")
        seen[key] = number
        items.append(item)
    return items


def _write_atomically(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            for row in rows:
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from codescaler.scorer import Scorer

    items = read_items(args.input)
    scorer = Scorer.load(args.model, device=args.device, dtype=args.dtype, batch_size=args.batch_size,
                         extract_mode=args.extract_mode, max_length=args.max_length,
                         input_format=args.input_format, prefix_sharing=args.prefix_sharing)
    rows: list[dict[str, Any]] = []
    with tqdm(total=len(items), desc="score", unit="item", disable=None) as bar:
        for start in range(0, len(items), _CHUNK):
            chunk = items[start:start + _CHUNK]
            scores = scorer.score([it["prompt"] for it in chunk], [it["response"] for it in chunk],
                                  [it.get("language") for it in chunk])
            for item, score in zip(chunk, scores, strict=True):
                rows.append({**item, "raw_score": score.raw_score, "valid": score.valid, "reward": score.reward})
            bar.update(len(chunk))
    _write_atomically(args.output, rows)
    valid = sum(1 for row in rows if row["valid"])
    logger.info("scored %d items (%d with valid code) with %s -> %s", len(rows), valid, scorer.info["model"],
                args.output)
    return 0
