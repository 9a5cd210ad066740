"""Load benchmark of `codescaler serve`: HTTP throughput and latency vs in-process Scorer throughput.

Starts a real server subprocess on 127.0.0.1, drives it with a real aiohttp client at concurrency 1, 16 and
64 (one item per request, as an RL reward worker sends them; bounded request counts), and scores the same
items in this process with the same model, one at a time and in batches — all in one run, so the ratios
are measured side by side on the same machine state.

    python benchmarks/bench_server.py                       # MiniLM-based RM (random head), CPU
    python benchmarks/bench_server.py --model path/to/rm --device cuda --requests 512

    python benchmarks/bench_server.py --model tiny          # a 2-layer Qwen3-architecture RM from a config

    python benchmarks/bench_server.py --model tiny --hostile  # others' throughput next to hostile clients

``--hostile`` (issue 15: poison and stall) measures the items/s of 8 closed-loop normal clients (2 unique
items per request) in clean phases and, alternating with them, in phases where a disturber runs beside
them; it prints disturbed/clean per disturber: nothing (the noise of the measurement itself), 4 clients
posting a prompt with a lone surrogate at a normal client's pace, the same 4 unpaced (as fast as 422s
come back: mostly extra load), the same 4 pacing VALID requests (the cost of any 4 extra clients), and
one client posting 64k-newline /get_reward queries back to back (mostly extra load, like the unpaced
poison) and the same client paced like a normal one; and the slowest /health meanwhile.

What to expect: micro-batching turns concurrent one-item requests into model batches. The gain is what
batching gives the model on the device: large where a one-item call is dominated by fixed per-call cost
(a GPU, or the tiny model on CPU: the brief's bar is >= 3x), small where the model is compute-bound (a
22M-parameter encoder on 2 CPU cores: batching in-process gained 1.5x, and the server can at best match
in-process batching). Compare the server at c=16/64 with the in-process batched row. p50 latency goes up
by roughly the batch's compute time. Every item is unique (the Scorer scores duplicates once).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

PROBLEMS = [
    "Given an array of integers nums and an integer target, return indices of the two numbers such that they "
    "add up to target. You may assume that each input has exactly one solution.\n>>> two_sum([2,7,11,15], 9)\n[0, 1]",
    "Read n from standard input, then n lines each with two integers a and b; print a + b for each line.",
    "Write a function `longest_common_prefix(strs: list[str]) -> str` that returns the longest common prefix "
    "of the strings, or an empty string if there is none.",
]
RESPONSES = [
    "Use a dictionary from value to index.\n\n```python\ndef two_sum(nums, target):\n    seen = {}\n"
    "    for i, x in enumerate(nums):\n        if target - x in seen:\n            return [seen[target - x], i]\n"
    "        seen[x] = i\n    return []\n```\nThis is O(n) time and O(n) memory.",
    "```python\nimport sys\n\ndef main():\n    data = sys.stdin.read().split()\n    n = int(data[0])\n"
    "    out = []\n    for i in range(n):\n        a, b = int(data[1 + 2 * i]), int(data[2 + 2 * i])\n"
    "        out.append(str(a + b))\n    print('\\n'.join(out))\n\nmain()\n```",
    "Sort the strings and compare the first and last one.\n\n```python\ndef longest_common_prefix(strs):\n"
    "    if not strs:\n        return ''\n    a, b = min(strs), max(strs)\n    i = 0\n"
    "    while i < min(len(a), len(b)) and a[i] == b[i]:\n        i += 1\n    return a[:i]\n```",
    "I am not sure; try a trie.",  # no code: reward 0 without a model call
]


def _items(n: int) -> list[tuple[str, str]]:
    # Vary lengths a little (as real rollouts do) so batches need padding, and make every item unique:
    # the Scorer scores identical (problem, code) pairs once, so repeated items would inflate batching.
    items = []
    for i in range(n):
        response = RESPONSES[i % 4].replace("```python\n", f"```python\n# rollout {i}\n", 1)
        items.append((PROBLEMS[i % 3] + " Note:" * (i % 5), response))
    return items


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _tiny_model(folder: Path) -> str:
    from codescaler.rm_checkpoint import InputFormat, RMMetadata, write_metadata
    from codescaler.testing import build_tiny_model

    path = build_tiny_model(folder / "tiny_rm", arch="qwen3", seed=0)
    write_metadata(path, RMMetadata(input_format=InputFormat.CHAT_TEMPLATE, max_length=512, backbone="tiny"))
    return str(path)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def _drive(url: str, items: list[tuple[str, str]], concurrency: int) -> tuple[float, list[float], int]:
    """Send one request per item with ``concurrency`` in flight; returns (wall s, latencies s, errors).

    The client is aiohttp: httpx's async pool costs ~10 ms of client CPU per request at 64 connections,
    which on a 2-core machine shared with the server made the client, not the server, the bottleneck."""
    import aiohttp

    latencies: list[float] = []
    errors = 0
    queue = list(reversed(items))
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=300)
    async with aiohttp.ClientSession(url, connector=connector, timeout=timeout) as client:
        async def worker() -> None:
            nonlocal errors
            while queue:
                prompt, response = queue.pop()
                start = time.perf_counter()
                try:
                    async with client.post("/score", json={"items": [{"prompt": prompt, "response": response}]}) as r:
                        await r.read()
                        status = r.status
                except aiohttp.ClientError as err:
                    print(f"transport error: {type(err).__name__}: {err}", file=sys.stderr)
                    errors += 1
                    continue
                latencies.append(time.perf_counter() - start)
                errors += status != 200
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - started
    return wall, latencies, errors


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --------------------------------------------------------------------------------------------------
# --hostile: other clients' throughput next to poisoned and stalling clients

_GOOD = RESPONSES[0]
_POISON = json.dumps({"items": [{"prompt": PROBLEMS[0], "response": _GOOD},
                                {"prompt": "two \ud800 sum", "response": _GOOD}]}).encode("ascii")
_N = 65_536
_STALLS = [json.dumps(body).encode("ascii") for body in (
    {"query": ["\n" * _N]},
    {"query": ["[INST] q" + "\n \n" * (_N // 3) + " [/INST] " + _GOOD]},
    {"query": ["P" + "\n" * _N + _GOOD], "prompts": ["P" + "\n" * _N]},
    {"query": ["User: q" + "\n" * _N]},
)]


async def _hostile_ratio(url: str, disturber: Any, rounds: int, phase_s: float, clients: int = 8) -> dict[str, float]:
    import aiohttp

    stats: dict[str, float] = {"clean_items": 0, "clean_s": 0, "disturbed_items": 0, "disturbed_s": 0,
                               "health_max_s": 0.0, "disturber_requests": 0, "client_interval_s": 0.1}

    async def normal(session: aiohttp.ClientSession, stop_at: float, tag: str, counter: list[int]) -> None:
        i = 0
        while time.perf_counter() < stop_at:
            items = [{"prompt": PROBLEMS[0], "response": _GOOD.replace("seen = {}", f"seen = {{}}  # {tag} {i} {k}")}
                     for k in range(2)]
            async with session.post("/score", json={"items": items}) as reply:
                await reply.read()
                if reply.status != 200:
                    raise RuntimeError(f"normal client got {reply.status}")
            counter[0] += 2
            i += 1

    async def health(session: aiohttp.ClientSession, stop_at: float) -> None:
        while time.perf_counter() < stop_at:
            started = time.perf_counter()
            async with session.get("/health") as reply:
                await reply.read()
            stats["health_max_s"] = max(stats["health_max_s"], time.perf_counter() - started)
            await asyncio.sleep(0.05)

    timeout = aiohttp.ClientTimeout(total=300)
    # The disturbers get their own connections: a connection the server drops must not hit a normal client.
    async with aiohttp.ClientSession(url, timeout=timeout, connector=aiohttp.TCPConnector(limit=0)) as session, \
            aiohttp.ClientSession(url, timeout=timeout, connector=aiohttp.TCPConnector(limit=0)) as other:
        await asyncio.gather(*(normal(session, time.perf_counter() + 1.0, f"w{c}", [0]) for c in range(4)))
        pair_ratios: list[float] = []
        clean_rate = 0.0
        for phase in range(2 * rounds):
            disturbed = phase % 2 == 1
            counter = [0]
            started = time.perf_counter()
            stop_at = started + phase_s
            tasks = [normal(session, stop_at, f"{phase}.{c}", counter) for c in range(clients)]
            if disturbed:
                tasks += [disturber(other, stop_at, stats), health(other, stop_at)]
            await asyncio.gather(*tasks)
            elapsed = time.perf_counter() - started
            key = "disturbed" if disturbed else "clean"
            stats[f"{key}_items"] += counter[0]
            stats[f"{key}_s"] += elapsed
            if not disturbed:
                stats["client_interval_s"] = elapsed * clients * 2 / max(1, counter[0])
                clean_rate = counter[0] / elapsed
            else:
                pair_ratios.append(counter[0] / elapsed / max(clean_rate, 1e-9))
    stats["ratio"] = (stats["disturbed_items"] / stats["disturbed_s"]) / (stats["clean_items"] / stats["clean_s"])
    stats["median_pair_ratio"] = statistics.median(pair_ratios)
    return stats


def _posting(body: bytes | None, path: str, expect: tuple[int, ...], paced: bool, count: int) -> Any:
    import aiohttp

    async def disturber(session: Any, stop_at: float, stats: dict[str, float]) -> None:
        async def one(c: int) -> None:
            i = 0
            while time.perf_counter() < stop_at:
                started = time.perf_counter()
                data = body if body is not None else json.dumps({"items": [
                    {"prompt": PROBLEMS[1], "response": RESPONSES[1].replace("main()", f"main()  # x{c} {i} {k}", 1)}
                    for k in range(2)]}).encode()
                try:
                    async with session.post(path, data=data, headers={"content-type": "application/json"}) as reply:
                        await reply.read()
                        if reply.status not in expect:
                            raise RuntimeError(f"disturber expected {expect}, got {reply.status}")
                except aiohttp.ClientError:  # the server before the fix reset some connections after its 500s
                    stats["disturber_resets"] = stats.get("disturber_resets", 0) + 1
                stats["disturber_requests"] += 1
                i += 1
                if paced:
                    await asyncio.sleep(max(0.0, stats["client_interval_s"] - (time.perf_counter() - started)))
        await asyncio.gather(*(one(c) for c in range(count)))
    return disturber


def _stalling(paced: bool) -> Any:
    async def disturber(session: Any, stop_at: float, stats: dict[str, float]) -> None:
        i = 0
        while time.perf_counter() < stop_at:
            started = time.perf_counter()
            async with session.post("/get_reward", data=_STALLS[i % len(_STALLS)],
                                    headers={"content-type": "application/json"}) as reply:
                await reply.read()
                if reply.status not in (200, 422):
                    raise RuntimeError(f"stalling client got {reply.status}")
            stats["disturber_requests"] += 1
            i += 1
            if paced:
                await asyncio.sleep(max(0.0, stats["client_interval_s"] - (time.perf_counter() - started)))
    return disturber


async def _nothing(session: Any, stop_at: float, stats: dict[str, float]) -> None:
    await asyncio.sleep(max(0.0, stop_at - time.perf_counter()))


HOSTILE_CASES = ("noise", "poison", "valid", "unpaced", "stall", "stall-paced")


def run_hostile(url: str, rounds: int, phase_s: float, only: Sequence[str] = HOSTILE_CASES) -> None:
    # A poisoned request is answered 422 now; the server before issue 15's fix answered 500 (both counted).
    cases = [("noise", "nothing (noise of the measurement)", _nothing),
             ("poison", "4 poisoned clients, paced like a normal one", _posting(_POISON, "/score", (422, 500), True, 4)),
             ("valid", "4 valid clients, paced like a normal one", _posting(None, "/score", (200,), True, 4)),
             ("unpaced", "4 poisoned clients, unpaced", _posting(_POISON, "/score", (422, 500), False, 4)),
             ("stall", "1 client of 64k-newline queries, unpaced", _stalling(False)),
             ("stall-paced", "1 client of 64k-newline queries, paced", _stalling(True))]
    cases = [case for case in cases if case[0] in only]
    print(f"{'disturber':<46}{'clean it/s':>11}{'disturbed':>11}{'ratio':>7}{'median':>8}{'its req':>9}"
          f"{'/health max':>13}")
    for _, name, disturber in cases:
        stats = asyncio.run(_hostile_ratio(url, disturber, rounds, phase_s))
        print(f"{name:<46}{stats['clean_items'] / stats['clean_s']:>11.1f}"
              f"{stats['disturbed_items'] / stats['disturbed_s']:>11.1f}{stats['ratio']:>7.2f}"
              f"{stats['median_pair_ratio']:>8.2f}"
              f"{stats['disturber_requests']:>9.0f}{1000 * stats['health_max_s']:>10.0f} ms", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="minilm", help="RM to serve: 'minilm' (default), 'tiny' or a path")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--requests", type=int, default=256, help="requests per concurrency level (c=1 uses a quarter)")
    parser.add_argument("--max-batch", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32, help="Scorer forward-pass size, server and in-process")
    parser.add_argument("--max-wait-ms", type=float, default=5.0)
    parser.add_argument("--hostile", action="store_true", help="measure others' throughput next to hostile clients")
    parser.add_argument("--rounds", type=int, default=3, help="--hostile: clean/disturbed phase pairs per disturber")
    parser.add_argument("--phase-s", type=float, default=3.0, help="--hostile: seconds per phase")
    parser.add_argument("--url", default=None, help="--hostile: use this running server instead of starting one")
    parser.add_argument("--cases", default=",".join(HOSTILE_CASES), help="--hostile: which disturbers (default: all)")
    args = parser.parse_args()
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    if args.hostile and args.url:
        run_hostile(args.url.rstrip("/"), args.rounds, args.phase_s, cases)
        return 0

    from codescaler.scorer import Scorer

    workdir = Path(tempfile.mkdtemp(prefix="bench_server_"))
    model = _tiny_model(workdir) if args.model == "tiny" else args.model
    n = max(8, args.requests)
    items = _items(n)
    port = _free_port()
    log = workdir / "server.log"
    cmd = [sys.executable, "-m", "codescaler", "serve", "--rm", model, "--port", str(port), "--device",
           args.device, "--max-batch", str(args.max_batch), "--batch-size", str(args.batch_size),
           "--max-wait-ms", str(args.max_wait_ms)]
    with open(log, "wb") as handle:
        proc = subprocess.Popen(cmd, stdout=handle, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(900):
            if proc.poll() is not None:
                print(log.read_text(), file=sys.stderr)
                return 1
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        info = httpx.get(f"{url}/info").json()
        if args.hostile:
            print(f"model {info['model']} ({info['dtype']}, {info['device']}); {os.cpu_count()} CPUs; "
                  f"{args.rounds} x {args.phase_s:g} s clean + disturbed phases per disturber")
            run_hostile(url, args.rounds, args.phase_s, cases)
            return 0
        print(f"model {info['model']} ({info['dtype']}, {info['device']}); {os.cpu_count()} CPUs; "
              f"{n} one-item requests per level; 1 in 4 responses has no code")
        asyncio.run(_drive(url, items[:8], 4))  # warm-up

        rows = []
        for concurrency in (1, 16, 64):
            count = n // 4 if concurrency == 1 else n
            before = httpx.get(f"{url}/info").json()
            server_cpu, client_cpu = _cpu_seconds(proc.pid), time.process_time()
            wall, lat, errors = asyncio.run(_drive(url, items[:count], concurrency))
            server_cpu, client_cpu = _cpu_seconds(proc.pid) - server_cpu, time.process_time() - client_cpu
            after = httpx.get(f"{url}/info").json()
            batches = after["batches"] - before["batches"]
            print(f"c={concurrency}: {count} requests in {wall:.1f} s, {batches} model batches "
                  f"(mean {(after['items_scored'] - before['items_scored']) / max(1, batches):.1f} items); "
                  f"CPU ms per request: server {1000 * server_cpu / count:.1f}, client {1000 * client_cpu / count:.1f}")
            rows.append((f"server c={concurrency}", count / wall, _percentile(lat, 0.5) * 1000,
                         _percentile(lat, 0.99) * 1000, errors))
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()

    # In-process, same model and settings, with the server stopped (no CPU contention).
    scorer = Scorer.load(model, device=args.device, batch_size=args.batch_size)
    prompts, responses = [p for p, _ in items], [r for _, r in items]
    scorer.score(prompts[:8], responses[:8])  # warm-up
    count = n // 4
    start = time.perf_counter()
    for p, r in zip(prompts[:count], responses[:count], strict=True):
        scorer.score([p], [r])
    rows.append(("in-process 1 by 1", count / (time.perf_counter() - start), float("nan"), float("nan"), 0))
    start = time.perf_counter()
    scorer.score(prompts, responses)
    rows.append((f"in-process batch={args.batch_size}", n / (time.perf_counter() - start), float("nan"),
                 float("nan"), 0))

    print(f"{'mode':<24}{'items/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'errors':>8}")
    for name, rate, p50, p99, errors in rows:
        print(f"{name:<24}{rate:>10.1f}{p50:>10.1f}{p99:>10.1f}{errors:>8}")
    base = rows[0][1]
    print(f"batched server speed-up over one request at a time: c=16 {rows[1][1] / base:.1f}x, "
          f"c=64 {rows[2][1] / base:.1f}x; in-process batch vs 1 by 1 {rows[4][1] / rows[3][1]:.1f}x; "
          f"server c=64 vs in-process batch {rows[2][1] / rows[4][1]:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
