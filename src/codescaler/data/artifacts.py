"""Artifact files: atomic writes, JSONL lines, and resumable append-only JSONL stores (layer L2).

Every file codescaler writes goes through this module, so all of them share one behaviour:

- ``atomic_write_bytes/text/json/jsonl`` (and ``atomic_open`` for writers that need a handle, such as
  numpy or pyarrow) write into a temp file in the destination's folder, ``fsync`` it, give it the mode
  ``open()`` would (``0o666 & ~umask``; ``mkstemp`` alone makes 0600 files) and ``os.replace`` it over
  the destination. Missing parent folders are created. If anything fails, the temp file is removed and
  the previous file at the destination is untouched: a crash never leaves a half-written artifact.
- ``read_jsonl`` yields ``(line_number, object)`` per non-blank line (``.gz`` read transparently); any
  broken line raises ``InputError`` naming ``path:line`` (one line, no traceback at the CLI).
- ``AppendStore`` is an append-only JSONL file of rows keyed by an id (verdicts, samples, signal caches):
  reopening it after a kill cuts a torn last line, reports the rows already done, and appends new rows
  one flushed line at a time.

Lines are split on ``'\\n'`` only, never ``str.splitlines()``: real statements contain U+2028. Written
lines escape U+2028/U+2029 anyway, so readers that do split on them still see one row per line.
This module knows no record types; :mod:`codescaler.data.jsonl` maps records to rows.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Callable, Hashable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any, Generic, TypeVar

from codescaler.errors import InputError

logger = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]
K = TypeVar("K", bound=Hashable)
_LINE_FIX = "write one JSON object per line"


# --------------------------------------------------------------------------- atomic writes


def file_mode() -> int:
    """The mode ``open()`` gives a new file under the current umask (``0o666 & ~umask``)."""
    mask = os.umask(0)  # the umask can only be read by setting it
    os.umask(mask)
    return 0o666 & ~mask


@contextlib.contextmanager
def atomic_open(path: PathLike, *, binary: bool = False) -> Iterator[IO[Any]]:
    """A handle on a temp file beside ``path`` that replaces ``path`` when the block exits normally.

    Text handles are UTF-8 with ``'\\n'`` line ends. On exit: flush, fsync, chmod to ``file_mode()``,
    ``os.replace``. On an exception (or KeyboardInterrupt) the temp file is removed and re-raised.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") if binary else os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, file_mode())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (see ``atomic_open``); returns the path."""
    with atomic_open(path, binary=True) as handle:
        handle.write(data)
    return Path(path)


def atomic_write_text(path: PathLike, text: str) -> Path:
    """Write ``text`` as UTF-8 to ``path`` atomically; returns the path."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: PathLike, value: Any, *, indent: int | None = 2, sort_keys: bool = False) -> Path:
    """Write one JSON document (UTF-8, non-ASCII kept, trailing newline) atomically; values JSON does not
    know (paths, enums) are written as ``str``. Returns the path."""
    text = json.dumps(value, indent=indent, sort_keys=sort_keys, ensure_ascii=False, default=str)
    return atomic_write_text(path, text + "\n")


def dumps_line(row: Any) -> str:
    """One JSON value as one JSONL line (no newline): UTF-8 kept, U+2028/U+2029 escaped."""
    return json.dumps(row, ensure_ascii=False).replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def atomic_write_jsonl(path: PathLike, rows: Iterable[Any]) -> int:
    """Write JSON-ready rows as JSONL atomically (gzip-compressed, reproducibly, when ``path`` ends in
    ``.gz``); returns the row count. If any row fails to serialise, the old file stays."""
    count = 0
    with atomic_open(path, binary=True) as raw:
        gz = gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) if str(path).endswith(".gz") else None
        out: Any = gz if gz is not None else raw
        for row in rows:
            out.write((dumps_line(row) + "\n").encode("utf-8"))
            count += 1
        if gz is not None:
            gz.close()  # writes the gzip trailer; does not close ``raw``
    return count


# --------------------------------------------------------------------------- reading


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


def parse_json_line(line: str, path: PathLike, number: int, fix: str = _LINE_FIX) -> dict:
    """One line -> a JSON object, or ``InputError`` naming path, line (and field) and the fix."""
    try:
        row = decode_json_line(line)
    except BadJsonLine as err:
        raise InputError(str(err), path=str(path), line=number, fix=fix) from None
    return _checked_row(row, line, path, number, fix)


def _checked_row(row: Any, line: str, path: PathLike, number: int, fix: str) -> dict:
    if not isinstance(row, dict):
        raise InputError(f"expected a JSON object, got {type(row).__name__}", path=str(path), line=number, fix=fix)
    field = surrogate_field(row, line)
    if field is not None:
        raise InputError("contains a lone UTF-16 surrogate (e.g. \"\\ud800\"), which is not text",
                         path=str(path), line=number, field=field, fix="remove or replace the broken escape")
    return row


def _decode(raw: bytes, path: PathLike, number: int, fix: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise InputError(f"not UTF-8 text (byte {err.start} of the line)", path=str(path), line=number,
                         fix=fix) from None


def read_text_input(path: PathLike, fix: str = "pass a UTF-8 JSONL file") -> str:
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


def _open_input(path: Path) -> Any:  # a binary file, gzip-decoded for .gz
    if path.is_dir():
        raise InputError("is a directory, not a file", path=str(path), fix="pass a JSONL file")
    try:
        return gzip.open(path, "rb") if path.name.endswith(".gz") else open(path, "rb")
    except FileNotFoundError:
        raise InputError("file not found", path=str(path), fix="check the path") from None
    except OSError as err:
        raise InputError(f"cannot open: {err.strerror or err}", path=str(path), fix="check the path") from None


def read_jsonl(path: PathLike, *, tolerate_torn_tail: bool = False,
               fix: str = _LINE_FIX) -> Iterator[tuple[int, dict]]:
    """Yield ``(line_number, object)`` for each non-blank line of a JSONL file (``.gz`` read transparently).

    Line numbers are 1-based; the file is streamed. A line that is not UTF-8, not valid JSON, or not a
    JSON object raises ``InputError`` with ``path:line`` and ``fix``. With ``tolerate_torn_tail``, a
    malformed LAST line without a trailing newline (a writer killed mid-line) is skipped with a warning.
    A missing, unreadable or corrupt (gzip) file raises ``InputError``.
    """
    path = Path(path)
    with _open_input(path) as fh:
        pending: tuple[int, int] | None = None  # (line, bytes) of a skipped torn tail
        number = 0
        try:
            for number, raw in enumerate(fh, 1):  # binary lines end at b"\n" only
                if not raw.strip():
                    continue
                try:
                    line = _decode(raw, path, number, fix)
                    row = decode_json_line(line)
                except (BadJsonLine, InputError) as err:
                    if tolerate_torn_tail and not raw.endswith(b"\n"):  # a kill can cut a UTF-8 sequence too
                        pending = (number, len(raw))
                        continue
                    if isinstance(err, InputError):
                        raise
                    raise InputError(str(err), path=str(path), line=number, fix=fix) from None
                yield number, _checked_row(row, line, path, number, fix)
        except (OSError, EOFError) as err:  # a truncated or corrupt .gz, an I/O error
            raise InputError(f"cannot read after line {number}: {err}", path=str(path),
                             fix="check the file is UTF-8 JSONL (optionally gzip-compressed)") from None
        if pending is not None:
            logger.warning("%s:%d: skipping a torn last line (%d bytes, no trailing newline)", path, *pending)


def file_sha256(path: PathLike) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB blocks (manifests and caches key inputs by it)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# --------------------------------------------------------------------------- resumable appends


def task_candidate_key(row: dict) -> tuple[str, str]:
    """The key of verdict, candidate and signal rows: ``(task_id, candidate_id)`` as strings."""
    return str(row["task_id"]), str(row["candidate_id"])


class AppendStore(Generic[K]):
    """An append-only JSONL file of rows keyed by ``key(row)``, resumable after a kill.

    Opening reads every row already in ``path`` (a missing file is an empty store). A last line without
    its newline is what a killed writer leaves: if it is a complete row it is kept (the newline is added),
    otherwise it is cut off with a warning and its row will simply be redone. Any other bad line, or a
    row ``key`` cannot read (``KeyError``/``TypeError``/``ValueError``), raises ``InputError`` naming
    ``path:line`` and ``fix``. A later row with the same key replaces the earlier one in ``rows``.

    ``append``/``extend`` write one line per row and flush it (``durable=True`` also fsyncs), so a crash
    loses at most the row being written. The file is opened for appending on the first write, with
    parent folders created and the usual mode (``0o666 & ~umask``). Not safe for two writers at once:
    callers that can race hold a lock (``codescaler execute`` does).

    A signal cache keyed by candidate, resumed after a kill::

        store = AppendStore(path, task_candidate_key)
        todo = [job for job in jobs if (job.task_id, job.candidate_id) not in store]
        with store:
            store.extend(row_of(result) for result in run(todo))
        rows = store.rows  # every row by key, old and new
    """

    def __init__(self, path: PathLike, key: Callable[[dict], K], *,
                 fix: str = "delete the damaged line, or write to a new file", durable: bool = False) -> None:
        self.path = Path(path)
        self.key = key
        self.fix = fix
        self.durable = durable
        self.rows: dict[K, dict] = {}
        self._handle: IO[str] | None = None
        self._load()

    def __contains__(self, key: object) -> bool:
        return key in self.rows

    def __len__(self) -> int:
        return len(self.rows)

    def done(self) -> set[K]:
        """The keys of every row in the file (read at opening, plus those appended since)."""
        return set(self.rows)

    def _load(self) -> None:
        if self.path.is_dir():
            raise InputError("is a directory, not a file", path=str(self.path), fix="give a file path")
        if not self.path.exists():
            return
        self._repair_tail()
        for number, row in read_jsonl(self.path, fix=self.fix):
            self._remember(row, number)

    def _repair_tail(self) -> None:
        with open(self.path, "r+b") as fh:
            size = fh.seek(0, os.SEEK_END)
            if size == 0:
                return
            fh.seek(size - 1)
            if fh.read(1) == b"\n":
                return
            start = max(0, size - (1 << 16))
            while True:  # find the last newline without reading the whole file
                fh.seek(start)
                found = fh.read(size - start).rfind(b"\n")
                if found >= 0 or start == 0:
                    cut = start + found + 1
                    break
                start = max(0, start - (1 << 16))
            fh.seek(cut)
            tail = fh.read()
            if self._complete_row(tail):
                fh.write(b"\n")
                return
            logger.warning("%s: cutting off a torn last line (%d bytes) left by an interrupted run",
                           self.path, len(tail))
            fh.truncate(cut)

    def _complete_row(self, tail: bytes) -> bool:
        try:
            row = decode_json_line(tail.decode("utf-8"))
            if not isinstance(row, dict):
                return False
            self.key(row)
        except (UnicodeDecodeError, BadJsonLine, KeyError, TypeError, ValueError):
            return False
        return True

    def _remember(self, row: dict, number: int | None) -> None:
        try:
            key = self.key(row)
        except (KeyError, TypeError, ValueError) as err:
            missing = f"no {err}" if isinstance(err, KeyError) else str(err)
            raise InputError(f"not a row this file can resume from ({missing})", path=str(self.path),
                             line=number, fix=self.fix) from None
        self.rows[key] = row

    def append(self, row: dict) -> None:
        """Write one JSON-ready row as one line, flushed (and fsynced when durable); remember it."""
        self.extend((row,))

    def extend(self, rows: Iterable[dict]) -> int:
        """``append`` each row (one flush per row, one fsync at the end when durable); returns the count."""
        if self._handle is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._handle = open(self.path, "a", encoding="utf-8", newline="\n")  # noqa: SIM115 (closed by close())
        count = 0
        for row in rows:
            line = dumps_line(row) + "\n"
            self._remember(row, None)  # refuse a row without a key before it reaches the file
            self._handle.write(line)
            self._handle.flush()
            count += 1
        if self.durable and count:
            os.fsync(self._handle.fileno())
        return count

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def __enter__(self) -> AppendStore[K]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
