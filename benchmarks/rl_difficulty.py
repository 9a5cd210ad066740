"""Training problems a policy sometimes solves: the difficulty filter of a GRPO run with test rewards.

Under a 0/1 test reward a prompt group whose rollouts all pass or all fail has zero advantage, so it
teaches nothing (the 12-step CPU run of docs/rl.md: 71% of the groups, 6 of 12 steps with a zero
gradient). This script samples ``--n`` rollouts of the policy per training problem, with the GRPO
presets' sampling (temperature 0.6, top-p 0.95, the ``cpu`` preset's 192 tokens, the same chat prompt),
runs them against the hidden tests with strict extraction (what the ``tests`` reward does), and keeps
the problems with ``--min-passed`` to ``--max-passed`` passing rollouts: the ones where GRPO's groups
have a signal. Stages reuse the CLIs (``codescaler sample`` and ``codescaler execute``, each resumable:
rerun the same command after a kill).

    python benchmarks/rl_difficulty.py --limit 64 --n 4 --out runs/rl-difficulty
    # -> runs/rl-difficulty/problems.jsonl (pass it as --problems) and selection.json (ids, pass counts)
    python benchmarks/rl_difficulty.py --from-selection docs/rl/<run>/selection.json --out runs/x
    # rebuilds problems.jsonl from a committed selection's ids without sampling

selection.json holds task ids and pass counts only (the problems are MBPP's: rebuilt from the data folder).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))


def _cli(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "codescaler", *args], check=True)


def pass_counts(verdicts: Path) -> Counter[str]:
    """Passing verdicts per task id (every task id that has a verdict is a key)."""
    from codescaler.data import read_verdicts
    from codescaler.records import Status

    counts: Counter[str] = Counter()
    for v in read_verdicts(verdicts):
        counts[v.task_id] += v.status == Status.PASSED
    return counts


def select(counts: Counter[str], order: list[str], lo: int, hi: int) -> list[str]:
    """Task ids (in ``order``) with ``lo`` to ``hi`` passing rollouts."""
    return [t for t in order if t in counts and lo <= counts[t] <= hi]


def main(argv: list[str] | None = None) -> int:
    from codescaler.data import write_problems
    from codescaler.data.artifacts import atomic_write_json
    from codescaler.rl_problems import load_problem_set

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--problems", default="mbpp-train", help="training problems (a codescaler rl --problems spec)")
    ap.add_argument("--limit", type=int, default=64, help="first N training problems (default %(default)s)")
    ap.add_argument("--policy", default="qwen2.5-coder-0.5b-instruct")
    ap.add_argument("--n", type=int, default=4, help="rollouts per problem (default %(default)s)")
    ap.add_argument("--max-new-tokens", type=int, default=192)
    ap.add_argument("--temperature", type=float, default=0.6)
    ap.add_argument("--top-p", type=float, default=0.95)
    ap.add_argument("--min-passed", type=int, default=1)
    ap.add_argument("--max-passed", type=int, default=None, help="default: n - 1")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--from-selection", type=Path, default=None,
                    help="a selection.json: rebuild problems.jsonl from its ids, no sampling")
    a = ap.parse_args(argv)
    a.out.mkdir(parents=True, exist_ok=True)
    problems = load_problem_set(a.problems, a.data_dir, for_training=True)
    if a.from_selection is not None:
        ids = json.loads(a.from_selection.read_text(encoding="utf-8"))["selected"]
        by_id = {p.task_id: p for p in problems}
        missing = [t for t in ids if t not in by_id]
        if missing:
            raise SystemExit(f"rl_difficulty: {len(missing)} selected ids are not in {a.problems!r} "
                             f"(e.g. {missing[0]}): pass the --problems the selection was made from")
        write_problems(a.out / "problems.jsonl", [by_id[t] for t in ids])
        print(f"{len(ids)} problems -> {a.out / 'problems.jsonl'}")
        return 0
    problems = problems[:a.limit]
    hi = a.n - 1 if a.max_passed is None else a.max_passed
    pool = a.out / "pool_problems.jsonl"
    write_problems(pool, problems)
    times = {}
    started = time.monotonic()
    _cli("sample", "--problems", str(pool), "--output", str(a.out / "candidates.jsonl"), "--policy", a.policy,
         "--n", str(a.n), "--temperature", str(a.temperature), "--top-p", str(a.top_p),
         "--max-new-tokens", str(a.max_new_tokens), "--batch-size", "8", "--seed", str(a.seed), "--device", "cpu")
    times["sample_s"] = round(time.monotonic() - started, 1)
    started = time.monotonic()
    _cli("execute", "--problems", str(pool), "--candidates", str(a.out / "candidates.jsonl"),
         "--output", str(a.out / "verdicts.jsonl"), "--extract-mode", "strict")
    times["execute_s"] = round(time.monotonic() - started, 1)
    counts = pass_counts(a.out / "verdicts.jsonl")
    order = [p.task_id for p in problems]
    chosen = select(counts, order, a.min_passed, hi)
    by_id = {p.task_id: p for p in problems}
    write_problems(a.out / "problems.jsonl", [by_id[t] for t in chosen])
    histogram = Counter(counts[t] for t in order)
    atomic_write_json(a.out / "selection.json", {
        "problems": a.problems, "limit": a.limit, "policy": a.policy, "n": a.n,
        "sampling": {"temperature": a.temperature, "top_p": a.top_p, "max_new_tokens": a.max_new_tokens,
                     "seed": a.seed, "extract_mode": "strict"},
        "keep_passed": [a.min_passed, hi], "selected": chosen,
        "passed_histogram": {str(k): histogram[k] for k in sorted(histogram)},
        "pass_counts": {t: counts[t] for t in order}, "seconds": times,
        "command": "python benchmarks/rl_difficulty.py " + " ".join(argv if argv is not None else sys.argv[1:])})
    print(f"{len(chosen)} of {len(order)} problems with {a.min_passed}-{hi} of {a.n} rollouts passing "
          f"(histogram {dict(sorted(histogram.items()))}) -> {a.out / 'problems.jsonl'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
