"""Do the datasets' own reference solutions pass our converted tests, and do known-buggy ones fail?

For each dataset, every problem's ``reference`` is executed in the sandbox against its hidden tests
(expected: all pass). For HumanEvalPack Python the dataset's canonical and buggy solutions are executed
too (expected: every canonical passes, every buggy one fails). Prints counts and lists each exception
with its verdict detail; writes OUTPUT (JSON).

    python benchmarks/reference_check.py [--datasets humaneval humaneval-plus mbpp-plus leetcode-train ...]
        [--output runs/reference_check.json] [--workers N]
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from pathlib import Path

DEFAULT = ["humaneval", "humaneval-plus", "mbpp-plus", "mbpp", "leetcode-train", "leetcode-test",
           "leetcode-test-v0.3.1", "humanevalpack-python"]


def main() -> int:
    from codescaler.data import load_dataset_candidates, load_dataset_problems
    from codescaler.executor import ExecuteOptions, execute
    from codescaler.records import Candidate

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=DEFAULT)
    parser.add_argument("--output", type=Path, default=Path("runs/reference_check.json"))
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args()
    options = ExecuteOptions(workers=args.workers)
    report: dict[str, dict] = {}
    for name in args.datasets:
        start = time.perf_counter()
        problems = {p.task_id: p for p in load_dataset_problems(name, args.data_dir)}
        jobs = [(p, Candidate(p.task_id, "reference", code=p.reference))
                for p in problems.values() if p.reference]
        expect = {(p.task_id, "reference"): True for p in problems.values() if p.reference}
        if name.startswith("humanevalpack-"):
            cands, labels = load_dataset_candidates(name, args.data_dir)
            truth = {(v.task_id, v.candidate_id): v.status.value == "passed" for v in labels or []}
            jobs += [(problems[c.task_id], c) for c in cands]
            expect.update(truth)
        statuses: Counter[str] = Counter()
        wrong = []
        for verdict in execute(jobs, options):
            key = (verdict.task_id, verdict.candidate_id)
            kind = "pass-expected" if expect[key] else "fail-expected"
            ok = (verdict.status.value == "passed") == expect[key]
            statuses[f"{kind}:{'ok' if ok else 'WRONG'}"] += 1
            if not ok:
                wrong.append({"task_id": key[0], "candidate_id": key[1], "status": verdict.status.value,
                              "detail": verdict.detail[:200]})
        report[name] = {"problems": len(problems), "with_reference": sum(1 for p in problems.values() if p.reference),
                        "counts": dict(statuses), "exceptions": wrong,
                        "seconds": round(time.perf_counter() - start, 1)}
        print(f"{name:24s} problems {len(problems):5d}  " + "  ".join(f"{k} {v}" for k, v in sorted(statuses.items())))
        for row in wrong:
            print(f"    {row['task_id']} {row['candidate_id']}: {row['status']} {row['detail']}")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"report: {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
