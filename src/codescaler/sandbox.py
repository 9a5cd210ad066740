"""Run ONE candidate program against ONE problem's tests in an isolated child -> Verdict (layer L2).

This is the only module of codescaler that executes untrusted code. Contract:

- ``run_candidate(problem, candidate_id, code, limits)`` never raises for anything the candidate does;
  failures, timeouts, crashes and hacks come back as a ``Verdict``. It raises only for our own faults
  (e.g. no Python interpreter can be started).
- ``Status.PASSED`` comes only from evidence written after the tests finished: the harness
  (``sandbox_harness.py``) writes a result line, prefixed with a per-run random nonce, to a private pipe.
  Exit statuses and stdout never count. Stdio problems pass when every case's stdout matches.
- Isolation (``isolation()``): bubblewrap when it can start here — read-only host filesystem, private
  /tmp, no network, fresh pid/ipc/uts namespaces, clean environment, /root and $HOME hidden — plus
  rlimits (CPU, address space, processes, file size, no core dumps), a wall-clock limit, an output cap
  and, when run as root, an unprivileged uid per concurrent run. When bubblewrap cannot start, it falls
  back to rlimits + uid + clean environment only and says so loudly (log warning and ``isolation()``).
See docs/sandbox.md for the threat model: what this protects against and what it does not.
"""

from __future__ import annotations

import ast
import functools
import logging
import secrets
import signal
import time

from codescaler.records import Language, Limits, Problem, Status, StdioCase, Verdict
from codescaler.sandbox_launch import Completed, Isolation, isolation, launch, python_paths, shutdown

__all__ = ["HARNESS_VERSION", "Isolation", "isolation", "normalise_output", "python_paths", "run_candidate",
           "shutdown", "instrument_tests", "trusted_prelude"]

logger = logging.getLogger(__name__)

HARNESS_VERSION = "5"  # bump when the harness or the status rules change: it keys the verdict cache


def _signal_of(code: int, shifted: bool) -> int | None:
    if code < 0:
        return -code
    if shifted and code > 128:  # bwrap reports a signalled child as 128 + signal
        return code - 128
    return None


def _failure_from_exit(run: Completed, limits: Limits, shifted: bool) -> tuple[Status, str]:
    """Status of a run that produced no final result line."""
    if run.timed_out:
        return Status.TIMEOUT, f"wall-clock limit of {limits.wall_seconds:g}s exceeded"
    if run.output_exceeded:
        return Status.OUTPUT_LIMIT, f"wrote more than {limits.output_bytes} bytes"
    # Never decided from the program's stdout/stderr: a wrong program can print "MemoryError". A real
    # one is reported by the harness on the result pipe (see _run_functional/_run_stdio).
    err_tail = run.stderr.decode("utf-8", "replace").strip().split("\n")[-1][:300]
    sig = _signal_of(run.returncode, shifted)
    if sig == signal.SIGXCPU or (sig == signal.SIGKILL and run.seconds >= limits.cpu_seconds):
        return Status.TIMEOUT, f"CPU limit of {limits.cpu_seconds:g}s exceeded"
    if sig is not None:
        name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else str(sig)
        return Status.CRASHED, f"killed by {name}"
    what = f"exited with status {run.returncode} before the tests reported a result"
    return Status.CRASHED, what + (f": {err_tail}" if err_tail else "")


_KINDS = {"passed": Status.PASSED, "failed": Status.FAILED, "fail_partial": Status.FAILED,
          "crashed": Status.CRASHED, "memory": Status.MEMORY, "hack": Status.FAILED, "error": Status.ERROR}


def _results(raw: bytes, nonce: str) -> list[list[str]]:
    """Result lines carrying this run's nonce; anything else on the pipe is ignored."""
    out = []
    for line in raw.decode("utf-8", "replace").split("\n"):
        fields = line.split("\t")
        if len(fields) == 5 and secrets.compare_digest(fields[0], nonce) and fields[1] in _KINDS:
            out.append(fields)
    return out


def _helper_root(entry_point: str | None) -> str:
    head = (entry_point or "").split("(")[0].split(".")[0].strip()
    return head


def _is_stub(node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) -> bool:
    body = [s for s in node.body if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))]
    return not body or all(isinstance(s, ast.Pass) for s in body)


@functools.lru_cache(maxsize=1024)
def trusted_prelude(setup: str, prompt: str, tests: str, entry_point: str | None) -> str:
    """The problem's own code that its tests rely on: ``setup`` plus the helpers the PROMPT defines and
    the tests call (HumanEval's ``poly``, ``encode_cyclic``, ``encode_shift``) and their imports.

    The harness runs it in a namespace of its own before the candidate and binds these names for the
    tests, so a program that redefines a helper cannot change what the tests compute. Stubs (a
    signature and a docstring: what the candidate must write) and the entry point are left out.
    """
    try:
        test_tree = ast.parse(tests)
        prompt_tree = ast.parse(prompt)
    except (SyntaxError, ValueError):
        return setup
    wanted = {n.id for n in ast.walk(test_tree) if isinstance(n, ast.Name)}
    defined_by_tests = {n.name for n in test_tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    wanted -= defined_by_tests | {_helper_root(entry_point)}
    defs = {n.name: n for n in prompt_tree.body
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and not _is_stub(n)}
    chosen: set[str] = set()
    frontier = wanted & set(defs)
    while frontier:  # helpers that call other helpers of the prompt
        chosen |= frontier
        used = {n.id for name in frontier for n in ast.walk(defs[name]) if isinstance(n, ast.Name)}
        frontier = (used & set(defs)) - chosen - {_helper_root(entry_point)}
    if not chosen:
        return setup
    keep = [n for n in prompt_tree.body
            if isinstance(n, (ast.Import, ast.ImportFrom)) or getattr(n, "name", None) in chosen]
    return setup + "\n" + ast.unparse(ast.Module(body=keep, type_ignores=[]))


@functools.lru_cache(maxsize=1024)
def instrument_tests(tests: str) -> str:
    """Tests source with each assert (module body and ``check``) wrapped in a try that counts it.

    ``__cs_fail(lineno)`` receives the assert's line in the ORIGINAL source, for the verdict detail.
    Raises SyntaxError when the tests do not parse (the problem's fault, reported as Status.ERROR).
    """

    def wrap(stmts: list[ast.stmt]) -> list[ast.stmt]:
        out: list[ast.stmt] = []
        for stmt in stmts:
            if isinstance(stmt, ast.Assert):
                fail = ast.Expr(ast.Call(ast.Name("__cs_fail", ast.Load()), [ast.Constant(stmt.lineno)], []))
                ok = ast.Expr(ast.Call(ast.Name("__cs_pass", ast.Load()), [], []))
                handler = ast.ExceptHandler(ast.Name("AssertionError", ast.Load()), None, [fail])
                out.append(ast.Try([stmt], [handler], [ok], []))
                continue
            for attr in ("body", "orelse", "finalbody"):
                if isinstance(stmt, (ast.For, ast.While, ast.If, ast.With, ast.Try)) and hasattr(stmt, attr):
                    setattr(stmt, attr, wrap(getattr(stmt, attr)))
            out.append(stmt)
        return out

    module = ast.parse(tests, "<tests>")
    for node in module.body:
        if isinstance(node, ast.FunctionDef) and node.name == "check":
            node.body = wrap(node.body)
    module.body = wrap(module.body)
    return ast.unparse(ast.fix_missing_locations(module))


def _run_functional(problem: Problem, candidate_id: str, code: str, limits: Limits) -> Verdict:
    nonce = secrets.token_hex(16)
    tests = problem.tests.functional or ""
    try:
        instrumented = instrument_tests(tests)
    except SyntaxError as err:
        return Verdict(problem.task_id, candidate_id, Status.ERROR,
                       detail=f"the problem's tests do not parse: {err.msg} (line {err.lineno})")
    prelude = trusted_prelude(problem.setup, problem.prompt, tests, problem.entry_point)
    payload = {"mode": "functional", "nonce": nonce, "setup": problem.setup, "prelude": prelude, "code": code,
               "tests": tests, "instrumented_tests": instrumented, "entry_point": problem.entry_point}
    run = launch(payload, b"", limits)
    lines = _results(run.results, nonce)
    final = [f for f in lines if f[1] != "fail_partial"]
    counts: tuple[int | None, int | None] = (None, None)
    if final:
        _, kind, passed, total, detail = final[-1]
        status = _KINDS[kind]
        if passed and total and int(total) > 0:
            counts = (int(passed), int(total))
        if status is Status.PASSED and not detail:
            detail = "all tests passed"
    elif lines:  # a test failed, then the run never finished (timeout, crash, exit)
        why = _failure_from_exit(run, limits, run.shifted_signals)[1]
        status, detail = Status.FAILED, f"{lines[0][4]}; then {why}"
    else:
        status, detail = _failure_from_exit(run, limits, run.shifted_signals)
    return Verdict(problem.task_id, candidate_id, status, counts[0], counts[1], round(run.seconds, 4), detail)


def normalise_output(text: str) -> str:
    """Stdout as compared: each line right-stripped, trailing blank lines removed, '\\r\\n' -> '\\n'."""
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").split("\n")]
    while lines and not lines[-1]:
        lines.pop()
    return "\n".join(lines)


def _run_stdio(problem: Problem, candidate_id: str, code: str, limits: Limits) -> Verdict:
    """Run the program once per case; stop at the first case that does not pass (see docs/sandbox.md)."""
    cases: tuple[StdioCase, ...] = problem.tests.stdio
    seconds, passed = 0.0, 0
    for index, case in enumerate(cases, 1):
        nonce = secrets.token_hex(16)
        payload = {"mode": "stdio", "nonce": nonce, "setup": problem.setup, "code": code}
        run = launch(payload, case.input.encode("utf-8"), limits)
        seconds += run.seconds
        out = run.stdout.decode("utf-8", "replace")
        where = f"case {index}/{len(cases)}"
        if run.timed_out or run.output_exceeded or run.returncode != 0:
            status, why = _failure_from_exit(run, limits, run.shifted_signals)
            if not (run.timed_out or run.output_exceeded) and any(f[1] == "memory" for f in _results(run.results, nonce)):
                status, why = Status.MEMORY, "MemoryError"
            if status is Status.CRASHED and _signal_of(run.returncode, run.shifted_signals) is None:
                err = run.stderr.decode("utf-8", "replace").strip().split("\n")[-1][:300]
                why = f"exited with status {run.returncode}" + (f": {err}" if err else "")
            return Verdict(problem.task_id, candidate_id, status, passed, len(cases), round(seconds, 4),
                           f"{where}: {why}")
        if normalise_output(out) != normalise_output(case.output):
            got = normalise_output(out)[:80]
            want = normalise_output(case.output)[:80]
            return Verdict(problem.task_id, candidate_id, Status.FAILED, passed, len(cases), round(seconds, 4),
                           f"{where}: wrong output: expected {want!r}, got {got!r}")
        passed += 1
    return Verdict(problem.task_id, candidate_id, Status.PASSED, passed, len(cases), round(seconds, 4),
                   "all tests passed")


def run_candidate(problem: Problem, candidate_id: str, code: str, limits: Limits | None = None) -> Verdict:
    """Execute ``code`` (a complete program; the problem's ``setup`` is prepended) against the tests.

    Python only: other languages give ``Status.ERROR`` ("execution of <lang> is not supported"), as do
    problems without tests. Limits apply per run (per case for stdio). Never raises for the candidate.
    """
    limits = limits or Limits()
    start = time.monotonic()
    language = Language.parse(problem.language)
    if language is not Language.PYTHON:
        return Verdict(problem.task_id, candidate_id, Status.ERROR, detail=f"execution of {language} is not supported")
    if problem.tests.is_empty:
        return Verdict(problem.task_id, candidate_id, Status.ERROR, detail="the problem has no tests to run")
    if problem.tests.is_functional:
        verdict = _run_functional(problem, candidate_id, code, limits)
    else:
        verdict = _run_stdio(problem, candidate_id, code, limits)
    logger.debug("%s/%s: %s in %.3fs", problem.task_id, candidate_id, verdict.status, time.monotonic() - start)
    return verdict
