"""``codescaler extract``: responses JSONL -> the same rows plus ``code`` and ``status`` (layer L4).

Input rows: ``id`` (string or integer), ``response`` (string), optional ``language`` (default python)
and optional ``entry_point`` (used by lenient mode to trim Python top-level junk). Output rows keep
every input field and add ``code`` (string, or null when there is no valid code) and ``status`` (an
``ExtractStatus`` value). The whole input is validated before anything is written, and the output is
written atomically, so a bad input line leaves an existing output untouched.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from codescaler.errors import InputError
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
    p.add_argument(
        "--mode",
        choices=[m.value for m in ExtractMode],
        default=ExtractMode.STRICT.value,
        help="strict = exactly one closed fenced block that parses (default); lenient = best effort",
    )
    p.add_argument("--input", required=True, type=Path, help="responses JSONL")
    p.add_argument("--output", required=True, type=Path, help="JSONL to write (atomically)")
    p.set_defaults(func=run)


def run(args: Any) -> int:
    from codescaler.extract import extract_code

    rows = read_rows(args.input)
    counts: Counter[str] = Counter()
    out_lines: list[str] = []
    for row, language in rows:
        found = extract_code(row["response"], language, args.mode, entry_point=row.get("entry_point"))
        counts[found.status.value] += 1
        out = {**row, "code": found.code, "status": found.status.value}
        out_lines.append(_dump_line(out))
    write_lines_atomic(args.output, out_lines)
    summary = ", ".join(f"{status} {n}" for status, n in counts.most_common())
    logger.info(
        "extracted %d rows (%s mode) -> %s: %s", len(rows), args.mode, args.output, summary or "no rows"
    )
    return 0


def read_rows(path: Path) -> list[tuple[dict[str, Any], Language]]:
    """Read and validate every row; raises ``InputError`` naming file, line and field on the first bad one."""
    from codescaler.data.jsonl import parse_json_line, read_text_input

    text = read_text_input(path, fix="pass the --input JSONL file")
    rows: list[tuple[dict[str, Any], Language]] = []
    for number, line in enumerate(text.split("\n"), start=1):  # not splitlines(): U+2028 inside strings
        if not line.strip():
            continue
        row = parse_json_line(line, path, number, fix='write rows like {"id": "a", "response": "..."}')
        if "id" not in row or not isinstance(row["id"], (str, int)) or isinstance(row["id"], bool):
            raise InputError(
                f"missing or not a string/integer: {row.get('id')!r}",
                path=str(path),
                line=number,
                field="id",
                fix="give every row an id",
            )
        if not isinstance(row.get("response"), str):
            raise InputError(
                f"missing or not a string: {_short(row.get('response'))}",
                path=str(path),
                line=number,
                field="response",
                fix="put the model's response text in 'response'",
            )
        entry = row.get("entry_point")
        if entry is not None and not isinstance(entry, str):
            raise InputError(
                f"not a string: {_short(entry)}",
                path=str(path),
                line=number,
                field="entry_point",
                fix="use a function name such as 'has_close_elements' or null",
            )
        language = row.get("language")
        if language is not None and not isinstance(language, str):
            raise InputError(
                f"not a string: {_short(language)}", path=str(path), line=number, field="language"
            )
        try:
            lang = Language.parse(language)
        except ValueError as err:
            raise InputError(str(err), path=str(path), line=number, field="language") from None
        rows.append((row, lang))
    return rows


def write_lines_atomic(path: Path, lines: list[str]) -> None:
    """Write ``lines`` (each without its newline) to a temp file beside ``path``, then rename over it."""
    if not path.parent.is_dir():
        raise InputError("output folder does not exist", path=str(path.parent), fix="create it first")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            for line in lines:
                fh.write(line + "\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _dump_line(row: dict[str, Any]) -> str:
    # U+2028/U+2029 are escaped so that readers splitting lines with str.splitlines() still see one row.
    text = json.dumps(row, ensure_ascii=False).replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate from a "\ud800" escape in the input: keep it escaped
        text = json.dumps(row)
    return text


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
