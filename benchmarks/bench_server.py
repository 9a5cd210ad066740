"""Load benchmark of `codescaler serve`: HTTP throughput and latency vs in-process Scorer throughput.

Starts a real server subprocess on 127.0.0.1, drives it with a real aiohttp client at concurrency 1, 16 and
64 (one item per request, as an RL reward worker sends them; bounded request counts), and scores the same
items in this process with the same model, one at a time and in batches — all in one run, so the ratios
are measured side by side on the same machine state.

    python benchmarks/bench_server.py                       # MiniLM-based RM (random head), CPU
    python benchmarks/bench_server.py --model path/to/rm --device cuda --requests 512

    python benchmarks/bench_server.py --model tiny          # a 2-layer Qwen3-architecture RM from a config

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
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

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
    from codescaler.models import build_tiny_model
    from codescaler.rm_checkpoint import InputFormat, RMMetadata, write_metadata

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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="minilm", help="RM to serve: 'minilm' (default), 'tiny' or a path")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--requests", type=int, default=256, help="requests per concurrency level (c=1 uses a quarter)")
    parser.add_argument("--max-batch", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32, help="Scorer forward-pass size, server and in-process")
    parser.add_argument("--max-wait-ms", type=float, default=5.0)
    args = parser.parse_args()

    from codescaler.scorer import Scorer

    workdir = Path(tempfile.mkdtemp(prefix="bench_server_"))
    model = _tiny_model(workdir) if args.model == "tiny" else args.model
    n = max(8, args.requests)
    items = _items(n)
    port = _free_port()
    log = workdir / "server.log"
    cmd = [sys.executable, "-m", "codescaler", "serve", "--model", model, "--port", str(port), "--device",
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
