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
