"""The in-sandbox harness: runs ONE candidate program against ONE test suite (stdlib only).

Harness source, part 1 of 2: ``sandbox_launch`` appends ``sandbox_harness_jobs.py`` and runs the ONE
program with ``python -I -S -c``; nothing imports them. Trusted code sharing the candidate's interpreter, it:

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

import _operator
import _sitebuiltins
import builtins
import marshal  # noqa: F401 (used by part 2, sandbox_harness_jobs.py)
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
_eq, _ne, _lt, _sub = _operator.eq, _operator.ne, _operator.lt, _operator.sub
_HEAPTYPE = 1 << 9  # Py_TPFLAGS_HEAPTYPE: set for every class defined in Python, never for C types
# Subclasses of these (int subclasses with a selective __eq__, namedtuples, Counter, IntEnum ...) are
# copied into the exact builtin by the builtin's own C method, which reads the value and ignores
# anything the subclass overrides. bool cannot be subclassed, so it needs no entry.
# complex.__complex__ and bytes.__bytes__ are Python 3.11+. On 3.10, copies by C methods just as exact:
# the (real, imag) doubles that complex.__getnewargs__ reads from the object's own fields, and a full
# slice, which for a bytes subclass is a new exact bytes object.
_complex_copy: Any = getattr(complex, "__complex__", None) or (
    lambda x: complex(*complex.__getnewargs__(x)))  # type: ignore[attr-defined]
_bytes_copy: Any = getattr(bytes, "__bytes__", None) or (lambda x: bytes.__getitem__(x, slice(None)))
_TO_EXACT = ((int, int.__int__), (float, float.__float__), (complex, _complex_copy),
             (str, str.__str__), (bytes, _bytes_copy))
# Identity, not ``type(x) in {...}``: that would hash and compare the program's class with its metaclass.
_SCALAR_IDS = frozenset(map(id, (int, float, complex, str, bytes, bool, type(None))))
_flags_of = type.__dict__["__flags__"].__get__  # a metaclass cannot fake these two by a property
_name_of = type.__dict__["__name__"].__get__
_MISSING = object()
# Comparisons the tests rely on, checked with the harness's own references after the tests ran: a
# program that rewrote a builtin type's comparison or arithmetic slot in memory (ctypes, a C bug) fails.
_SENTINELS = ((1, 2), (1.5, 2.5), (1j, 2j), ("a", "b"), (b"a", b"b"), (True, False), ((1,), (2,)),
              ([1], [2]), ({1: 1}, {1: 2}), ({1}, {2}), (frozenset((1,)), frozenset((2,))), (None, 0))


class _HackDetected(BaseException):
    """Raised when the program returned a value the tests cannot compare honestly (see ``_Guard``)."""


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


class _Guard:
    """What the tests may trust, fixed BEFORE the candidate runs, and checked again after the tests.

    - ``trusted``: the names the problem's own prelude defines (setup, helpers of the prompt such as
      LeetCode's ``is_same_list`` or HumanEval's ``poly``), executed in a namespace of their own. The
      tests resolve these names there, never in the program's namespace.
    - ``plain(value)``: a copy of a value the program returned made only of exact builtin objects (and
      of the prelude's own classes, e.g. ``ListNode``), so an ``==``, ``-`` or ``<`` the tests apply
      runs builtin code, not the program's. A value that cannot be copied so (an instance of a class
      the program defined) raises ``_HackDetected``.
    - ``tampered()``: after the tests, whether the prelude's names, its classes, the functions and
      constants of modules loaded before the candidate, or builtin comparisons were changed.
    """

    def __init__(self, trusted: dict[str, Any]) -> None:
        self.trusted = trusted
        self.bindings = dict(trusted)
        self.classes = {k: v for k, v in trusted.items() if isinstance(v, type) and _flags_of(v) & _HEAPTYPE}
        self.class_dicts = {cls: dict(cls.__dict__) for cls in self.classes.values()}
        self.modules = dict(sys.modules)
        self.module_dicts = _module_snapshot(self.modules)

    def trusted_import(self, real_import: Any) -> Any:
        """``__import__`` for the tests: modules loaded before the candidate come from that snapshot,
        so a program that put a fake ``math`` into ``sys.modules`` does not reach the tests."""
        modules = self.modules

        def load(name: str, globals: Any = None, locals: Any = None, fromlist: Any = (), level: int = 0) -> Any:
            if level == 0 and name in modules and name.partition(".")[0] in modules:
                return modules[name] if fromlist else modules[name.partition(".")[0]]
            return real_import(name, globals, locals, fromlist, level)

        return load

    def plain(self, value: Any) -> Any:
        memo: dict[int, Any] = {}
        todo: list[tuple[Any, Any]] = []  # (original, empty copy) of mutable objects, filled below
        out = self._copy(value, memo, todo)
        while todo:  # a worklist, not recursion: a 100 000-node linked list must not hit the stack limit
            src, dst = todo.pop()
            kind = type(dst)
            if kind is list:
                dst.extend([self._copy(x, memo, todo) for x in list.__iter__(src)])
            elif kind is dict:
                for k, v in list(dict.items(src)):
                    dst[self._copy(k, memo, todo)] = self._copy(v, memo, todo)
            elif kind is set:
                dst.update([self._copy(x, memo, todo) for x in set.__iter__(src)])
            else:  # a prelude class: copy the instance's own attributes, nothing its class computes
                attrs = object.__getattribute__(src, "__dict__")
                for k, v in list(dict.items(attrs)):
                    if type(k) is str:
                        object.__setattr__(dst, k, self._copy(v, memo, todo))
        return out

    def _copy(self, x: Any, memo: dict[int, Any], todo: list[tuple[Any, Any]]) -> Any:
        kind = type(x)
        if id(kind) in _SCALAR_IDS:
            return x
        # issubclass on type(x), never isinstance(x, ...): isinstance believes a faked ``__class__``.
        for base, exact in _TO_EXACT:
            if issubclass(kind, base):
                return exact(x)
        if id(x) in memo:
            return memo[id(x)]
        if issubclass(kind, (tuple, frozenset)):  # immutable: its items first (nesting depth = recursion)
            if issubclass(kind, tuple):
                copy: Any = tuple([self._copy(i, memo, todo) for i in tuple.__iter__(x)])
            else:
                copy = frozenset([self._copy(i, memo, todo) for i in frozenset.__iter__(x)])
            memo[id(x)] = copy
            return copy
        if issubclass(kind, (list, dict, set)):
            copy = [] if issubclass(kind, list) else {} if issubclass(kind, dict) else set()
        elif not _flags_of(kind) & _HEAPTYPE:
            if hasattr(kind, "__next__"):  # a generator or map object: guard what it yields, lazily
                return self._guarded_iter(x)
            return x  # range, numpy arrays, datetime ...: compared by their own C code
        else:
            cls = self.classes.get(_name_of(kind))
            try:
                object.__getattribute__(x, "__dict__")
            except AttributeError:
                cls = None
            if cls is None:
                raise _HackDetected(f"returned a {_name_of(kind)} object: results must be plain values "
                                    "(numbers, strings, lists, tuples, dicts, sets) or the problem's own classes")
            copy = object.__new__(cls)  # the prelude's ListNode/TreeNode, even for a program's own copy of it
        memo[id(x)] = copy
        todo.append((x, copy))
        return copy

    def _guarded_iter(self, it: Any) -> Any:
        for item in it:
            yield self.plain(item)

    def plain_in_place(self, arg: Any) -> None:
        """Tests also read arguments the program changed in place (``nums.sort()``): copy them too."""
        kind = type(arg)
        if kind is list:
            arg[:] = self.plain(arg)
        elif kind is dict or kind is set:
            fresh = self.plain(arg)
            arg.clear()
            arg.update(fresh)

    def tampered(self, test_ns: dict[str, Any]) -> str:
        for (a, b) in _SENTINELS:
            if _eq(a, b) is not False or _ne(a, a) is not False or _eq(a, a) is not True:
                return f"the comparison of {type(a).__name__} values was altered"
        if _lt(2, 1) is not False or _lt(1.0, 2.0) is not True or _sub(3.0, 1.0).hex() != "0x1.0000000000000p+1":
            return "arithmetic or ordering of numbers was altered"
        for name, value in self.bindings.items():
            if test_ns.get(name) is not value or self.trusted.get(name) is not value:
                return f"the problem's helper {name!r} was replaced"
        for cls, before in self.class_dicts.items():
            attrs = cls.__dict__
            if len(attrs) != len(before) or any(attrs.get(k) is not v for k, v in before.items()):
                return f"the problem's class {cls.__name__} was changed"
        for name, (mod, before) in self.module_dicts.items():
            now = vars(mod)
            for k, v in before.items():
                new = now.get(k, _MISSING)
                if new is not v and not (id(type(v)) in _SCALAR_IDS and type(new) is type(v) and _eq(new, v)):
                    return f"{name}.{k} was replaced"
        return ""


# The fork server takes this once after its imports (~15 ms); each job forked from it only adds the
# modules loaded since, so the snapshot costs a job almost nothing.
_SERVER_SNAPSHOT: dict[str, tuple[Any, dict[str, Any]]] = {}


def _module_snapshot(modules: dict[str, Any]) -> dict[str, tuple[Any, dict[str, Any]]]:
    out = {}
    for name, mod in modules.items():
        if name in ("sys", "builtins", "__main__") or mod is None:
            continue
        known = _SERVER_SNAPSHOT.get(name)
        if known is not None and known[0] is mod:
            out[name] = known
        else:
            out[name] = (mod, {k: v for k, v in vars(mod).items() if _frozen_value(v) and not k.startswith("__")})
    return out


def _frozen_value(value: Any) -> bool:
    """Module attributes that nothing rebinds at run time: functions, classes, numbers and strings
    (caches, registries and streams change legitimately and are left out)."""
    return id(type(value)) in _SCALAR_IDS or isinstance(value, type) or type(value).__name__ in (
        "function", "builtin_function_or_method")
