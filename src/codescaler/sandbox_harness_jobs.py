# Harness source, part 2 of 2 (job runners, fork server, entry point): sandbox_launch appends it to
# sandbox_harness.py as one program for `python -c`. Never imported; its globals come from part 1.
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


def _trusted_prelude(source: str) -> dict[str, Any]:
    """Run the problem's own prelude (setup + helpers of the prompt) in a namespace the program never
    gets; registered in sys.modules only while it runs (``@dataclass`` looks its module up there)."""
    ns = _module_namespace("__prelude__")
    try:
        exec(compile(source, "<prelude>", "exec"), ns)
    finally:
        del sys.modules["__prelude__"]
    return {k: v for k, v in ns.items() if not (k.startswith("__") and k.endswith("__"))}


def _run_functional(payload: dict[str, Any], h: _Harness) -> None:
    clean_builtins = dict(vars(builtins))  # snapshot before the candidate can patch builtins
    h.test_lines = payload["tests"].split("\n")
    try:
        tests_code = compile(payload["instrumented_tests"], "<tests>", "exec")
        setup_code = compile(payload["setup"], "<setup>", "exec")
    except SyntaxError as err:
        h.report("error", f"the problem's tests or setup do not parse: {err}")
        return
    try:
        guard = _Guard(_trusted_prelude(payload["prelude"]))
    except BaseException as err:
        h.report("error", f"the problem's setup code failed: {type(err).__name__}: {err}")
        return
    clean_builtins["__import__"] = guard.trusted_import(clean_builtins["__import__"])
    ns = _module_namespace("__candidate__")
    try:
        exec(setup_code, ns)
    except BaseException as err:
        h.report("error", f"the problem's setup code failed: {type(err).__name__}: {err}")
        return
    _block_ctypes()
    try:
        exec(compile(payload["code"], "<candidate>", "exec"), ns)
    except SyntaxError as err:
        h.report("crashed", f"SyntaxError: {err.msg} (line {err.lineno})")
        return
    except BaseException as err:
        h.report(*_describe(err))
        return
    # The tests see the program's names, minus module-level shadows of builtins, then the prelude's
    # names over them (a program's own `is_same_list` or `poly` never reaches the tests), and resolve
    # builtins through the snapshot, so a candidate that patches `abs` or `isinstance` cannot fool them.
    test_ns = {k: v for k, v in ns.items() if not (k in clean_builtins and v is not clean_builtins[k])}
    test_ns.update(guard.trusted)
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
                try:
                    value = guard.plain(target(*args, **kwargs))
                    for arg in (*args, *kwargs.values()):
                        guard.plain_in_place(arg)
                except _HackDetected as err:  # remembered: a bare `except:` in the tests may swallow it
                    h.hack = h.hack or str(err)
                    raise
                return value

            sys.settrace(None)
            sys.setprofile(None)
            check(guarded)
    except BaseException as err:
        kind, detail = _describe(err)
        if kind == "failed" and h.first_failure:
            detail = h.first_failure
        h.report("hack" if h.hack else kind, h.hack or detail)
        return
    h.hack = h.hack or guard.tampered(test_ns)
    if h.hack:
        h.report("hack", h.hack)
    elif _gettrace() is not None:
        h.report("hack", "a trace function was installed while the tests ran")
    elif h.failed:
        h.report("failed", h.first_failure)
    else:
        h.report("passed")


def _block_ctypes() -> None:
    """ctypes can rewrite int's comparison in memory. Inside bubblewrap its library is not even
    mapped (see sandbox_launch); this is the fallback for degraded mode, and ``tampered`` the check."""
    for name in ("ctypes", "_ctypes", "_cffi_backend"):
        if name not in sys.modules:
            sys.modules[name] = None  # type: ignore[assignment]


def _run_stdio(payload: dict[str, Any], h: _Harness) -> int:
    """Run the program as __main__ on the inherited stdin/stdout; return its exit status.

    The parent judges the output itself; the result pipe carries only the harness's own evidence of a
    MemoryError (so a program that merely prints "MemoryError" is not reported as out of memory)."""
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
    except BaseException as err:
        if isinstance(err, MemoryError):
            h.report("memory", "MemoryError", counts=False)
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
        harness = _Harness(result_fd, payload.pop("nonce"))
        if payload["mode"] == "stdio":
            status = _run_stdio(payload, harness)
        else:
            _run_functional(payload, harness)
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
    _SERVER_SNAPSHOT.update(_module_snapshot(dict(sys.modules)))
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
