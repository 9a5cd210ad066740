"""Sampling: a real tiny causal LM through HFSampler and the CLI, and a local OpenAI-compatible server."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from codescaler.errors import InputError
from codescaler.records import Problem, TestSuite
from codescaler.sampling import (
    HFSampler,
    OpenAISampler,
    SamplingConfig,
    build_messages,
    problem_seed,
    sample_candidates,
)

PROBLEMS = [
    Problem(task_id=f"t/{i}", prompt=f"def add{i}(a, b):\n    \"\"\"Return a + b + {i}.\"\"\"\n",
            tests=TestSuite(functional=f"def check(candidate):\n    assert candidate(1, 2) == {3 + i}\n"),
            entry_point=f"add{i}")
    for i in range(3)
]


@pytest.fixture(scope="module")
def tiny_policy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from codescaler.testing import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("policy"), arch="qwen2", kind="causal")


def test_messages_put_the_problem_in_the_user_turn_and_name_the_language() -> None:
    messages = build_messages(PROBLEMS[0], SamplingConfig(system_prompt="be brief"))
    assert [m["role"] for m in messages] == ["system", "user"]
    assert "def add0(a, b):" in messages[1]["content"]
    assert "```python" in messages[1]["content"]


@pytest.mark.parametrize(("kw", "message"), [
    ({"n": 0}, "--n must be >= 1, got 0"),
    ({"max_new_tokens": 0}, "--max-new-tokens must be >= 1, got 0"),
    ({"batch_size": -2}, "--batch-size must be >= 1, got -2"),
    ({"temperature": float("nan")}, "--temperature must be a finite number >= 0, got nan (0 samples greedily)"),
    ({"top_p": 0.0}, "--top-p must be in (0, 1], got 0.0"),
    ({"instruction": "Solve {task}"}, "field 'instruction': the instruction template cannot be filled: KeyError"),
])
def test_a_sampling_config_that_cannot_work_is_refused_in_one_line(kw: dict, message: str) -> None:
    config = SamplingConfig(**kw)
    with pytest.raises(InputError) as err:
        config.validate()
    assert str(err.value).startswith(message) and "\n" not in str(err.value)

    class NeverCalled:
        def generate_batch(self, *args: object) -> list[list[str]]:
            raise AssertionError("sampled with a bad config")

    with pytest.raises(InputError, match=message[:12].replace("(", r"\(")):
        next(sample_candidates(PROBLEMS, NeverCalled(), config))


def test_the_sample_cli_refuses_n_below_1_before_reading_anything(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    from codescaler.cli import main

    assert main(["sample", "--problems", str(tmp_path / "absent.jsonl"), "--output", str(tmp_path / "o.jsonl"),
                 "--n", "0"]) == 2
    assert capsys.readouterr().err.strip().endswith("--n must be >= 1, got 0")


def test_problem_seeds_depend_on_task_not_on_order() -> None:
    assert problem_seed(0, "t/1") == problem_seed(0, "t/1")
    assert problem_seed(0, "t/1") != problem_seed(0, "t/2")
    assert problem_seed(0, "t/1") != problem_seed(1, "t/1")


def test_hf_sampler_gives_n_responses_per_problem_and_skips_done_ones(tiny_policy: Path) -> None:
    config = SamplingConfig(n=3, max_new_tokens=8, batch_size=6, temperature=1.0)
    sampler = HFSampler(str(tiny_policy), config, device="cpu", dtype="float32")
    batches = list(sample_candidates(PROBLEMS, sampler, config, done={"t/0": 3, "t/1": 1}))
    cands = [c for b in batches for c in b]
    ids = sorted((c.task_id, c.candidate_id) for c in cands)
    assert ids == [("t/1", "s1"), ("t/1", "s2"), ("t/2", "s0"), ("t/2", "s1"), ("t/2", "s2")]
    assert all(isinstance(c.response, str) for c in cands)


def test_hf_sampler_is_reproducible_for_a_fixed_seed(tiny_policy: Path) -> None:
    config = SamplingConfig(n=2, max_new_tokens=6, batch_size=2, temperature=1.0, seed=7)
    sampler = HFSampler(str(tiny_policy), config, device="cpu", dtype="float32")
    first = [c.response for b in sample_candidates(PROBLEMS[:2], sampler, config) for c in b]
    second = [c.response for b in sample_candidates(PROBLEMS[:2], sampler, config) for c in b]
    assert first == second


def test_hf_sampler_explains_a_missing_model(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cannot load causal LM"):
        HFSampler(str(tmp_path / "nope"), SamplingConfig(), device="cpu")


class _ChatHandler(BaseHTTPRequestHandler):
    failures_left = 1  # the first request gets a 503, as a flaky server would answer

    def do_POST(self) -> None:  # noqa: N802 (http.server naming)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if type(self).failures_left > 0:
            type(self).failures_left -= 1
            self.send_response(503)
            self.end_headers()
            return
        user = body["messages"][-1]["content"]
        choices = [{"index": i, "message": {"role": "assistant",
                                             "content": f"```python\n# {i} {len(user)}\n```"}}
                   for i in range(body["n"])]
        data = json.dumps({"choices": choices}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


def test_openai_sampler_retries_a_failing_server_and_returns_n_choices() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ChatHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        config = SamplingConfig(n=4)
        sampler = OpenAISampler(f"http://127.0.0.1:{server.server_port}/v1", "m", config, timeout=10)
        out = sampler.generate_batch([build_messages(PROBLEMS[0], config)], 4, [1])
        assert len(out) == 1 and len(out[0]) == 4
        assert out[0][2].startswith("```python\n# 2 ")
    finally:
        server.shutdown()


def test_openai_sampler_gives_up_with_a_clear_error_when_nothing_listens() -> None:
    sampler = OpenAISampler("http://127.0.0.1:9", "m", SamplingConfig(), timeout=2, retries=1)
    with pytest.raises(InputError, match="failed 1 times"):
        sampler.generate_batch([[{"role": "user", "content": "x"}]], 1, [0])


def test_sample_cli_resumes_after_a_torn_line(tiny_policy: Path, tmp_path: Path) -> None:
    problems = tmp_path / "problems.jsonl"
    problems.write_text("".join(json.dumps({
        "task_id": p.task_id, "prompt": p.prompt, "language": "python",
        "tests": p.tests.functional, "entry_point": p.entry_point}) + "\n" for p in PROBLEMS))
    out = tmp_path / "cands.jsonl"
    # A previous run wrote t/0 completely and was killed in the middle of a row.
    out.write_text("".join(json.dumps({"task_id": "t/0", "candidate_id": f"s{i}", "response": "x"}) + "\n"
                           for i in range(2)) + '{"task_id": "t/1", "cand')
    cmd = [sys.executable, "-m", "codescaler", "sample", "--problems", str(problems), "--output", str(out),
           "--policy", str(tiny_policy), "--n", "2", "--max-new-tokens", "4", "--dtype", "float32",
           "--device", "cpu"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in out.read_text().split("\n") if line]
    assert sorted((r["task_id"], r["candidate_id"]) for r in rows) == [
        ("t/0", "s0"), ("t/0", "s1"), ("t/1", "s0"), ("t/1", "s1"), ("t/2", "s0"), ("t/2", "s1")]
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "already have 2 candidates" in again.stdout


class _BusyServer(ThreadingHTTPServer):
    """A chat-completions server that takes ``delay`` s a request, counts requests in flight, answers
    the first ``fail`` requests with 503 (one of them with a 429), drops the connection of request
    number ``drop`` without a word, and always answers 500 to prompts containing ``broken``."""

    daemon_threads = True

    def __init__(self, delay: float, fail: int, drop: int, broken: str | None = None) -> None:
        super().__init__(("127.0.0.1", 0), _BusyHandler)
        self.delay, self.fail, self.drop, self.broken = delay, fail, drop, broken
        self.lock = threading.Lock()
        self.requests = self.in_flight = self.max_in_flight = self.answered = 0


class _BusyHandler(BaseHTTPRequestHandler):
    server: _BusyServer

    def do_POST(self) -> None:  # noqa: N802 (http.server naming)
        import time

        srv = self.server
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with srv.lock:
            srv.requests += 1
            number = srv.requests
            srv.in_flight += 1
            srv.max_in_flight = max(srv.max_in_flight, srv.in_flight)
        try:
            time.sleep(srv.delay)
            user = body["messages"][-1]["content"]
            if number == srv.drop:
                self.close_connection = True
                return
            if number <= srv.fail or (srv.broken and srv.broken in user):
                code = 429 if number == 1 else (500 if srv.broken and srv.broken in user else 503)
                self.send_response(code)
                self.send_header("Retry-After", "0")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            data = json.dumps({"choices": [{"index": i, "message": {"content": f"```python\n# {i} {user[-40:]!r}\n```"}}
                                           for i in range(body["n"])]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            with srv.lock:
                srv.answered += 1
        finally:
            with srv.lock:
                srv.in_flight -= 1

    def log_message(self, *args: object) -> None:
        pass


def _serve(server: _BusyServer) -> threading.Thread:
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return thread


MANY = [Problem(task_id=f"m/{i}", prompt=f"Return {i} + x.", tests=TestSuite(functional="pass"), entry_point="f")
        for i in range(8)]


def test_endpoint_requests_overlap_up_to_the_concurrency_and_survive_503_429_and_a_dropped_connection() -> None:
    import time

    server = _BusyServer(delay=0.4, fail=3, drop=5)
    _serve(server)
    try:
        config = SamplingConfig(n=2)
        sampler = OpenAISampler(f"http://127.0.0.1:{server.server_port}/v1", "m", config, timeout=10,
                                concurrency=4, backoff=0.05)
        started = time.perf_counter()
        batches = list(sample_candidates(MANY, sampler, config))
        elapsed = time.perf_counter() - started
    finally:
        server.shutdown()
    got = sorted((c.task_id, c.candidate_id) for batch in batches for c in batch)
    assert got == sorted((p.task_id, f"s{i}") for p in MANY for i in range(2))
    for batch in batches:  # every answer belongs to its own problem (no mix-up across threads)
        for c in batch:
            assert f"Return {c.task_id[2:]} + x." in c.response
    assert server.requests == 8 + 4 and server.answered == 8  # 3 errors and 1 dropped connection retried
    assert server.max_in_flight == 4
    # 12 requests of 0.4 s one at a time take 4.8 s; four at a time about 3 rounds.
    assert elapsed < 0.6 * 12 * 0.4, elapsed


def test_sample_cli_keeps_written_samples_when_the_endpoint_fails_and_resumes_after(tmp_path: Path) -> None:
    problems = tmp_path / "problems.jsonl"
    problems.write_text("".join(json.dumps({"task_id": p.task_id, "prompt": p.prompt, "tests": "pass",
                                            "entry_point": "f"}) + "\n" for p in MANY[:6]))
    out = tmp_path / "cands.jsonl"
    broken = _BusyServer(delay=0.0, fail=0, drop=2, broken="Return 4 + x.")
    _serve(broken)
    cmd = [sys.executable, "-m", "codescaler", "sample", "--problems", str(problems), "--output", str(out),
           "--n", "2", "--concurrency", "1", "--retries", "2"]
    try:
        failed = subprocess.run([*cmd, "--endpoint", f"http://127.0.0.1:{broken.server_port}/v1"],
                                capture_output=True, text=True, timeout=120)
    finally:
        broken.shutdown()
    assert failed.returncode == 2 and "failed 2 times" in failed.stderr, failed.stderr
    kept = sorted({json.loads(line)["task_id"] for line in out.read_text().splitlines()})
    assert kept == ["m/0", "m/1", "m/2", "m/3"]  # two calls of two problems each were written before m/4
    healthy = _BusyServer(delay=0.0, fail=0, drop=0)
    _serve(healthy)
    try:
        resumed = subprocess.run([*cmd, "--endpoint", f"http://127.0.0.1:{healthy.server_port}/v1"],
                                 capture_output=True, text=True, timeout=120)
    finally:
        healthy.shutdown()
    assert resumed.returncode == 0, resumed.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted((r["task_id"], r["candidate_id"]) for r in rows) == sorted(
        (p.task_id, f"s{i}") for p in MANY[:6] for i in range(2))
    assert healthy.requests == 2  # only m/4 and m/5 were asked for again
