"""``codescaler extract``: responses JSONL -> the same rows plus ``code`` and ``status`` (layer L4).

Input rows: ``id`` (string or integer), ``response`` (string), optional ``language`` (default python)
and optional ``entry_point`` (used by lenient mode to trim Python top-level junk). Output rows keep
every input field and add ``code`` (string, or null when there is no valid code) and ``status`` (an
``ExtractStatus`` value). The whole input is validated before anything is written, and the output is
written atomically, so a bad input line leaves an existing output untouched.
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import Any

from codescaler.cli.options import add_extract_mode
from codescaler.records import ExtractMode, Language

logger = logging.getLogger(__name__)


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "extract",
        help="extract code from model responses (strict: the paper's rule; lenient: best effort)",
        description="Read JSONL rows with id, response and optional language/entry_point; write the same "
        "rows plus code (null when there is no valid code) and status (ok, no_block, multiple_blocks, "
        "unclosed_block, empty, syntax_error). Rules: docs/extraction.md.",
    )
    add_extract_mode(p, default=ExtractMode.STRICT.value, old=("--mode",),
                     help="strict = exactly one closed fenced block that parses (default); lenient = best effort")
    p.add_argument("--input", required=True, type=Path, help="responses JSONL")
    p.add_argument("--output", required=True, type=Path, help="JSONL to write (atomically)")
    p.set_defaults(func=run)


def run(args: Any) -> int:
    from codescaler.data import atomic_write_jsonl
    from codescaler.extract import extract_code

    rows = read_rows(args.input)
    counts: Counter[str] = Counter()
    out_rows: list[dict[str, Any]] = []
    for row, language in rows:
        found = extract_code(row["response"], language, args.extract_mode, entry_point=row.get("entry_point"))
        counts[found.status.value] += 1
        out_rows.append({**row, "code": found.code, "status": found.status.value})
    atomic_write_jsonl(args.output, out_rows)  # U+2028/U+2029 escaped: splitlines() readers see one row
    summary = ", ".join(f"{status} {n}" for status, n in counts.most_common())
    logger.info(
        "extracted %d rows (%s mode) -> %s: %s", len(rows), args.extract_mode, args.output, summary or "no rows"
    )
    return 0


def read_rows(path: Path) -> list[tuple[dict[str, Any], Language]]:
    """Read and validate every row (``data.read_extract_rows``); ``InputError`` names file, line and field."""
    from codescaler.data import read_extract_rows

    return read_extract_rows(path)
