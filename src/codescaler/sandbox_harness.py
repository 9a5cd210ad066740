"""The in-sandbox harness: runs ONE candidate program against ONE test suite (stdlib only).

``codescaler.sandbox`` passes this file's source to ``python -I -c`` inside the sandbox; nothing in
the package imports it. It is trusted code that shares its interpreter with untrusted code, so it:

- reads its payload (program, tests instrumented by the parent, limits, a per-run random nonce) from a
  pipe fd (marshal: no imports needed) and closes it;
- applies rlimits and, when started as root, drops to an unprivileged uid before any candidate code;
- keeps private references to everything it needs after the candidate ran (``os.write``, builtins);
- writes its result, prefixed with the nonce, to a second inherited pipe fd ONLY after the tests
  finished. The parent accepts ``passed`` from nothing else: an exit status, stdout text, atexit hooks,
  ``os._exit(0)`` or ``execv`` before that point leave no result and therefore cannot pass.

Result lines: ``nonce TAB kind TAB passed TAB total TAB detail NEWLINE``; kind is one of
``passed failed fail_partial crashed memory hack error``. ``fail_partial`` is written at the first failed
assertion so that a later timeout still yields ``failed``. See docs/sandbox.md for the threat model.
"""

from __future__ import annotations

import _sitebuiltins
import builtins
import marshal
import os
import resource
import sys
from typing import Any

# The interpreter starts with -S (no site processing), which also skips the builtins that `site` adds;
# programs call `help(...)`, `exit()` and `quit()` as in a normal interpreter (HumanEval samples do).
builtins.help = _sitebuiltins._Helper()  # type: ignore[attr-defined]
builtins.exit = _sitebuiltins.Quitter("exit", "Ctrl-D (i.e. EOF)")  # type: ignore[attr-defined]
builtins.quit = _sitebuiltins.Quitter("quit", "Ctrl-D (i.e. EOF)")  # type: ignore[attr-defined]

# Every function below resolves builtins through this private copy, not the builtins module that the
# candidate shares with us: `builtins.callable = lambda f: False` must not make us skip check().
globals()["__builtins__"] = dict(vars(builtins))
_write = os.write
_exit = os._exit
_gettrace = sys.gettrace
_PLAIN = (int, float, complex, str, bytes, bool, type(None))
_SENTINEL = object()


class _HackDetected(BaseException):
    """Raised when a return value claims to equal a fresh ``object()`` (an always-equal object)."""


def _read_all(fd: int) -> bytes:
    chunks = []
    while True:
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(fd)
    return b"".join(chunks)


def _apply_limits(limits: dict[str, int], uid: int | None) -> None:
    cpu = limits["cpu_seconds"]
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))  # SIGXCPU first, SIGKILL one second later
    resource.setrlimit(resource.RLIMIT_AS, (limits["memory_bytes"], limits["memory_bytes"]))
    resource.setrlimit(resource.RLIMIT_FSIZE, (limits["file_bytes"], limits["file_bytes"]))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_NPROC, (limits["processes"], limits["processes"]))
    if uid is not None and os.getuid() == 0:
        # Root ignores RLIMIT_NPROC and may kill anything: run the candidate as a uid of its own.
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)


class _Harness:
    def __init__(self, result_fd: int, nonce: str) -> None:
        self.fd = result_fd
        self.nonce = nonce
        self.passed = 0
        self.failed = 0
        self.first_failure = ""
        self.hack = ""
        self.test_lines: list[str] = []

    def report(self, kind: str, detail: str = "", counts: bool = True) -> None:
        detail = " ".join(detail.split())[:500]
        total = self.passed + self.failed
        fields = [self.nonce, kind, str(self.passed) if counts else "", str(total) if counts else "", detail]
        try:  # noqa: SIM105 (no contextlib: the candidate may have patched it)
            _write(self.fd, ("\t".join(fields) + "\n").encode("utf-8", "replace"))
        except OSError:
            pass  # the candidate closed our fd: the parent sees no result, which never means passed

    def on_pass(self) -> None:
        self.passed += 1

    def on_fail(self, lineno: int) -> None:
        self.failed += 1
        if self.failed == 1:
            src = self.test_lines[lineno - 1].strip() if 0 < lineno <= len(self.test_lines) else ""
            self.first_failure = f"assertion failed (tests line {lineno}): {src}"
            self.report("fail_partial", self.first_failure)

    def scan(self, value: Any) -> None:
        """Fail a return value that contains an object claiming to equal a fresh ``object()``."""
        stack, seen = [value], 0
        while stack and seen < 10_000:
            item = stack.pop()
            seen += 1
            kind = type(item)
            if kind in _PLAIN:
                continue
            if kind in (list, tuple, set, frozenset):
                stack.extend(list(item)[:10_000])
                continue
            if kind is dict:
                stack.extend(list(item.keys())[:5_000])
                stack.extend(list(item.values())[:5_000])
                continue
            try:
                claims_equal = bool(item == _SENTINEL)
            except Exception:
                continue
            if claims_equal:
                self.hack = f"returned a {kind.__name__} object that claims to equal anything"
                raise _HackDetected(self.hack)


def _describe(err: BaseException) -> tuple[str, str]:
    """(kind, detail) for an exception that escaped the candidate or the tests."""
    if isinstance(err, MemoryError):
        return "memory", "MemoryError"
    if isinstance(err, _HackDetected):
        return "hack", str(err)
    if isinstance(err, SystemExit):
        return "crashed", f"exited (SystemExit {err.code!r}) before the tests finished"
    if isinstance(err, AssertionError):
        return "failed", f"AssertionError: {err}"
    import traceback  # only on this path: every import costs startup time on every run

    frames = traceback.extract_tb(err.__traceback__)
    where = next((f"{f.filename}:{f.lineno}" for f in reversed(frames) if f.filename.startswith("<")), "")
    return "crashed", f"{type(err).__name__}: {err}" + (f" (at {where})" if where else "")


def _module_namespace(name: str) -> dict[str, Any]:
    """A fresh module registered in sys.modules, so code that looks itself up there works
    (``@dataclass`` reads ``sys.modules[cls.__module__].__dict__``; pickle and typing do similar)."""
    module = type(sys)(name)
    module.__dict__["__builtins__"] = builtins
    sys.modules[name] = module
    return module.__dict__


def _run_functional(payload: dict[str, Any], h: _Harness) -> None:
    clean_builtins = dict(vars(builtins))  # snapshot before the candidate can patch builtins
    h.test_lines = payload["tests"].split("\n")
    try:
        tests_code = compile(payload["instrumented_tests"], "<tests>", "exec")
        setup_code = compile(payload["setup"], "<setup>", "exec")
    except SyntaxError as err:
        h.report("error", f"the problem's tests or setup do not parse: {err}")
        return
    ns = _module_namespace("__candidate__")
    try:
        exec(setup_code, ns)
    except BaseException as err:
        h.report("error", f"the problem's setup code failed: {type(err).__name__}: {err}")
        return
    try:
        exec(compile(payload["code"], "<candidate>", "exec"), ns)
    except SyntaxError as err:
        h.report("crashed", f"SyntaxError: {err.msg} (line {err.lineno})")
        return
    except BaseException as err:
        h.report(*_describe(err))
        return
    # The tests see the program's names, minus module-level shadows of builtins, and resolve builtins
    # through the snapshot, so a candidate that patches `abs` or `isinstance` cannot fool them.
    test_ns = {k: v for k, v in ns.items() if not (k in clean_builtins and v is not clean_builtins[k])}
    test_ns.update(__builtins__=clean_builtins, __name__="__tests__",
                   __cs_pass=h.on_pass, __cs_fail=h.on_fail)
    try:
        exec(tests_code, test_ns)
        check = test_ns.get("check")
        if callable(check):
            entry = payload["entry_point"]
            if not entry:
                h.report("error", "functional tests define check() but the problem has no entry_point")
                return
            try:
                # Resolved in the PROGRAM's namespace: an entry point may share its name with a
                # builtin (MBPP+ `sum`) or with the tests' own `check` (MBPP+ Mbpp/56).
                target = eval(entry, ns)
            except (NameError, AttributeError) as err:
                h.report("crashed", f"entry point {entry!r} is not defined by the program: {err}")
                return

            def guarded(*args: Any, **kwargs: Any) -> Any:
                value = target(*args, **kwargs)
                h.scan(value)
                return value

            sys.settrace(None)
            sys.setprofile(None)
            check(guarded)
    except BaseException as err:
        kind, detail = _describe(err)
        if kind == "failed" and h.first_failure:
            detail = h.first_failure
        h.report(kind, h.hack or detail)
        return
    if h.hack:
        h.report("hack", h.hack)
    elif _gettrace() is not None:
        h.report("hack", "a trace function was installed while the tests ran")
    elif h.failed:
        h.report("failed", h.first_failure)
    else:
        h.report("passed")


def _run_stdio(payload: dict[str, Any]) -> int:
    """Run the program as __main__ on the inherited stdin/stdout; return its exit status."""
    program = payload["setup"] + "\n" + payload["code"] if payload["setup"] else payload["code"]
    status = 0
    try:
        exec(compile(program, "<candidate>", "exec"), _module_namespace("__main__"))
    except SystemExit as err:
        if err.code is None or isinstance(err.code, int):
            status = err.code or 0
        else:
            print(err.code, file=sys.stderr)
            status = 1
    except BaseException:
        import traceback

        traceback.print_exc()
        status = 1
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:
            status = status or 1
    return status


def _run_job(payload_fd: int, result_fd: int) -> None:
    """Run one job described by the payload on ``payload_fd``; never returns (ends the process)."""
    status = 0
    try:
        payload = marshal.loads(_read_all(payload_fd))
        sys.path[:] = payload["sys_path"]  # started with -S: no site processing, the parent's paths
        os.set_inheritable(result_fd, False)  # programs the candidate starts do not get the result pipe
        _apply_limits(payload["limits"], payload["uid"])
        if payload["mode"] == "stdio":
            os.close(result_fd)
            status = _run_stdio(payload)
        else:
            _run_functional(payload, _Harness(result_fd, payload.pop("nonce")))
            try:  # noqa: SIM105 (no contextlib: the candidate may have patched it)
                sys.stdout.flush()
            except BaseException:
                pass
    finally:
        _exit(status & 0xFF)  # skip atexit hooks, finalizers and thread joins the candidate set up


_PREIMPORT = ("typing", "collections", "math", "re", "itertools", "functools", "heapq", "bisect", "string",
              "random", "json", "traceback", "fractions", "decimal", "statistics", "datetime", "copy", "operator")


def _serve(ctl_fd: int) -> None:
    """Fork server: one job per message on the control socket, one forked child per job.

    Message from the parent: one byte with five fds attached (payload, result, stdout, stderr, stdin).
    Reply: ``X<exit code>\n`` once the child exited AND every other process in this pid namespace was
    killed and /tmp emptied, so nothing of one job survives into the next or past its verdict.
    """
    import shutil
    import socket

    for name in _PREIMPORT:  # paid once per sandbox instead of once per candidate
        try:  # noqa: SIM105 (no contextlib: the candidate may have patched it)
            __import__(name)
        except ImportError:
            pass
    ctl = socket.socket(fileno=ctl_fd)
    me = os.getpid()
    while True:
        try:
            msg, fds, _, _ = socket.recv_fds(ctl, 1, 5)
        except OSError:
            return
        if not msg or len(fds) != 5:
            return
        payload_fd, result_fd, out_fd, err_fd, in_fd = fds
        pid = os.fork()
        if pid == 0:
            try:
                ctl.close()
                os.setsid()
                for src, dst in ((in_fd, 0), (out_fd, 1), (err_fd, 2)):
                    os.dup2(src, dst)
                    os.close(src)
                os.chdir("/tmp")
            except BaseException:
                _exit(70)
            _run_job(payload_fd, result_fd)
        for fd in fds:
            os.close(fd)
        _, wait_status = os.waitpid(pid, 0)
        code = os.waitstatus_to_exitcode(wait_status)
        for _ in range(50):  # kill everything but ourselves and bwrap's init, until nothing is left
            try:
                os.kill(-1, 9)
            except ProcessLookupError:
                break
            left = [p for p in os.listdir("/proc") if p.isdigit() and int(p) not in (1, me)]
            if not left:
                break
            try:  # noqa: SIM105 (no contextlib: the candidate may have patched it)
                os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                pass
        for entry in os.listdir("/tmp"):
            path = os.path.join("/tmp", entry)
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                try:  # noqa: SIM105 (no contextlib: the candidate may have patched it)
                    os.unlink(path)
                except OSError:
                    pass
        ctl.sendall(f"X{code}\n".encode())


def main() -> None:
    if sys.argv[1] == "--serve":
        _serve(int(sys.argv[2]))
    else:
        _run_job(int(sys.argv[1]), int(sys.argv[2]))


if __name__ == "__main__":
    main()
