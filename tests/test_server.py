"""Tests for `codescaler serve`: a real server subprocess on 127.0.0.1 with a tiny RM, a real httpx client."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from codescaler.cli import main as cli_main
from codescaler.errors import InputError
from codescaler.integrations import verl as verl_adapter
from codescaler.integrations.client import RemoteScorer
from codescaler.integrations.openrlhf import split_queries, split_query, strip_end_tokens
from codescaler.integrations.trl import CodeScalerReward
from codescaler.records import Score
from codescaler.rm_checkpoint import InputFormat, RMMetadata, write_metadata
from codescaler.scorer import Scorer
from codescaler.server.app import ServerSettings
from codescaler.server.batcher import Batcher, Overloaded, ShuttingDown
from codescaler.testing import build_tiny_model

PROBLEM = ("Write a function `is_palindrome(s: str) -> bool` that ignores case and non-alphanumerics.\n"
           ">>> is_palindrome('A man, a plan, a canal: Panama')\nTrue\n")
PROBLEM_2 = "Given n on stdin, print the n-th Fibonacci number (F(0) = 0). — ¿Dónde? 两数之和"
GOOD = ("Here is my solution:\n\n```python\nimport re\n\ndef is_palindrome(s: str) -> bool:\n"
        "    t = re.sub(r'[^a-z0-9]', '', s.lower())\n    return t == t[::-1]\n```\n\nIt runs in O(n).")
GOOD_2 = "```python\nn = int(input())\na, b = 0, 1\nfor _ in range(n):\n    a, b = b, a + b\nprint(a)\n```"
NO_CODE = "I think you should use two pointers; the code is left as an exercise."
BROKEN = "```python\ndef is_palindrome(s):\n    return s == s[::-1]\n"  # unclosed block (truncated output)
SYNTAX = "```python\ndef f(:\n    return\n```"

MAX_ITEMS = ServerSettings().max_items_per_request  # the module's server runs with the default limits
MAX_CHARS = ServerSettings().max_chars_per_item


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def tiny_rm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = build_tiny_model(tmp_path_factory.mktemp("server_rm"), arch="qwen3", seed=3)
    write_metadata(folder, RMMetadata(input_format=InputFormat.CHAT_TEMPLATE, max_length=512, backbone="tiny-qwen3"))
    return folder


class Server:
    def __init__(self, proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
        self.proc, self.port, self.log = proc, port, log
        self.url = f"http://127.0.0.1:{port}"

    def log_text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")


def _start_server(model: Path, log: Path, *extra: str) -> Server:
    port = _free_port()
    cmd = [sys.executable, "-m", "codescaler", "serve", "--rm", str(model), "--port", str(port),
           "--device", "cpu", *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    handle = open(log, "wb")  # noqa: SIM115 - the child writes to it for the server's lifetime
    proc = subprocess.Popen(cmd, stdout=handle, stderr=subprocess.STDOUT, env=env)
    handle.close()
    server = Server(proc, port, log)
    for _ in range(600):  # bounded: 120 s at most on a loaded machine
        if proc.poll() is not None:
            raise AssertionError(f"server exited with {proc.returncode}:\n{server.log_text()}")
        try:
            if httpx.get(f"{server.url}/health", timeout=1.0).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise AssertionError(f"server did not become healthy:\n{server.log_text()}")


def _stop(server: Server) -> int:
    if server.proc.poll() is None:
        server.proc.send_signal(signal.SIGTERM)
        try:
            server.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.proc.kill()
            server.proc.wait()
    return server.proc.returncode


@pytest.fixture(scope="module")
def server(tiny_rm: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = _start_server(tiny_rm, tmp_path_factory.mktemp("server") / "server.log")
    yield srv
    _stop(srv)


def _score(server: Server, items: list[dict[str, str]]) -> httpx.Response:
    return httpx.post(f"{server.url}/score", json={"items": items}, timeout=60)


# --------------------------------------------------------------------------------------------------
# routes


def test_health_and_info_describe_the_loaded_model(server: Server, tiny_rm: Path) -> None:
    assert httpx.get(f"{server.url}/health").json()["status"] == "ok"
    info = httpx.get(f"{server.url}/info").json()
    assert info["model"] == str(tiny_rm)
    assert info["input_format"] == "chat_template"
    assert info["shaping"] == "softplus"
    assert info["codescaler_version"] and info["server_version"]
    assert info["limits"]["max_items_per_request"] == MAX_ITEMS


def test_score_returns_shaped_rewards_and_zero_for_responses_without_valid_code(server: Server) -> None:
    items = [{"prompt": PROBLEM, "response": GOOD}, {"prompt": PROBLEM, "response": NO_CODE},
             {"prompt": PROBLEM_2, "response": GOOD_2}, {"prompt": PROBLEM, "response": BROKEN},
             {"prompt": PROBLEM, "response": SYNTAX, "language": "py"}]
    response = _score(server, items)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["valid"] == [True, False, True, False, False]
    assert [r for r, v in zip(body["rewards"], body["valid"], strict=True) if not v] == [0.0, 0.0, 0.0]
    assert all(r > 0 for r, v in zip(body["rewards"], body["valid"], strict=True) if v)
    assert body["raw_scores"][1] is None and isinstance(body["raw_scores"][0], float)
    assert body["raw_scores"][0] != body["raw_scores"][2]  # different inputs, different scores


def test_get_reward_splits_chatml_queries_like_openrlhf_sends_them(server: Server) -> None:
    system = "<|im_start|>system\nYou are a helpful coding assistant.<|im_end|>\n"
    prompt = f"{system}<|im_start|>user\n{PROBLEM}<|im_end|>\n<|im_start|>assistant\n"
    queries = [prompt + GOOD + "<|im_end|><|endoftext|><|endoftext|>", prompt + NO_CODE + "<|im_end|>"]
    with_prompts = httpx.post(f"{server.url}/get_reward",
                              json={"query": queries, "prompts": [prompt, prompt], "labels": ["", ""]}, timeout=60)
    assert with_prompts.status_code == 200, with_prompts.text
    body = with_prompts.json()
    assert body["rewards"][0] > 0 and body["rewards"][1] == 0.0
    assert body["scores"] == body["rewards"]
    assert body["extra_logs"]["valid"] == [1.0, 0.0]
    # Without prompts the query is parsed on its own and must give the same reward, equal to /score's.
    alone = httpx.post(f"{server.url}/get_reward", json={"query": queries}, timeout=60).json()
    native = _score(server, [{"prompt": PROBLEM, "response": GOOD}]).json()
    assert alone["rewards"][0] == pytest.approx(body["rewards"][0], abs=1e-6)
    assert native["rewards"][0] == pytest.approx(body["rewards"][0], abs=1e-6)


def test_unparseable_query_without_prompts_is_a_422_that_says_to_send_prompts(server: Server) -> None:
    response = httpx.post(f"{server.url}/get_reward", json={"query": ["def f(): pass"]}, timeout=30)
    assert response.status_code == 422
    assert "query[0]" in response.json()["error"] and "prompts" in response.json()["error"]


@pytest.mark.parametrize(("body", "field"), [
    ({"items": [{"prompt": "p"}]}, "items.0.response"),
    ({"items": [{"prompt": "p", "response": 3}]}, "items.0.response"),
    ({"items": "not a list"}, "items"),
    ({"itemz": []}, "items"),
    ({"items": [{"prompt": "p", "response": "r", "language": "cobol"}]}, "items.0.language"),
])
def test_malformed_score_bodies_get_422_naming_the_field(server: Server, body: dict, field: str) -> None:
    response = httpx.post(f"{server.url}/score", json=body, timeout=30)
    assert response.status_code == 422
    assert repr(field) in response.json()["error"]


def test_body_that_is_not_json_gets_422(server: Server) -> None:
    response = httpx.post(f"{server.url}/score", content=b'{"items": [{"prompt": "p", "resp',
                          headers={"content-type": "application/json"}, timeout=30)
    assert response.status_code == 422
    assert "JSON" in response.json()["error"]


def test_too_many_items_get_413_naming_the_limit(server: Server) -> None:
    items = [{"prompt": "p", "response": "r"}] * (MAX_ITEMS + 1)
    response = _score(server, items)
    assert response.status_code == 413
    assert f"max_items_per_request={MAX_ITEMS}" in response.json()["error"]
    queries = ["<|im_start|>user\nq<|im_end|>\n<|im_start|>assistant\nx"] * (MAX_ITEMS + 1)
    assert httpx.post(f"{server.url}/get_reward", json={"query": queries}, timeout=60).status_code == 413


def test_huge_item_gets_413_naming_the_item_and_limit(server: Server) -> None:
    huge = "```python\n" + "x = 1\n" * (MAX_CHARS // 6 + 10) + "```"
    response = _score(server, [{"prompt": PROBLEM, "response": GOOD}, {"prompt": PROBLEM, "response": huge}])
    assert response.status_code == 413
    error = response.json()["error"]
    assert "items.1" in error and f"max_chars_per_item={MAX_CHARS}" in error


def test_sixteen_concurrent_clients_all_get_their_own_answers(server: Server) -> None:
    responses = [GOOD, NO_CODE, GOOD_2, BROKEN]

    async def one(client: httpx.AsyncClient, i: int) -> tuple[int, dict]:
        items = [{"prompt": PROBLEM, "response": responses[(i + k) % 4]} for k in range(1 + i % 3)]
        r = await client.post("/score", json={"items": items})
        return r.status_code, r.json()

    async def main() -> list[tuple[int, dict]]:
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
            return await asyncio.gather(*(one(client, i) for i in range(16)))

    results = asyncio.run(main())
    expected_valid = [True, False, True, False]
    for i, (status, body) in enumerate(results):
        assert status == 200, body
        assert body["valid"] == [expected_valid[(i + k) % 4] for k in range(1 + i % 3)]
    # Same (problem, response) -> same reward whatever batch it landed in.
    goods = {round(b["rewards"][k], 5) for i, (_, b) in enumerate(results)
             for k in range(len(b["rewards"])) if (i + k) % 4 == 0}
    assert len(goods) == 1


def test_a_client_dropping_its_connection_mid_request_does_not_break_the_server(server: Server) -> None:
    body = json.dumps({"items": [{"prompt": PROBLEM, "response": GOOD}] * 8}).encode()
    head = (f"POST /score HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    for payload in (head + body[: len(body) // 2], head + body):  # half a body; a whole one, no wait
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        sock.sendall(payload)
        sock.close()
    time.sleep(0.5)
    assert server.proc.poll() is None
    response = _score(server, [{"prompt": PROBLEM, "response": GOOD}])
    assert response.status_code == 200 and response.json()["valid"] == [True]


def test_logs_never_contain_prompts_or_responses(server: Server) -> None:
    marker = "zebra_canary_4417"
    _score(server, [{"prompt": f"{PROBLEM} {marker}", "response": GOOD.replace("re.sub", f"re.sub  # {marker}")}])
    httpx.post(f"{server.url}/score", json={"items": [{"prompt": marker}]}, timeout=30)
    assert marker not in server.log_text()


def test_sigterm_drains_in_flight_requests_and_exits_zero(tiny_rm: Path, tmp_path: Path) -> None:
    # A long batching window keeps the requests in the queue when the signal arrives.
    srv = _start_server(tiny_rm, tmp_path / "server.log", "--max-wait-ms", "1500", "--max-batch", "1000")

    async def main() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=srv.url, timeout=60) as client:
            tasks = [asyncio.create_task(client.post("/score", json={"items": [{"prompt": PROBLEM, "response": r}]}))
                     for r in (GOOD, NO_CODE, GOOD_2)]
            await asyncio.sleep(0.5)
            srv.proc.send_signal(signal.SIGTERM)
            return await asyncio.gather(*tasks)

    try:
        results = asyncio.run(main())
        returncode = srv.proc.wait(timeout=20)
    finally:
        _stop(srv)
    assert [r.status_code for r in results] == [200, 200, 200]
    assert [r.json()["valid"][0] for r in results] == [True, False, True]
    assert returncode == 0, srv.log_text()


def test_serve_with_a_missing_model_or_bad_port_fails_fast_with_exit_2(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["serve", "--rm", str(tmp_path / "nope"), "--port", str(_free_port())]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert cli_main(["serve", "--rm", str(tmp_path), "--port", "70000"]) == 2
    assert "65535" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------------
# adapters through the server URL


def test_trl_and_verl_adapters_through_the_server_match_in_process_scoring(
        server: Server, tiny_rm: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    responses = [GOOD, NO_CODE, GOOD_2, BROKEN]
    local = Scorer.load(str(tiny_rm), device="cpu").score([PROBLEM] * 4, responses)
    remote = CodeScalerReward(url=f"{server.url}/score")(prompts=[PROBLEM] * 4, completions=responses)
    assert remote == pytest.approx([s.reward for s in local], abs=1e-5)
    monkeypatch.setenv("CODESCALER_RM_URL", server.url)
    monkeypatch.delenv("CODESCALER_RM", raising=False)
    verl_adapter.set_scorer(None)
    try:
        batch = verl_adapter.compute_score_batch(["d"] * 4, responses, [None] * 4, [{"question": PROBLEM}] * 4,
                                                 return_dict=False)
        assert batch == pytest.approx(remote, abs=1e-6)
        # More items than one model batch (--max-batch 64) are chunked by the server.
        many = verl_adapter.compute_score_batch(["d"] * 69, [GOOD] * 69, [None] * 69, [{"question": PROBLEM}] * 69,
                                                return_dict=False)
        assert len(many) == 69 and len(set(many)) == 1
    finally:
        verl_adapter.set_scorer(None)
    with pytest.raises(RuntimeError, match="422"):
        RemoteScorer(server.url).score([PROBLEM], [GOOD], ["cobol"])


# --------------------------------------------------------------------------------------------------
# query splitting (pure)


def test_split_query_handles_llama3_deepseek_inst_and_plain_templates() -> None:
    llama = ("<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
             f"<|start_header_id|>user<|end_header_id|>\n\n{PROBLEM}<|eot_id|>"
             f"<|start_header_id|>assistant<|end_header_id|>\n\n{GOOD}<|eot_id|>")
    deepseek = f"<｜begin▁of▁sentence｜><｜User｜>{PROBLEM}<｜Assistant｜>{GOOD}<｜end▁of▁sentence｜>"
    inst = f"<s>[INST] {PROBLEM} [/INST] {GOOD}</s>"
    plain = f"User: {PROBLEM}\nAssistant: {GOOD}"
    for query in (llama, deepseek, inst, plain):
        problem, response = split_query(query)
        assert problem.strip() == PROBLEM.strip(), query
        assert response == GOOD, query


def test_split_query_prefers_the_given_prompt_and_takes_the_last_assistant_turn() -> None:
    prompt = f"<|im_start|>user\n{PROBLEM}<|im_end|>\n<|im_start|>assistant\n"
    # The response itself mentions a ChatML header; the prompt prefix must win over parsing.
    tricky = "```python\nprint('<|im_start|>assistant')\n```"
    assert split_query(prompt + tricky + "<|im_end|>", prompt) == (PROBLEM, tricky)
    multi = (f"<|im_start|>user\nold question<|im_end|>\n<|im_start|>assistant\nold answer<|im_end|>\n"
             f"<|im_start|>user\n{PROBLEM}<|im_end|>\n<|im_start|>assistant\n{GOOD}")
    assert split_query(multi) == (PROBLEM, GOOD)
    with pytest.raises(InputError, match="prompts"):
        split_queries(["a", "b"], ["a"])


# --------------------------------------------------------------------------------------------------
# the batcher on its own (a real scoring function standing in for the model)


def _length_scores(prompts: list[str], responses: list[str], languages: list[str | None]) -> list[Score]:
    if any(r == "boom" for r in responses):
        raise InputError("boom is not a response", field="response")
    return [Score(raw_score=float(len(r)), valid=True, reward=float(len(p) + len(r))) for p, r in
            zip(prompts, responses, strict=True)]


def test_batcher_merges_concurrent_requests_and_routes_each_result_back() -> None:
    sizes: list[int] = []

    def recording(prompts, responses, languages):
        sizes.append(len(prompts))
        return _length_scores(prompts, responses, languages)

    async def main() -> list[list[Score]]:
        batcher = Batcher(recording, max_batch=100, max_wait_ms=200)
        await batcher.start()
        try:
            return await asyncio.gather(*(batcher.submit(["p" * i] * (1 + i % 3), ["r"] * (1 + i % 3))
                                          for i in range(20)))
        finally:
            await batcher.close()

    results = asyncio.run(main())
    for i, scores in enumerate(results):
        assert [s.reward for s in scores] == [float(i + 1)] * (1 + i % 3)
    assert sum(sizes) == sum(1 + i % 3 for i in range(20))
    assert len(sizes) <= 3  # 20 concurrent requests were merged, not run one by one


def test_batcher_answers_overloaded_when_full_and_isolates_a_failing_request() -> None:
    release = threading.Event()

    def slow(prompts, responses, languages):
        release.wait(timeout=30)
        return _length_scores(prompts, responses, languages)

    async def main() -> None:
        batcher = Batcher(slow, max_batch=1, max_wait_ms=0, max_queue=2, retry_after_s=2)
        await batcher.start()
        running = asyncio.create_task(batcher.submit(["a"], ["x"]))
        await asyncio.sleep(0.2)  # the collector took it; the model call blocks
        queued = [asyncio.create_task(batcher.submit(["b"], ["y"])) for _ in range(2)]
        await asyncio.sleep(0.1)
        with pytest.raises(Overloaded) as info:
            await batcher.submit(["c"], ["z"])
        assert info.value.retry_after_s == 2
        release.set()
        assert [s[0].reward for s in await asyncio.gather(running, *queued)] == [2.0, 2.0, 2.0]
        await batcher.close()
        with pytest.raises(ShuttingDown):
            await batcher.submit(["a"], ["x"])

    asyncio.run(main())

    async def isolated() -> list[object]:
        batcher = Batcher(_length_scores, max_batch=10, max_wait_ms=100)
        await batcher.start()
        try:
            return await asyncio.gather(batcher.submit(["p"], ["ok"]), batcher.submit(["p"], ["boom"]),
                                        batcher.submit(["p"], ["fine"]), return_exceptions=True)
        finally:
            await batcher.close()

    good, bad, fine = asyncio.run(isolated())
    assert isinstance(bad, InputError)
    assert [s.reward for s in good] == [3.0] and [s.reward for s in fine] == [5.0]  # type: ignore[union-attr]


# The shapes that made the old template regexes quadratic (issue 15 item 10): runs of newlines or blanks
# where a header may start but none follows, many headers without their terminator, many end tokens.
_N = 65_536
HOSTILE_QUERIES: dict[str, tuple[str, str | None]] = {
    "newlines": ("\n" * _N, None),
    "blank lines": (" \n" * (_N // 2), None),
    "plain user then newlines": ("User: q" + "\n" * _N + "x\nAssistant: y", None),
    "plain header then newlines": ("Assistant:" + "\n" * _N, None),
    "inst with newline runs": ("[INST] q" + "\n \n" * (_N // 3) + "x [/INST] y", None),
    "inst headers with open sys blocks": ("[INST] <<SYS>>" * (_N // 8) + "[/INST] y", None),
    "chatml user headers": ("<|im_start|>user" * (_N // 8) + "<|im_start|>assistant\nx", None),
    "llama3 user headers": ("<|start_header_id|>user<|end_header_id|>" * (_N // 16)
                            + "<|start_header_id|>assistant<|end_header_id|>x", None),
    "end tokens": ("<|im_start|>user\nq<|im_end|><|im_start|>assistant\nx" + "<|im_end|> " * (_N // 4), None),
    "prompt of newlines": ("P" + "\n" * _N + "resp", "P" + "\n" * _N),
}


@pytest.mark.parametrize("name", list(HOSTILE_QUERIES))
def test_split_query_takes_linear_time_on_hostile_queries(name: str) -> None:
    query, prompt = HOSTILE_QUERIES[name]
    started = time.perf_counter()
    with contextlib.suppress(InputError):  # refusing is fine; taking long is not
        split_query(query, prompt)
    elapsed = time.perf_counter() - started
    # Linear parsing of 64k characters takes milliseconds; the quadratic regexes took 5-80 s here.
    assert elapsed < 0.5, f"{name}: {elapsed:.2f} s for {len(query)} characters"


def test_split_query_keeps_its_rules_on_edge_cases() -> None:
    # Header whitespace, system blocks, multi-line plain turns and stacked end tokens.
    assert split_query("<|im_start|>user\nq<|im_end|>\n<|im_start|>assistant\n  a <|im_end|>\n<|endoftext|> ") == \
        ("q", "  a")
    assert split_query("[INST] <<SYS>>\nBe kind.\n<</SYS>>\n\n  two\nlines  [/INST]  ans </s>") == ("two\nlines", "ans")
    assert split_query("System: hi\n\nUser:\n  line 1\n  line 2\n\n  ASSISTANT: ok") == ("line 1\n  line 2", "ok")
    assert split_query("### Instruction:\nsum\n### Response:\ncode") == ("sum", "code")
    assert split_query("<｜User｜>a<｜Assistant｜>b<｜end▁of▁sentence｜><｜User｜>c<｜Assistant｜>d") == ("c", "d")
    assert strip_end_tokens("x </s> <pad>\n<pad>") == "x"
    assert strip_end_tokens("   ") == ""


# --------------------------------------------------------------------------------------------------
# hostile clients (issue 15 items 10-12) and OpenRLHF's whole-rollout request (issue 14 item 2)


def _raw_post(port: int, path: str, body: bytes | None, headers: dict[str, str], chunks: int = 0,
              chunk: bytes = b"") -> tuple[int, dict, bool]:
    """POST over a raw socket; with ``chunks`` the body is sent chunked (no Content-Length): ``body`` as the
    first chunk, then ``chunk`` ``chunks`` times. Returns (status, JSON body, whether every byte was sent)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=60)
    head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    sent_all = True
    try:
        if chunks:
            sock.sendall((head + "Transfer-Encoding: chunked\r\n\r\n").encode())
            try:
                for piece in [body or b""] + [chunk] * chunks + [b'{"prompt": "p", "response": "r"}]}']:
                    sock.sendall(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
                sock.sendall(b"0\r\n\r\n")
            except OSError:
                sent_all = False  # the server may stop reading once it has answered
        else:
            sock.sendall(head.encode() + b"\r\n" + (body or b""))
        data = b""
        while b"\r\n\r\n" not in data:
            data += sock.recv(65536)
        header, rest = data.split(b"\r\n\r\n", 1)
        length = int(next(line.split(b":")[1] for line in header.split(b"\r\n") if line.lower().startswith(b"content-length")))
        while len(rest) < length:
            rest += sock.recv(65536)
        return int(header.split()[1]), json.loads(rest[:length]), sent_all
    finally:
        sock.close()


def test_a_chunked_body_over_the_byte_limit_gets_413_as_it_arrives(server: Server) -> None:
    limit = ServerSettings().max_body_bytes
    item = b'{"prompt": "p", "response": "' + b"a" * 10_000 + b'"},'
    piece = item * 100  # ~1 MB; 70 of them: 70 MB with no Content-Length, every item under the char limit
    status, body, _ = _raw_post(server.port, "/score", b'{"items": [', {"Content-Type": "application/json"},
                                chunks=70, chunk=piece)
    assert status == 413, body
    assert f"max_body_bytes={limit}" in body["error"]
    # The same by Content-Length is refused before a byte of the body is read.
    status, body, _ = _raw_post(server.port, "/get_reward", None, {"Content-Length": str(limit + 1)})
    assert status == 413 and f"max_body_bytes={limit}" in body["error"]
    assert httpx.get(f"{server.url}/health").json()["status"] == "ok"


def test_routing_and_body_errors_use_the_documented_error_shape(server: Server) -> None:
    missing = httpx.get(f"{server.url}/nope")
    assert missing.status_code == 404 and missing.json() == {"error": "Not Found"}
    wrong_method = httpx.get(f"{server.url}/score")
    assert wrong_method.status_code == 405 and wrong_method.json() == {"error": "Method Not Allowed"}
    assert "POST" in wrong_method.headers["allow"]
    for bad, words in ((b"\xff\xfe\x00garbage", "JSON"), (b"[" * 100_000, "nested too deeply"),
                       (b'{"items": [], "n": ' + b"9" * 5000 + b"}", "JSON")):
        response = httpx.post(f"{server.url}/score", content=bad, headers={"content-type": "application/json"})
        assert response.status_code == 422, response.text
        assert words in response.json()["error"] and set(response.json()) <= {"error", "detail"}


def _json_ascii(obj: object) -> bytes:
    # How OpenRLHF's requests.post(json=...) encodes: ASCII with \\u escapes, so a lone surrogate travels.
    return json.dumps(obj).encode("ascii")


def test_lone_surrogates_are_refused_at_the_edge_with_422_naming_the_field(server: Server) -> None:
    items = [{"prompt": PROBLEM, "response": GOOD}, {"prompt": "two \ud800 sum", "response": GOOD}]
    response = httpx.post(f"{server.url}/score", content=_json_ascii({"items": items}),
                          headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text
    assert "'items.1.prompt'" in response.json()["error"] and "surrogate" in response.json()["error"]
    prompt = f"<|im_start|>user\n{PROBLEM}<|im_end|>\n<|im_start|>assistant\n"
    body = {"query": [prompt + GOOD, prompt + "```python\nx = '\udfff'\n```"], "prompts": [prompt, prompt]}
    response = httpx.post(f"{server.url}/get_reward", content=_json_ascii(body),
                          headers={"content-type": "application/json"})
    assert response.status_code == 422 and "'query.1'" in response.json()["error"]
    # A surrogate pair is ordinary text (an emoji) and is scored.
    body = {"items": [{"prompt": PROBLEM + " \U0001F600", "response": GOOD}]}
    response = httpx.post(f"{server.url}/score", content=_json_ascii(body), headers={"content-type": "application/json"})
    assert response.status_code == 200 and response.json()["valid"] == [True]


def test_serve_refuses_a_batching_window_that_is_not_a_finite_number(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for value, shown in (("nan", "got nan"), ("inf", "got inf"), ("-1", "got -1"), ("1e9", "got 1e+09")):
        assert cli_main(["serve", "--rm", str(tmp_path / "nope"), "--max-wait-ms", value]) == 2
        err = capsys.readouterr().err
        assert "'max-wait-ms'" in err and shown in err and err.count("\n") == 1, err
    assert cli_main(["serve", "--rm", str(tmp_path / "nope"), "--graceful-timeout", "nan"]) == 2
    assert "graceful-timeout" in capsys.readouterr().err
    with pytest.raises(ValueError, match="max_wait_ms"):
        Batcher(_length_scores, max_wait_ms=float("nan"))


@pytest.mark.parametrize(("kw", "message"), [
    ({"max_batch": 0}, "field 'max-batch': must be >= 1, got 0"),
    ({"max_body_bytes": -1}, "field 'max-body-bytes': must be >= 1, got -1"),
    ({"max_wait_ms": float("nan")}, "field 'max-wait-ms': must be a finite number in 0..60000, got nan"),
    ({"drain_timeout_s": float("inf")}, "field 'drain-timeout-s': must be a finite number >= 0, got inf"),
])
def test_server_settings_out_of_range_are_refused_in_one_line_by_validate_and_create_app(kw, message) -> None:
    from codescaler.server.app import create_app

    settings = ServerSettings(**kw)
    for call in (settings.validate, settings.check, lambda: create_app(object(), settings)):  # type: ignore[arg-type]
        with pytest.raises(InputError) as err:
            call()
        assert str(err.value) == message


def _openrlhf_rollout(count: int) -> tuple[list[str], list[str], list[str], list[str], list[str]]:
    """(queries, prompts, labels, problems, responses) as OpenRLHF 0.9's RemoteRewardModel builds them:
    prompts from the Qwen chat template (apply_chat_template, add_generation_prompt=True), queries =
    tokenizer.batch_decode(prompt + response tokens, skip_special_tokens=False) with the pad tokens
    removed (the eos <|im_end|> stays), labels the dataset's label strings."""
    system = "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"
    pool = [GOOD, GOOD_2, NO_CODE, BROKEN, SYNTAX]
    queries, prompts, labels, problems, responses = [], [], [], [], []
    for i in range(count):
        problem = f"{(PROBLEM, PROBLEM_2)[i % 2]} (case {i // 8})"          # 8 samples per prompt
        response = pool[i % 5].replace("```python\n", f"```python\n# sample {i}\n", 1)
        prompt = f"{system}<|im_start|>user\n{problem}<|im_end|>\n<|im_start|>assistant\n"
        queries.append(prompt + response + "<|im_end|>")
        prompts.append(prompt)
        labels.append(json.dumps({"inputs": ["3"], "outputs": ["2"]}))
        problems.append(problem)
        responses.append(response)
    return queries, prompts, labels, problems, responses


def test_an_openrlhf_rollout_of_1024_queries_in_one_request_matches_in_process_scoring(
        server: Server, tiny_rm: Path) -> None:
    requests = pytest.importorskip("requests")
    queries, prompts, labels, problems, responses = _openrlhf_rollout(1024)  # 128 prompts x 8 samples
    # Exactly OpenRLHF 0.9's request_api_wrapper: requests.post(json=...), its header and timeout.
    reply = requests.post(url=f"{server.url}/get_reward", json={"query": queries, "prompts": prompts, "labels": labels},
                          headers={"Content-Type": "application/json"}, timeout=180)
    reply.raise_for_status()
    body = reply.json()
    assert len(body["rewards"]) == 1024 and body["scores"] == body["rewards"]
    assert all(len(values) == 1024 for values in body["extra_logs"].values())
    local = Scorer.load(str(tiny_rm), device="cpu").score(problems, responses)
    expected = [s.reward for s in local]
    assert len({round(r, 4) for r in expected if r > 0}) > 100 and expected.count(0.0) > 300  # scores differ
    assert body["rewards"] == pytest.approx(expected, abs=1e-5)
    assert body["extra_logs"]["valid"] == [1.0 if s.valid else 0.0 for s in local]
    info = httpx.get(f"{server.url}/info").json()
    assert info["limits"]["max_batch"] == 64  # so the model saw the rollout in chunks of 64, not 1,024 at once


# --------------------------------------------------------------------------------------------------
# the batcher: chunks, isolation by halves, a stopped collector


def test_batcher_feeds_a_large_request_in_chunks_and_serves_others_between_them() -> None:
    calls: list[tuple[int, bool]] = []

    def recording(prompts, responses, languages):
        calls.append((len(prompts), "small" in prompts))
        return _length_scores(prompts, responses, languages)

    async def main() -> tuple[list[Score], list[Score]]:
        batcher = Batcher(recording, max_batch=10, max_wait_ms=0)
        await batcher.start()
        try:
            big = asyncio.create_task(batcher.submit([f"p{i}" for i in range(95)], ["r"] * 95))
            await asyncio.sleep(0)
            small = asyncio.create_task(batcher.submit(["small"], ["r"]))
            return await big, await small
        finally:
            await batcher.close()

    big, small = asyncio.run(main())
    assert [s.reward for s in big] == [float(len(f"p{i}") + 1) for i in range(95)]  # in order
    assert [s.reward for s in small] == [6.0]
    assert max(size for size, _ in calls) <= 10 and sum(size for size, _ in calls) == 96
    assert calls.index((1, True)) < len(calls) - 1  # the small request did not wait for all ten chunks


def test_batcher_isolates_a_failing_request_by_halves_not_one_by_one() -> None:
    calls: list[int] = []

    def recording(prompts, responses, languages):
        calls.append(len(prompts))
        return _length_scores(prompts, responses, languages)

    async def main() -> list[object]:
        batcher = Batcher(recording, max_batch=1000, max_wait_ms=200)
        await batcher.start()
        try:
            return await asyncio.gather(*(batcher.submit(["p"], ["boom" if i == 37 else "ok"]) for i in range(64)),
                                        return_exceptions=True)
        finally:
            await batcher.close()

    results = asyncio.run(main())
    assert isinstance(results[37], InputError)
    assert all(r[0].reward == 3.0 for i, r in enumerate(results) if i != 37)  # type: ignore[index]
    # 1 full batch + 2 per level of halving (log2 64 = 6): 13 calls; one by one would be 65.
    assert len(calls) <= 13 and sum(calls) <= 64 * 3


class _Fatal(BaseException):
    """Stands for a fault no ordinary ``except Exception`` sees (it stops the collector task)."""


def test_a_stopped_scoring_worker_answers_503_and_health_says_dead(caplog: pytest.LogCaptureFixture) -> None:
    import uvicorn

    from codescaler.server.app import create_app

    class FatalOnDie:
        info = {"model": "stand-in"}

        def score(self, prompts, responses, languages=None):
            if "die" in responses:
                raise _Fatal("the scoring thread hit a fatal fault")
            return _length_scores(list(prompts), list(responses), list(languages or [None] * len(prompts)))

    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(FatalOnDie(), ServerSettings(max_wait_ms=0)), host="127.0.0.1",
                                           port=port, log_level="warning", lifespan="on", log_config=None))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            time.sleep(0.1)
        assert httpx.post(f"{url}/score", json={"items": [{"prompt": "p", "response": "ok"}]}).status_code == 200
        dying = httpx.post(f"{url}/score", json={"items": [{"prompt": "p", "response": "die"}]}, timeout=10)
        assert dying.status_code == 503 and "restart" in dying.json()["error"]
        health = httpx.get(f"{url}/health", timeout=5)
        assert health.status_code == 503 and health.json()["status"] == "dead"
        assert "_Fatal" in health.json()["error"]
        after = httpx.post(f"{url}/score", json={"items": [{"prompt": "p", "response": "ok"}]}, timeout=10)
        assert after.status_code == 503
    finally:
        server.should_exit = True
        thread.join(timeout=30)
    assert not thread.is_alive()
    assert "shutdown failed" not in caplog.text  # the server still stops cleanly


# --------------------------------------------------------------------------------------------------
# other clients' throughput next to poisoned and stalling ones, measured against a clean run in the same
# test (alternating clean and disturbed phases, so drift in the machine's load hits both alike)

NORMAL_CLIENTS = 8
PAIRS, PHASE_S = 8, 0.75
# The goal is >= 0.9. On this shared 2-core box the same measurement with no disturber at all ranged
# 0.81-1.35 (benchmarks/bench_server.py --hostile prints that noise next to the real figures), so the test
# asserts a bound the defects were far below (the poison retry path gave 0.32; one stalling query gave 0:
# the event loop stopped for 18 s) and the figures are reported from benchmark runs.
MIN_RATIO = 0.5


async def _throughput_ratio(url: str, disturber: Any) -> dict[str, float]:
    """Median over PAIRS of (items/s of NORMAL_CLIENTS closed-loop clients, 2 unique items per request,
    while ``disturber(session, stop_at, stats)`` runs beside them) / (the same in the clean phase just
    before). Short alternating phases and the median keep drift in the machine's load out of the ratio.
    Also the slowest /health answer during the disturbed phases."""
    import aiohttp

    stats: dict[str, float] = {"health_max_s": 0.0, "disturber_requests": 0, "client_interval_s": 0.1}

    async def normal(session: aiohttp.ClientSession, stop_at: float, tag: str, counter: list[int]) -> None:
        i = 0
        while time.perf_counter() < stop_at:
            items = [{"prompt": PROBLEM, "response": GOOD.replace("re.sub", f"re.sub  # {tag} {i} {k}")} for k in range(2)]
            async with session.post("/score", json={"items": items}) as reply:
                assert reply.status == 200, await reply.text()
                await reply.read()
            counter[0] += 2
            i += 1

    async def health(session: aiohttp.ClientSession, stop_at: float) -> None:
        while time.perf_counter() < stop_at:
            started = time.perf_counter()
            async with session.get("/health") as reply:
                assert reply.status == 200
            stats["health_max_s"] = max(stats["health_max_s"], time.perf_counter() - started)
            await asyncio.sleep(0.05)

    ratios: list[float] = []
    timeout = aiohttp.ClientTimeout(total=120)
    # The disturbers get their own connections: a connection the server drops must not hit a normal client.
    async with aiohttp.ClientSession(url, timeout=timeout, connector=aiohttp.TCPConnector(limit=0)) as session, \
            aiohttp.ClientSession(url, timeout=timeout, connector=aiohttp.TCPConnector(limit=0)) as other:
        await asyncio.gather(*(normal(session, time.perf_counter() + 0.5, f"w{c}", [0]) for c in range(4)))
        clean_rate = 0.0
        for phase in range(2 * PAIRS):
            disturbed = phase % 2 == 1
            counter = [0]
            started = time.perf_counter()
            stop_at = started + PHASE_S
            tasks = [normal(session, stop_at, f"{phase}.{c}", counter) for c in range(NORMAL_CLIENTS)]
            if disturbed:
                tasks += [disturber(other, stop_at, stats), health(other, stop_at)]
            await asyncio.gather(*tasks)
            rate = counter[0] / (time.perf_counter() - started)
            if disturbed:
                ratios.append(rate / clean_rate)
            else:  # how often one normal client got a request through: a paced disturber's interval
                clean_rate = rate
                stats["client_interval_s"] = NORMAL_CLIENTS * 2 / rate
    stats["ratio"] = statistics.median(ratios)
    return stats


def test_poisoned_clients_do_not_slow_the_other_clients_down(server: Server) -> None:
    poison = _json_ascii({"items": [{"prompt": PROBLEM, "response": GOOD},
                                    {"prompt": "two \ud800 sum", "response": GOOD_2}]})

    async def poisoned_clients(session: Any, stop_at: float, stats: dict[str, float]) -> None:
        # Four RL workers whose batches carry a poisoned prompt, each sending as often as a normal client
        # does (unpaced, a 422 is so cheap that 4 clients send 3x the normal clients' requests: that is
        # load, not poison; benchmarks/bench_server.py --hostile measures both).
        async def one() -> None:
            while time.perf_counter() < stop_at:
                started = time.perf_counter()
                async with session.post("/score", data=poison, headers={"content-type": "application/json"}) as reply:
                    assert reply.status == 422, await reply.text()
                    await reply.read()
                stats["disturber_requests"] += 1
                await asyncio.sleep(max(0.0, stats["client_interval_s"] - (time.perf_counter() - started)))
        await asyncio.gather(*(one() for _ in range(4)))

    failed_before = httpx.get(f"{server.url}/info").json()["failed_batches"]
    stats = asyncio.run(_throughput_ratio(server.url, poisoned_clients))
    print(f"poison: {stats}")
    assert stats["disturber_requests"] > 20
    assert httpx.get(f"{server.url}/info").json()["failed_batches"] == failed_before  # never reached the model
    assert stats["ratio"] >= MIN_RATIO, stats


def test_queries_with_64k_newlines_do_not_stall_the_server(server: Server) -> None:
    n = 65_536
    stalls = [_json_ascii(body) for body in (
        {"query": ["\n" * n]},                                                         # no template: 422
        {"query": ["[INST] q" + "\n \n" * (n // 3) + " [/INST] " + GOOD_2]},           # parsed and scored
        {"query": ["P" + "\n" * n + GOOD_2], "prompts": ["P" + "\n" * n]},             # prompt given
        {"query": ["User: q" + "\n" * n]},                                             # header, no answer
    )]

    async def stalling_client(session: Any, stop_at: float, stats: dict[str, float]) -> None:
        i = 0
        while time.perf_counter() < stop_at:
            async with session.post("/get_reward", data=stalls[i % len(stalls)],
                                    headers={"content-type": "application/json"}) as reply:
                assert reply.status in (200, 422), await reply.text()
                await reply.read()
            stats["disturber_requests"] += 1
            i += 1

    stats = asyncio.run(_throughput_ratio(server.url, stalling_client))
    print(f"stall: {stats}")
    assert stats["disturber_requests"] >= 8
    assert stats["health_max_s"] < 2.0, stats  # one such query held the event loop for 18 s
    assert stats["ratio"] >= MIN_RATIO, stats


def test_the_client_plans_requests_under_the_servers_item_and_byte_limits() -> None:
    from codescaler.integrations.client import plan_chunks

    assert plan_chunks([], 10, 100) == []
    assert plan_chunks([1] * 25, 10, 100) == [(0, 10), (10, 20), (20, 25)]
    assert plan_chunks([40, 40, 40, 500, 10], 10, 100) == [(0, 2), (2, 3), (3, 4), (4, 5)]
