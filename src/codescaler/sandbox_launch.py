"""Process plumbing of the sandbox: isolation probe, bubblewrap command, fork servers, I/O under limits.

Part of the sandbox (``codescaler.sandbox`` is its public face; the harness, ``sandbox_harness.py`` +
``sandbox_harness_jobs.py``, runs inside).
``launch(payload, stdin, limits)`` runs the harness on one job and returns ``Completed``; by the time it
returns, every process the job started is dead. Two ways to start a job:

- fork server (when bubblewrap works and we are root): one long-lived sandbox per worker thread runs
  the harness in ``--serve`` mode; each job is a fresh child forked from it, with its own uid, rlimits,
  session and pipes. After the child exits the server kills every other process in its pid namespace
  and empties /tmp before it reports, so nothing survives into the next job. A timeout, an output
  overflow or a lost server kills the whole sandbox; the next job starts a new one.
- one sandbox per job (not root, or no bubblewrap): the same harness started fresh for every job.

The bubblewrap command line (and the paths it hides and re-exposes) is built in ``sandbox_bwrap``;
one job's pipes and I/O under the limits (``communicate``, ``Completed``) are in ``sandbox_io``.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import logging
import marshal
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import weakref
from dataclasses import dataclass
from pathlib import Path

from codescaler.extras import install_command
from codescaler.records import Limits
from codescaler.sandbox_bwrap import CLEAN_ENV, bwrap_argv, find_bwrap, python_paths, seccomp_fd, sys_path
from codescaler.sandbox_io import Completed, JobPipes, communicate

logger = logging.getLogger(__name__)

_UID_BASE = 1_900_000_000  # uids nobody has: one per concurrent run when we are root


@dataclass(frozen=True)
class Isolation:
    """How candidates are isolated on this machine: ``kind`` is "bwrap" or "rlimits-only"."""

    kind: str
    detail: str

    @property
    def full(self) -> bool:
        return self.kind == "bwrap"


# The harness is one program kept in two files (no module over 400 lines), joined in this order. It is
# never imported: an imported module would resolve names through the builtins the candidate can patch.
HARNESS_PARTS = ("sandbox_harness.py", "sandbox_harness_jobs.py")


@functools.cache
def harness_source() -> str:
    """The harness program text that ``python -I -S -c`` runs in the sandbox: ``HARNESS_PARTS`` joined."""
    return "".join(Path(__file__).with_name(name).read_text(encoding="utf-8") for name in HARNESS_PARTS)


class _UidPool:
    """Hands out distinct unprivileged uids so RLIMIT_NPROC counts each run's processes separately."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._free: list[int] = []
        self._next = _UID_BASE

    def take(self) -> int:
        with self._lock:
            if self._free:
                return self._free.pop()
            self._next += 1
            return self._next

    def give(self, uid: int) -> None:
        with self._lock:
            self._free.append(uid)


_uids = _UidPool()


@functools.cache
def _probe(bwrap: str | None) -> Isolation:
    if bwrap is None:
        return Isolation("rlimits-only", f"bubblewrap not found ({install_command('sandbox')} on Linux, or put bwrap on PATH)")
    filter_fd = seccomp_fd()
    argv = [*bwrap_argv(bwrap, Limits(), filter_fd), sys.executable, "-I", "-c", "print('ok')"]
    try:
        done = subprocess.run(argv, capture_output=True, timeout=30, stdin=subprocess.DEVNULL,
                              pass_fds=() if filter_fd is None else (filter_fd,))
    except (OSError, subprocess.TimeoutExpired) as err:
        return Isolation("rlimits-only", f"bubblewrap at {bwrap} could not start: {err}")
    finally:
        if filter_fd is not None:
            os.close(filter_fd)
    if done.returncode != 0 or done.stdout.strip() != b"ok":
        why = done.stderr.decode("utf-8", "replace").strip()[:300]
        return Isolation("rlimits-only", f"bubblewrap at {bwrap} failed its probe run: {why or done.returncode}")
    extra = ", seccomp filter" if filter_fd is not None else f", NO seccomp filter (no table for {_machine()})"
    return Isolation("bwrap", f"bubblewrap {bwrap}: no network, read-only host, private /tmp, pid namespace{extra}")


def _machine() -> str:
    import platform

    return platform.machine()


_warned = threading.Event()


def isolation() -> Isolation:
    """Probe (once per process) whether bubblewrap works here; warn loudly when it does not."""
    found = _probe(find_bwrap())
    if not found.full and not _warned.is_set():
        _warned.set()
        logger.warning("SANDBOX DEGRADED: %s. Candidates run with rlimits, a separate uid and a clean "
                       "environment only: they CAN reach the network and read/write host files.", found.detail)
    return found


def _harness_payload(payload: dict, uid: int | None, limits: Limits) -> bytes:
    return marshal.dumps({**payload, "uid": uid, "sys_path": sys_path(), "limits": {
        "cpu_seconds": max(1, int(limits.cpu_seconds + 0.999)), "memory_bytes": limits.memory_mb << 20,
        "file_bytes": limits.file_size_mb << 20, "processes": limits.processes}})


# ---- fork server ---------------------------------------------------------------------------------

class _Server:
    """One long-lived bubblewrap sandbox running the harness in --serve mode (one job at a time)."""

    def __init__(self, limits: Limits) -> None:
        self.uid = _uids.take()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        filter_fd = seccomp_fd()
        argv = [*bwrap_argv(find_bwrap() or "bwrap", limits, filter_fd), sys.executable, "-I", "-S", "-c",
                harness_source(), "--serve", str(theirs.fileno())]
        fds = (theirs.fileno(),) if filter_fd is None else (theirs.fileno(), filter_fd)
        try:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL, pass_fds=fds, env=dict(CLEAN_ENV),
                                         start_new_session=True)
        finally:
            theirs.close()
            if filter_fd is not None:
                os.close(filter_fd)
        self.ctl = ours
        self.tmpfs_mb = limits.file_size_mb

    def run(self, payload: dict, stdin: bytes, limits: Limits) -> Completed:
        pipes = JobPipes()
        reply = bytearray()

        def read_exit() -> int | None:
            chunk = self.ctl.recv(64)
            if not chunk:
                self.kill()  # the server died: its namespace, and the job with it, are gone
                return -signal.SIGKILL
            reply.extend(chunk)
            if not reply.endswith(b"\n"):
                return None
            return int(reply[1:-1])

        try:
            socket.send_fds(self.ctl, [b"J"], pipes.child)
        except OSError:
            pipes.close()
            self.kill()
            raise
        pipes.close(*pipes.child)
        run = communicate(pipes, _harness_payload(payload, self.uid, limits), stdin, self.ctl.fileno(),
                           read_exit, limits, shifted_signals=False)
        if run.timed_out or run.output_exceeded or not reply.endswith(b"\n"):
            self.kill()  # the job may still run: end the whole sandbox, the next job gets a new one
        return run

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        if self.ctl.fileno() == -1:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self.ctl.close()
        _uids.give(self.uid)  # the namespace died with bwrap: nothing runs under this uid any more


class _ThreadToken:
    """Lives exactly as long as the thread-local that holds it."""


_local = threading.local()
_servers: list[_Server] = []
_servers_lock = threading.Lock()


def _server_for_thread(limits: Limits) -> _Server:
    server: _Server | None = getattr(_local, "server", None)
    if server is not None and server.alive and server.tmpfs_mb == limits.file_size_mb:
        return server
    if server is not None:
        server.kill()
    server = _Server(limits)
    _local.server = server
    # When this thread ends, its locals go and the token with them: the server is stopped then.
    _local.token = token = _ThreadToken()
    weakref.finalize(token, server.kill)
    with _servers_lock:
        if not _servers:
            atexit.register(shutdown)
        _servers[:] = [s for s in _servers if s.alive] + [server]
    return server


def shutdown() -> None:
    """Stop every fork server of this process (they also die with it: --die-with-parent)."""
    with _servers_lock:
        for server in _servers:
            if server.alive:
                server.kill()
        _servers.clear()


# ---- one sandbox per job -------------------------------------------------------------------------

def _launch_once(payload: dict, stdin: bytes, limits: Limits, iso: Isolation) -> Completed:
    # Inside bwrap the interpreter is re-exposed readable; on the bare host it may live in a 0700 home.
    drop = os.geteuid() == 0 and (iso.full or _reachable_by_others(python_paths()))
    uid = _uids.take() if drop else None
    pipes = JobPipes()
    workdir = None
    tail = [sys.executable, "-I", "-S", "-c", harness_source(), str(pipes.payload_r), str(pipes.result_w)]
    env, cwd = dict(CLEAN_ENV), None
    filter_fd = seccomp_fd() if iso.full else None
    if iso.full:
        argv = bwrap_argv(find_bwrap() or "bwrap", limits, filter_fd) + tail
    else:
        workdir = tempfile.mkdtemp(prefix="codescaler-run-")
        if uid is not None:
            os.chown(workdir, uid, uid)
        argv, cwd = tail, workdir
        env["HOME"] = workdir
    try:
        proc = subprocess.Popen(argv, stdin=pipes.in_r, stdout=pipes.out_w, stderr=pipes.err_w,
                                pass_fds=(pipes.payload_r, pipes.result_w,
                                          *(() if filter_fd is None else (filter_fd,))),
                                env=env, cwd=cwd, start_new_session=True)
    except BaseException:
        pipes.close()
        raise
    finally:
        if filter_fd is not None:
            os.close(filter_fd)
    pipes.close(*pipes.child)
    pidfd = os.pidfd_open(proc.pid)
    try:
        return communicate(pipes, _harness_payload(payload, uid, limits), stdin, pidfd, proc.wait, limits,
                            iso.full)
    finally:
        os.close(pidfd)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        if not iso.full and uid is not None:
            # Daemons that setsid() left the group; a process running as the run's uid kills them all.
            subprocess.run([sys.executable, "-I", "-S", "-c", "import os\ntry: os.kill(-1, 9)\nexcept OSError: pass"],
                           user=uid, group=uid, extra_groups=[], env={}, check=False)
        if uid is not None:
            _uids.give(uid)
        if workdir:
            shutil.rmtree(workdir, ignore_errors=True)


@functools.cache
def _reachable_by_others_cached(paths: tuple[str, ...]) -> bool:
    for path in paths:
        current = Path(path)
        for folder in (current, *current.parents):
            if not os.stat(folder).st_mode & stat.S_IXOTH:
                logger.warning("SANDBOX DEGRADED: %s is not reachable by other users, so candidates run as "
                               "root without a uid of their own (no process limit, may signal any process)",
                               folder)
                return False
    return True


def _reachable_by_others(paths: list[str]) -> bool:
    return _reachable_by_others_cached(tuple(paths))


def launch(payload: dict, stdin: bytes, limits: Limits) -> Completed:
    """Run the harness on one job (see module docstring); every process of the job is dead on return."""
    iso = isolation()
    if iso.full and os.geteuid() == 0:
        return _server_for_thread(limits).run(payload, stdin, limits)
    return _launch_once(payload, stdin, limits, iso)
