"""Rows <-> records: the canonical JSON objects of problems, candidates and verdicts, and the row checks
of the other JSONL inputs (preference pairs, score items, extract rows) (layer L2).

The canonical formats are documented field by field in ``docs/formats.md``; the field names are the
attribute names of :mod:`codescaler.records`. Every ``*_from_json`` validates one parsed row and raises
``InputError`` naming ``path:line``, the field and the fix. No file I/O here: :mod:`.artifacts` reads
and writes files, :mod:`.jsonl` joins the two into typed readers and writers.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from codescaler.errors import InputError
from codescaler.records import Candidate, Language, Problem, Status, StdioCase, TestSuite, Verdict

_FORMATS_FIX = "see docs/formats.md for the canonical fields"


# --------------------------------------------------------------------------- records -> JSON-ready values


def to_json(obj: Any) -> Any:
    """A record (Problem, Candidate, Verdict, any dataclass) or plain value -> JSON-ready value."""
    if isinstance(obj, Problem):
        return problem_to_json(obj)
    if isinstance(obj, Candidate):
        return candidate_to_json(obj)
    if isinstance(obj, Verdict):
        return verdict_to_json(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_json(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, dict):
        return {str(k): to_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_json(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj


# --------------------------------------------------------------------------- field helpers


class _Row:
    """One parsed row with its location, for error messages that name path, line and field."""

    def __init__(self, row: dict, path: str | None, line: int | None) -> None:
        self.row, self.path, self.line = row, path, line

    def error(self, message: str, field: str | None = None, fix: str | None = _FORMATS_FIX) -> InputError:
        return InputError(message, path=self.path, line=self.line, field=field, fix=fix)

    def text(self, key: str, *, required: bool = False, allow_int: bool = False) -> str | None:
        value = self.row.get(key)
        if value is None:
            if required:
                raise self.error("missing", key, fix=f"add a string {key!r}; {_FORMATS_FIX}")
            return None
        if allow_int and isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        if not isinstance(value, str):
            raise self.error(f"expected a string, got {type(value).__name__} {_short(value)}", key)
        if required and not value.strip():
            raise self.error("is empty", key, fix=f"give a non-empty {key!r}")
        return value

    def number(self, key: str, kind: type) -> Any:
        value = self.row.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and not isinstance(value, int)):
            raise self.error(f"expected {kind.__name__}, got {_short(value)}", key)
        return kind(value)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# --------------------------------------------------------------------------- problems


def _stdio_cases(r: _Row, key: str, value: Any) -> tuple[StdioCase, ...]:
    if not isinstance(value, list):
        raise r.error(f"expected a list of {{input, output}} objects, got {type(value).__name__}", key)
    cases = []
    for i, case in enumerate(value):
        if not (isinstance(case, dict) and isinstance(case.get("input"), str) and isinstance(case.get("output"), str)):
            raise r.error(f"case {i} must be an object with string 'input' and 'output', got {_short(case)}", key)
        cases.append(StdioCase(input=case["input"], output=case["output"]))
    return tuple(cases)


def _suite_to_json(suite: TestSuite) -> str | list[dict[str, str]]:
    if suite.functional is not None:
        return suite.functional
    return [{"input": c.input, "output": c.output} for c in suite.stdio]


def problem_to_json(problem: Problem) -> dict[str, Any]:
    """Problem -> canonical JSON object (optional fields omitted when empty; see docs/formats.md)."""
    out: dict[str, Any] = {"task_id": problem.task_id, "prompt": problem.prompt,
                           "language": problem.language.value}
    if problem.entry_point is not None:
        out["entry_point"] = problem.entry_point
    if problem.tests.functional is not None:
        out["tests"] = problem.tests.functional
    if problem.tests.stdio:
        out["stdio"] = [{"input": c.input, "output": c.output} for c in problem.tests.stdio]
    if problem.visible_tests is not None and not problem.visible_tests.is_empty:
        out["visible_tests"] = _suite_to_json(problem.visible_tests)
    if problem.reference is not None:
        out["reference"] = problem.reference
    if problem.setup:
        out["setup"] = problem.setup
    if problem.source:
        out["source"] = problem.source
    return out


def problem_from_json(row: dict, *, path: str | None = None, line: int | None = None,
                      require_tests: bool = True) -> Problem:
    """Canonical JSON object -> Problem, validated; ``InputError`` names path, line, field and fix.

    Rejects: missing/empty ``task_id`` or ``prompt``; unknown ``language``; both ``tests`` and ``stdio``;
    functional tests without ``entry_point``; and (when ``require_tests``) a problem with no tests.
    """
    r = _Row(row, path, line)
    task_id = r.text("task_id", required=True, allow_int=True)
    prompt = r.text("prompt", required=True)
    try:
        language = Language.parse(row.get("language"))
    except ValueError as err:
        raise r.error(str(err), "language", fix="use a language name such as python, cpp, java") from err
    functional = r.text("tests")
    stdio = _stdio_cases(r, "stdio", row["stdio"]) if row.get("stdio") is not None else ()
    if functional is not None and stdio:
        raise r.error("both 'tests' and 'stdio' given", "tests",
                      fix="give functional tests ('tests') or stdin/stdout cases ('stdio'), not both")
    tests = TestSuite(functional=functional, stdio=stdio)
    entry_point = r.text("entry_point")
    if tests.is_functional and not (entry_point or "").strip():
        raise r.error("functional tests need an entry point", "entry_point",
                      fix="name the function check(candidate) receives, e.g. 'add' or 'Solution().twoSum'")
    if require_tests and tests.is_empty:
        raise r.error(f"problem {task_id!r} has no tests", "tests",
                      fix="give 'tests' (source defining check(candidate)) or 'stdio' (list of {input, output})")
    visible = row.get("visible_tests")
    visible_suite: TestSuite | None = None
    if isinstance(visible, str):
        visible_suite = TestSuite(functional=visible)
    elif isinstance(visible, list):
        visible_suite = TestSuite(stdio=_stdio_cases(r, "visible_tests", visible))
    elif visible is not None:
        raise r.error(f"expected a string (functional source) or a list (stdio cases), got {_short(visible)}",
                      "visible_tests")
    return Problem(task_id=str(task_id), prompt=str(prompt), language=language, tests=tests,
                   entry_point=entry_point, visible_tests=visible_suite, reference=r.text("reference"),
                   setup=r.text("setup") or "", source=r.text("source") or "")


# --------------------------------------------------------------------------- candidates


def candidate_to_json(candidate: Candidate) -> dict[str, Any]:
    out: dict[str, Any] = {"task_id": candidate.task_id, "candidate_id": candidate.candidate_id}
    if candidate.response is not None:
        out["response"] = candidate.response
    if candidate.code is not None:
        out["code"] = candidate.code
    if candidate.mutation is not None:
        out["mutation"] = candidate.mutation
    return out


def candidate_from_json(row: dict, *, path: str | None = None, line: int | None = None,
                        prompts: Mapping[str, str] | None = None, default_id: str | None = None) -> Candidate:
    """JSON object -> Candidate. Three row shapes are read:

    - canonical: ``task_id``, ``candidate_id`` (string or int) and ``response`` or ``code``;
    - evalplus samples: ``task_id`` and ``solution`` (a whole program) -> ``code``;
    - human-eval samples: ``task_id`` and ``completion`` -> ``code = prompt + completion`` (human-eval
      runs the problem's prompt followed by the completion), the prompt from ``prompts[task_id]``.

    A missing ``candidate_id`` becomes ``default_id`` (``iter_candidates`` numbers a task's rows 0, 1, ...).
    Raises ``InputError`` naming path, line and field when none of them fits.
    """
    r = _Row(row, path, line)
    task_id = str(r.text("task_id", required=True, allow_int=True))
    candidate_id = r.text("candidate_id", required=default_id is None, allow_int=True) or default_id
    response, code = r.text("response"), r.text("code")
    if response is None and code is None:
        code = r.text("solution")
    if response is None and code is None and "completion" in row:
        completion = r.text("completion")
        if prompts is None or task_id not in prompts:
            raise r.error(f"a human-eval 'completion' is joined to its problem's prompt, but task {task_id!r} is "
                          "not among the problems given", "completion",
                          fix="pass the problems file the samples were made for (--problems)")
        code = prompts[task_id] + str(completion)
    if response is None and code is None:
        raise r.error("neither 'response' nor 'code' given (nor evalplus 'solution' / human-eval 'completion')",
                      "response", fix="give the raw model output as 'response' or a ready program as 'code'")
    return Candidate(task_id=task_id, candidate_id=str(candidate_id), response=response, code=code,
                     mutation=r.text("mutation"))


# --------------------------------------------------------------------------- verdicts


def verdict_to_json(verdict: Verdict) -> dict[str, Any]:
    return {"task_id": verdict.task_id, "candidate_id": verdict.candidate_id, "status": verdict.status.value,
            "passed": verdict.passed, "total": verdict.total, "seconds": round(verdict.seconds, 6),
            "detail": verdict.detail}


def verdict_from_json(row: dict, *, path: str | None = None, line: int | None = None) -> Verdict:
    """JSON object -> Verdict; ``status`` must be one of the ``Status`` values."""
    r = _Row(row, path, line)
    task_id = r.text("task_id", required=True, allow_int=True)
    candidate_id = r.text("candidate_id", required=True, allow_int=True)
    raw = row.get("status")
    try:
        status = Status(str(raw))
    except ValueError as err:
        accepted = ", ".join(s.value for s in Status)
        raise r.error(f"unknown status {_short(raw)}", "status", fix=f"use one of: {accepted}") from err
    return Verdict(task_id=str(task_id), candidate_id=str(candidate_id), status=status,
                   passed=r.number("passed", int), total=r.number("total", int),
                   seconds=r.number("seconds", float) or 0.0, detail=r.text("detail") or "")


# --------------------------------------------------------------------------- other inputs


def score_item_from_json(row: dict, *, path: str | None = None, line: int | None = None) -> dict[str, Any]:
    """A ``codescaler score`` input row: ``id`` (any JSON value), ``prompt`` and ``response`` strings,
    optional ``language`` (a known language name). Returns the row."""
    r = _Row(row, path, line)
    for name in ("id", "prompt", "response"):
        if name not in row:
            raise r.error("missing", name, fix="each line needs id, prompt and response")
    for name in ("prompt", "response"):
        if not isinstance(row[name], str):
            raise r.error(f"expected a string, got {type(row[name]).__name__}", name, fix=None)
    _language_text(r, "language")
    return row


def extract_row_from_json(row: dict, *, path: str | None = None, line: int | None = None) -> tuple[dict, Language]:
    """A ``codescaler extract`` input row: ``id`` (string or integer), ``response`` string, optional
    ``entry_point`` and ``language`` strings. Returns the row and its language."""
    r = _Row(row, path, line)
    if not isinstance(row.get("id"), str | int) or isinstance(row.get("id"), bool):
        raise r.error(f"missing or not a string/integer: {row.get('id')!r}", "id", fix="give every row an id")
    if not isinstance(row.get("response"), str):
        raise r.error(f"missing or not a string: {_short(row.get('response'))}", "response",
                      fix="put the model's response text in 'response'")
    entry = row.get("entry_point")
    if entry is not None and not isinstance(entry, str):
        raise r.error(f"not a string: {_short(entry)}", "entry_point",
                      fix="use a function name such as 'has_close_elements' or null")
    return row, _language_text(r, "language")


def _language_text(r: _Row, key: str) -> Language:
    value = r.row.get(key)
    if value is not None and not isinstance(value, str):
        raise r.error(f"expected a string, got {_short(value)}", key, fix=None)
    try:
        return Language.parse(value)
    except ValueError as err:
        raise r.error(str(err), key, fix=None) from None
