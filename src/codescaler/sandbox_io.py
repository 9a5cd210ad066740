"""One sandboxed job's I/O: its pipes, and feeding/reading them under the wall and output limits (layer L2).

Part of the sandbox (``sandbox_launch`` starts the processes and calls ``communicate``). ``JobPipes``
are the five pipes of one job (payload, results, stdout, stderr, stdin); ``communicate`` feeds the
payload and stdin and reads the rest until the job exits, the wall deadline passes or the output cap is
hit, and returns ``Completed``.
"""

from __future__ import annotations

import os
import selectors
import signal
import time
from dataclasses import dataclass

from codescaler.records import Limits


@dataclass
class Completed:
    """What one sandboxed run left behind (stdout/stderr capped at the output limit together).

    ``returncode`` < 0 is the signal that ended the program; when ``shifted_signals`` (one bwrap per job)
    128 + n may also mean signal n, as bwrap reports it.
    """

    returncode: int
    stdout: bytes
    stderr: bytes
    results: bytes
    seconds: float
    timed_out: bool
    output_exceeded: bool
    shifted_signals: bool


class JobPipes:
    """The five pipes of one job; ``child`` are the ends the harness gets, in the harness's order."""

    def __init__(self) -> None:
        self.payload_r, self.payload_w = os.pipe()
        self.result_r, self.result_w = os.pipe()
        self.out_r, self.out_w = os.pipe()
        self.err_r, self.err_w = os.pipe()
        self.in_r, self.in_w = os.pipe()
        self.open: set[int] = {self.payload_r, self.payload_w, self.result_r, self.result_w, self.out_r,
                               self.out_w, self.err_r, self.err_w, self.in_r, self.in_w}

    @property
    def child(self) -> list[int]:
        return [self.payload_r, self.result_w, self.out_w, self.err_w, self.in_r]

    def close(self, *fds: int) -> None:
        for fd in fds or tuple(self.open):
            if fd in self.open:
                self.open.discard(fd)
                os.close(fd)


def communicate(pipes: JobPipes, payload: bytes, stdin: bytes, exit_fd: int, read_exit, limits: Limits,
                 shifted_signals: bool) -> Completed:
    """Feed payload and stdin, read stdout/stderr/results until exit, wall deadline or output cap.

    ``read_exit()`` is called when ``exit_fd`` is readable: it returns the exit code, or None while the
    report is incomplete. Done = exited and pipes closed, or 0.2 s after the exit (the caller kills).
    """
    start = time.monotonic()
    deadline = start + limits.wall_seconds
    sel = selectors.DefaultSelector()
    bufs = {pipes.out_r: bytearray(), pipes.err_r: bytearray(), pipes.result_r: bytearray()}
    pending = {pipes.payload_w: memoryview(payload), pipes.in_w: memoryview(stdin)}
    for fd in bufs:
        sel.register(fd, selectors.EVENT_READ)
    for fd in pending:
        os.set_blocking(fd, False)
        sel.register(fd, selectors.EVENT_WRITE)
    sel.register(exit_fd, selectors.EVENT_READ)
    timed_out = exceeded = False
    code: int | None = None
    exited_at: float | None = None
    try:
        while True:
            now = time.monotonic()
            if exited_at is not None and (not any(fd in sel.get_map() for fd in bufs) or now > exited_at + 0.2):
                break
            if now >= deadline:
                timed_out = True
                break
            wait = deadline - now if exited_at is None else min(deadline, exited_at + 0.2) - now
            for key, _ in sel.select(max(wait, 0.0)):
                fd = key.fd
                if fd == exit_fd:
                    code = read_exit()
                    if code is not None:
                        sel.unregister(exit_fd)
                        exited_at = time.monotonic()
                elif fd in pending:
                    try:
                        sent = os.write(fd, pending[fd][:1 << 16])
                        pending[fd] = pending[fd][sent:]
                        finished = not pending[fd]
                    except BlockingIOError:
                        finished = False
                    except BrokenPipeError:
                        finished = True
                    if finished:
                        sel.unregister(fd)
                        pipes.close(fd)
                else:
                    chunk = os.read(fd, 1 << 16)
                    if not chunk:
                        sel.unregister(fd)
                        continue
                    bufs[fd] += chunk
                    if fd == pipes.result_r and len(bufs[fd]) > 1 << 20:
                        sel.unregister(fd)  # nobody honest writes a megabyte of results
            if len(bufs[pipes.out_r]) + len(bufs[pipes.err_r]) > limits.output_bytes:
                exceeded = True
                break
    finally:
        sel.close()
        pipes.close()
    return Completed(-signal.SIGKILL if code is None else code, bytes(bufs[pipes.out_r]),
                     bytes(bufs[pipes.err_r]), bytes(bufs[pipes.result_r]), time.monotonic() - start,
                     timed_out, exceeded, shifted_signals)
