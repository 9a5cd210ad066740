"""Pairs JSONL <-> ``records.Pair``: the one reader and validator of pair files (layer L2).

A row: ``prompt``, ``chosen``, ``rejected`` (non-empty strings; responses as a model wrote them) and
optionally ``task_id``, ``chosen_id``, ``rejected_id`` (strings), ``margin`` (a finite number; null means
0) and ``language`` (a name or alias, default python). ``codescaler pairs`` writes every field. Both
training (``training.read_pairs``, which then extracts the code) and the pairwise benchmarks
(``bench.pairwise.read_eval_pairs``) read files through ``read_pairs`` here, so a file that one accepts
the other accepts too.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from codescaler.data.jsonl import read_jsonl, write_jsonl
from codescaler.errors import InputError
from codescaler.records import Language, Pair

REQUIRED_FIELDS = ("prompt", "chosen", "rejected")
_ID_FIELDS = ("task_id", "chosen_id", "rejected_id")
_FIX = "each pair needs prompt, chosen and rejected (responses); see docs/pairs.md"


def pair_to_json(pair: Pair) -> dict[str, Any]:
    """The row ``codescaler pairs`` writes (``group``, ``line`` and ``is_code`` are not file fields)."""
    return {"task_id": pair.task_id, "prompt": pair.prompt, "chosen": pair.chosen, "rejected": pair.rejected,
            "chosen_id": pair.chosen_id, "rejected_id": pair.rejected_id, "margin": pair.margin,
            "language": pair.language.value}


def pair_from_json(row: dict, *, path: str | None = None, line: int | None = None) -> Pair:
    """One row -> ``Pair`` (``group`` = ``task_id``, else the prompt). ``InputError`` names path, line
    and field for a missing or empty text, a non-string id, a bad margin or language, and a row whose
    chosen and rejected are the same text."""
    def error(message: str, field: str, fix: str = _FIX) -> InputError:
        return InputError(message, path=path, line=line, field=field, fix=fix)

    for name in REQUIRED_FIELDS:
        if name not in row:
            raise error("missing", name)
        if not isinstance(row[name], str) or not row[name].strip():
            raise error(f"expected a non-empty string, got {row[name]!r:.60}", name)
    if row["chosen"] == row["rejected"]:
        raise error("chosen and rejected are the same text", "rejected",
                    fix="a pair must compare two different responses")
    ids: dict[str, str] = {}
    for name in _ID_FIELDS:
        value = row.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, str | int)):
            raise error(f"expected a string, got {value!r:.60}", name)
        ids[name] = "" if value is None else str(value)
    margin = row.get("margin")
    if margin is None:
        margin = 0.0
    elif isinstance(margin, bool) or not isinstance(margin, int | float) or not math.isfinite(margin):
        raise error(f"expected a finite number, got {margin!r:.60}", "margin")
    language = row.get("language")
    if language is not None and not isinstance(language, str):
        raise error(f"expected a string, got {language!r:.60}", "language")
    try:
        parsed = Language.parse(language)
    except ValueError as err:
        raise error(str(err), "language") from None
    return Pair(prompt=row["prompt"], chosen=row["chosen"], rejected=row["rejected"], margin=float(margin),
                language=parsed, task_id=ids["task_id"], chosen_id=ids["chosen_id"], rejected_id=ids["rejected_id"],
                group=ids["task_id"] or row["prompt"], line=line)


def read_pairs(path: str | os.PathLike[str]) -> list[Pair]:
    """Every pair of a JSONL file, validated row by row (see ``pair_from_json``); ``InputError`` for a
    missing, unreadable or empty file."""
    pairs = [pair_from_json(row, path=str(path), line=number) for number, row in read_jsonl(path)]
    if not pairs:
        raise InputError("no pairs in the file", path=str(path),
                         fix="write one JSON object per line with prompt, chosen and rejected")
    return pairs


def write_pairs(path: str | os.PathLike[str], pairs: Iterable[Pair]) -> int:
    """Atomically write pairs as JSONL; returns the count."""
    return write_jsonl(Path(path), (pair_to_json(p) for p in pairs))
