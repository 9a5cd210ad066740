"""Records shared by every stage of codescaler (layer L0: stdlib only).

Frozen dataclasses and enums cross module boundaries; dicts never do. The JSONL field names of the
canonical files (documented in ``docs/formats.md``) are the attribute names here, so that ``data.py``
can convert both ways without renaming.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum

from codescaler.errors import InputError

try:
    from enum import StrEnum
except ImportError:  # Python 3.10: the same behaviour for our uses (str() and format() give the value)

    class StrEnum(str, Enum):  # type: ignore[no-redef]  # noqa: UP042 (enum.StrEnum is 3.11+)
        """``enum.StrEnum`` of Python 3.11: members are strings whose ``str()`` is the value."""

        def __str__(self) -> str:
            return str(self.value)

        def __format__(self, spec: str) -> str:
            return str(self.value).__format__(spec)


class Language(StrEnum):
    """Programming languages codescaler can extract and (for Python) execute."""

    PYTHON = "python"
    CPP = "cpp"
    JAVA = "java"
    JAVASCRIPT = "javascript"
    TYPESCRIPT = "typescript"
    GO = "go"
    RUST = "rust"

    @classmethod
    def parse(cls, value: str | Language | None) -> Language:
        """Map a name or common alias (``py``, ``c++``, ``js``, ``ts``, ``golang``, ``rs``) to a Language.

        ``None`` or an empty string means Python, the default everywhere. Raises ``ValueError`` naming
        the accepted values for anything else.
        """
        if value is None or value == "":
            return cls.PYTHON
        if isinstance(value, Language):
            return value
        key = str(value).strip().lower()
        found = _LANGUAGE_ALIASES.get(key)
        if found is None:
            accepted = ", ".join(sorted(_LANGUAGE_ALIASES))
            raise ValueError(f"unknown language {value!r}; use one of: {accepted}")
        return found


_LANGUAGE_ALIASES: dict[str, Language] = {
    "python": Language.PYTHON, "py": Language.PYTHON, "python3": Language.PYTHON,
    "cpp": Language.CPP, "c++": Language.CPP, "cxx": Language.CPP,
    "java": Language.JAVA,
    "javascript": Language.JAVASCRIPT, "js": Language.JAVASCRIPT, "node": Language.JAVASCRIPT,
    "typescript": Language.TYPESCRIPT, "ts": Language.TYPESCRIPT,
    "go": Language.GO, "golang": Language.GO,
    "rust": Language.RUST, "rs": Language.RUST,
}


class ExtractMode(StrEnum):
    """strict = the paper's rule (used for RL and RM scoring); lenient = best effort (evaluation)."""

    STRICT = "strict"
    LENIENT = "lenient"


class ExtractStatus(StrEnum):
    """Why extraction produced code, or why it did not."""

    OK = "ok"
    NO_BLOCK = "no_block"
    MULTIPLE_BLOCKS = "multiple_blocks"
    UNCLOSED_BLOCK = "unclosed_block"
    EMPTY = "empty"
    SYNTAX_ERROR = "syntax_error"


@dataclass(frozen=True)
class Extraction:
    """Result of reading code out of a response: ``code`` is None unless ``status`` is OK."""

    code: str | None
    status: ExtractStatus

    @property
    def valid(self) -> bool:
        return self.code is not None and self.status is ExtractStatus.OK


class Status(StrEnum):
    """Outcome of executing one candidate against one test suite."""

    PASSED = "passed"            # every test ran to completion and passed (evidence from the harness)
    FAILED = "failed"            # a test ran and failed (wrong answer, assertion)
    TIMEOUT = "timeout"          # CPU or wall-clock limit exceeded
    MEMORY = "memory"            # address-space limit exceeded (MemoryError or killed for memory)
    CRASHED = "crashed"          # uncaught exception, signal, or exit before the tests reported
    OUTPUT_LIMIT = "output_limit"  # wrote more than the output limit
    NO_CODE = "no_code"          # extraction found no valid program
    ERROR = "error"              # our own fault (harness failure); never the candidate's


@dataclass(frozen=True)
class StdioCase:
    """One stdin/stdout test: ``output`` is compared after normalising trailing whitespace."""

    input: str
    output: str


@dataclass(frozen=True)
class TestSuite:
    """Tests in exactly one of two forms.

    functional: Python source defining ``check(candidate)``; the harness passes the problem's
    ``entry_point`` (a function name, or an expression such as ``Solution().twoSum``) to it.
    stdio: cases fed to the program's standard input.
    """

    functional: str | None = None
    stdio: tuple[StdioCase, ...] = ()

    __test__ = False  # not a pytest class

    @property
    def is_functional(self) -> bool:
        return self.functional is not None

    @property
    def is_empty(self) -> bool:
        return self.functional is None and not self.stdio


@dataclass(frozen=True)
class Problem:
    """A verified programming problem in codescaler's canonical form (one JSONL row)."""

    task_id: str
    prompt: str                       # the statement shown to the policy and to the RM
    language: Language = Language.PYTHON
    tests: TestSuite = field(default_factory=TestSuite)  # hidden tests (ground truth)
    entry_point: str | None = None    # required for functional tests
    visible_tests: TestSuite | None = None  # examples a solver may see (statement examples)
    reference: str | None = None      # a known-correct program, when one exists
    setup: str = ""                   # code run before the candidate (imports, helper classes)
    source: str = ""                  # dataset name and split, e.g. "humaneval/test"


@dataclass(frozen=True)
class Candidate:
    """One candidate solution: a raw model ``response`` to extract from, or a ready ``code``.

    ``mutation``: for a synthetic mutant of a reference (``codescaler mutate``), the operator that made
    it (a ``mutate.MutationKind`` value); None for every other candidate.
    """

    task_id: str
    candidate_id: str
    response: str | None = None
    code: str | None = None
    mutation: str | None = None


# The smallest --memory-mb (address space) at which Python starts and runs a trivial program in the
# sandbox: measured 24 MiB passes, 16 MiB does not (fork server, CPython 3.11, x86-64); 32 leaves a
# margin. Programs that import numpy need far more (over 96 MiB: OpenBLAS reserves memory per thread).
MIN_MEMORY_MB = 32


@dataclass(frozen=True)
class Limits:
    """Resource limits for one sandboxed execution."""

    cpu_seconds: float = 10.0
    wall_seconds: float = 20.0
    memory_mb: int = 1024
    processes: int = 64
    file_size_mb: int = 16
    output_bytes: int = 1_000_000

    def validate(self) -> None:
        """Raise ``InputError`` naming the field (``limits.<name>``) for a value the sandbox cannot run with."""
        for name in ("cpu_seconds", "wall_seconds"):
            value = getattr(self, name)
            # inf would reach setrlimit as an overflow: every run an `error` verdict that a resume never retries
            if not (value > 0 and math.isfinite(value)):
                raise InputError(f"must be a positive, finite number of seconds, got {value!r}", field=f"limits.{name}")
        if self.memory_mb < MIN_MEMORY_MB:
            raise InputError(f"must be at least {MIN_MEMORY_MB} (MiB; Python itself needs about 24 to start), "
                             f"got {self.memory_mb}", field="limits.memory_mb")
        for name in ("processes", "file_size_mb", "output_bytes"):  # 0 is a limit (none allowed)
            if getattr(self, name) < 0:
                raise InputError(f"must be >= 0, got {getattr(self, name)}", field=f"limits.{name}")


@dataclass(frozen=True)
class Verdict:
    """Outcome of executing one candidate; ``passed``/``total`` count tests where known."""

    task_id: str
    candidate_id: str
    status: Status
    passed: int | None = None
    total: int | None = None
    seconds: float = 0.0
    detail: str = ""                  # short, human-readable reason (first line of the error)


@dataclass(frozen=True)
class Pair:
    """One preference comparison: ``chosen`` should score above ``rejected`` for ``prompt``.

    The one pair record of codescaler: ``pairs.build_pairs`` makes them, training and the pairwise
    benchmarks read them (``data.read_pairs``, one validator). ``chosen``/``rejected`` are RESPONSES (the
    RM sees only the code extracted from them) unless ``is_code``: then they are programs already
    (training holds the extracted code; HumanEvalPack pairs are code). ``margin`` is the pass-rate gap
    (0 when unknown). ``group`` is what held-out splits and reports count by (the problem for training,
    the language or subset for benchmarks); ``line`` is the row of the file it was read from, for
    messages (None when built in memory).
    """

    prompt: str
    chosen: str
    rejected: str
    task_id: str = ""
    chosen_id: str = ""
    rejected_id: str = ""
    margin: float = 0.0
    language: Language = Language.PYTHON
    is_code: bool = False
    group: str = ""
    line: int | None = None

    @property
    def chosen_code(self) -> str:
        """``chosen`` as a program; ``ValueError`` unless ``is_code`` (a response must be extracted first)."""
        return self._code(self.chosen)

    @property
    def rejected_code(self) -> str:
        """``rejected`` as a program; ``ValueError`` unless ``is_code``."""
        return self._code(self.rejected)

    def _code(self, text: str) -> str:
        if not self.is_code:
            raise ValueError("this pair holds responses, not code: extract the code first "
                             "(training.read_pairs returns pairs of extracted code)")
        return text


@dataclass(frozen=True)
class Score:
    """A scored response: ``raw_score`` is None when there is no valid code; ``reward`` is shaped."""

    raw_score: float | None
    valid: bool
    reward: float


@dataclass(frozen=True)
class ScoreItem:
    """One thing to score: a problem's ``prompt`` and a ``text`` to extract the program from (a model
    response), or with ``is_code`` the program itself, used as is. ``language`` (None = Python) and
    ``entry_point`` guide extraction (``entry_point`` matters in lenient mode only). Items are
    independent: any order, any batch gives the same scores (``Scorer.iter_score``)."""

    prompt: str
    text: str
    language: str | None = None
    is_code: bool = False
    entry_point: str | None = None
