"""The sandbox's seccomp filter: refuse the few system calls that escape its limits (layer L2).

bubblewrap loads a classic-BPF program from a file descriptor (``--seccomp FD``) just before it starts
the harness. Ours allows everything except:

- ``memfd_create``, ``memfd_secret`` and SysV ``shmget``: memory there is not counted by RLIMIT_AS (one
  process held 1.9 GiB of the host's shared memory under ``--memory-mb 256``);
- ``socket(AF_UNIX, ...)``: a filesystem socket of the host is reachable through the read-only bind
  mounts (``--unshare-net`` covers only the network); ``socketpair`` stays allowed (asyncio, pipes);
- ``io_uring_*``: io_uring can open sockets and files without the system calls this filter sees;
- on x86-64, the x32 system call numbers (bit 30), which would bypass every rule above.

Each refused call fails with an errno (the program sees an ordinary ``OSError``), so a program that
merely tries one is judged like any other failure. Built here by packing ``struct sock_filter``
instructions (8 bytes each): no dependency, and small enough to read top to bottom.
"""

from __future__ import annotations

import errno
import platform
import socket
import struct

__all__ = ["seccomp_program"]

# struct seccomp_data: int nr; u32 arch; u64 instruction_pointer; u64 args[6] (little-endian hosts only)
_NR, _ARCH, _ARG0 = 0, 4, 16
_LD_W_ABS, _JEQ_K, _JGE_K, _RET_K = 0x20, 0x15, 0x35, 0x06
_ALLOW = 0x7FFF0000
_ERRNO = 0x00050000
_X32_BIT = 0x40000000

# machine -> (AUDIT_ARCH_*, system call numbers)
_TABLES: dict[str, tuple[int, dict[str, int]]] = {
    "x86_64": (0xC000003E, {"memfd_create": 319, "memfd_secret": 447, "shmget": 29, "socket": 41,
                            "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427}),
    "aarch64": (0xC00000B7, {"memfd_create": 279, "memfd_secret": 447, "shmget": 194, "socket": 198,
                             "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427}),
}
_REFUSED = {"memfd_create": errno.EPERM, "memfd_secret": errno.EPERM, "shmget": errno.EPERM,
            "io_uring_setup": errno.EPERM, "io_uring_enter": errno.EPERM, "io_uring_register": errno.EPERM}


def _op(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
    return struct.pack("<HBBI", code, jt, jf, k)


def seccomp_program(machine: str | None = None) -> bytes | None:
    """The compiled filter for this machine's architecture, or None where we have no table for it."""
    machine = machine or platform.machine()
    if machine not in _TABLES:
        return None
    arch, numbers = _TABLES[machine]
    prog = [_op(_LD_W_ABS, _ARCH),
            _op(_JEQ_K, arch, jt=1),                      # our architecture: go on
            _op(_RET_K, _ERRNO | errno.ENOSYS),            # any other ABI (i386 on x86-64): refused
            _op(_LD_W_ABS, _NR)]
    if machine == "x86_64":
        prog += [_op(_JGE_K, _X32_BIT, jf=1), _op(_RET_K, _ERRNO | errno.ENOSYS)]
    for name, err in _REFUSED.items():
        prog += [_op(_JEQ_K, numbers[name], jf=1), _op(_RET_K, _ERRNO | err)]
    # socket(): refuse only the AF_UNIX family (args[0], its low 32 bits on a little-endian host).
    prog += [_op(_JEQ_K, numbers["socket"], jf=3),
             _op(_LD_W_ABS, _ARG0),
             _op(_JEQ_K, socket.AF_UNIX, jf=1),
             _op(_RET_K, _ERRNO | errno.EAFNOSUPPORT),
             _op(_RET_K, _ALLOW)]
    return b"".join(prog)
