"""Best-of-N on the Codex (code-davinci-002) HumanEval Python samples: random, oracle, visible tests.

Builds canonical inputs from the public data (161 problems x 200 samples, dataset labels as ground
truth, visible tests = the docstring examples) under OUT, runs ``codescaler bon`` on them, and prints
the figures to compare with ../shared/BASELINES.md. Executing the 32,200 samples on their visible tests
takes 10+ minutes on 2 cores the first time (then cached in OUT and the verdict cache).

    nice python benchmarks/bench_bon.py [--out runs/bon_codex] [--data-dir ../shared/data] [extra bon flags]

Also prints `tests` over all 161 problems with random selection where a problem has no examples
(per seed, combined), since a baseline may count those problems that way.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from dataclasses import replace
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    from codescaler import data
    from codescaler.cli import main as cli_main
    from codescaler.data.humaneval import docstring_visible_tests, load_codex_humaneval
    from codescaler.data.locate import locate_data_dir
    from codescaler.records import TestSuite

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/bon_codex"))
    parser.add_argument("--data-dir", default=None)
    args, extra = parser.parse_known_args(argv)
    problems, candidates, verdicts = load_codex_humaneval(locate_data_dir(args.data_dir), "python")
    problems = [replace(p, visible_tests=TestSuite(functional=v) if (v := docstring_visible_tests(
        p.prompt, p.entry_point or "")) else None) for p in problems]
    args.out.mkdir(parents=True, exist_ok=True)
    inputs = args.out / "inputs"
    if not (inputs / "verdicts.jsonl").is_file():
        inputs.mkdir(exist_ok=True)
        data.write_problems(inputs / "problems.jsonl", problems)
        data.write_candidates(inputs / "candidates.jsonl", candidates)
        data.write_verdicts(inputs / "verdicts.jsonl", verdicts)
    flags = ["bon", "--problems", str(inputs / "problems.jsonl"), "--candidates", str(inputs / "candidates.jsonl"),
             "--verdicts", str(inputs / "verdicts.jsonl"), "--output-dir", str(args.out / "report"),
             "--strategies", "random", "oracle", "tests", "--n", "4", "8", "16", "32", "64", "--seeds", "20", *extra]
    code = cli_main(flags)
    if code:
        return code
    _with_random_fallback(args.out / "report", problems)
    return 0


def _with_random_fallback(report_dir: Path, problems: list) -> None:
    """tests where a problem has examples, random where it has none; all 161 problems, per seed."""
    from codescaler.cli.bon_cmd import _load_rows
    from codescaler.rerank import CandidateSignals, Settings, Strategy, evaluate, pools_from

    doc = json.loads((report_dir / "report.json").read_text(encoding="utf-8"))
    visible = _load_rows(report_dir / "visible.jsonl")
    verdicts = {(v.task_id, v.candidate_id): v for v in _truth(report_dir, doc)}
    with_tests = {p.task_id for p in problems if p.visible_tests is not None}
    rows = []
    for (task_id, cid), v in verdicts.items():
        seen = visible.get((task_id, cid))
        passed = (seen["passed"] or 0) if seen else None
        rows.append((task_id, CandidateSignals(cid, v.status.value == "passed", visible_passed=passed)))
    pools = pools_from(rows, visible=with_tests)
    ns = tuple(sorted({r["n"] for r in doc["results"]}))
    tested = evaluate([p for p in pools if p.task_id in with_tests], Settings(ns, (Strategy.TESTS,), seeds=20))
    rest = evaluate([p for p in pools if p.task_id not in with_tests], Settings(ns, (Strategy.RANDOM,), seeds=20))
    print(f"tests (+ random on the {rest[0].n_problems} problems without examples), all {len(pools)} problems:")
    for t, r in zip(tested, rest, strict=True):
        per_seed = [(a * t.n_problems + b * r.n_problems) / (t.n_problems + r.n_problems)
                    for a, b in zip(t.per_seed, r.per_seed, strict=True)]
        print(f"  N={t.n:<3} {100 * statistics.fmean(per_seed):.1f} ± {100 * statistics.stdev(per_seed):.1f}")


def _truth(report_dir: Path, doc: dict) -> list:
    from codescaler import data

    return data.read_verdicts(Path(doc["meta"]["problems"]).parent / "verdicts.jsonl")


if __name__ == "__main__":
    sys.exit(main())
