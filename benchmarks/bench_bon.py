"""Best-of-N on the Codex (code-davinci-002) HumanEval Python samples: random, oracle, visible tests.

Builds canonical inputs from the public data (161 problems x 200 samples, dataset labels as ground
truth, visible tests = the docstring examples) under OUT, runs best-of-N (``codescaler.bon``) on them,
and prints the figures to compare with ../shared/BASELINES.md. Executing the 32,200 samples on their
visible tests takes 10+ minutes on 2 cores the first time (then cached in OUT and the verdict cache).

    nice python benchmarks/bench_bon.py [--out runs/bon_codex] [--data-dir ../shared/data] [--workers 2]

Also prints `tests` over all 161 problems with random selection where a problem has no examples
(per seed, combined), since a baseline may count those problems that way.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any


def main(argv: list[str] | None = None) -> int:
    from codescaler import data
    from codescaler.bon import BonSettings, run_bon
    from codescaler.data.humaneval import docstring_visible_tests, load_codex_humaneval
    from codescaler.data.locate import locate_data_dir
    from codescaler.records import TestSuite
    from codescaler.rerank import Strategy

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/bon_codex"))
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--workers", type=int, default=None, help="parallel sandbox runs (default: CPU count)")
    parser.add_argument("--n", type=int, nargs="+", default=[4, 8, 16, 32, 64])
    parser.add_argument("--seeds", type=int, default=20)
    args = parser.parse_args(argv)
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
    settings = BonSettings(problems=inputs / "problems.jsonl", candidates=inputs / "candidates.jsonl",
                           verdicts=inputs / "verdicts.jsonl", output_dir=args.out / "report",
                           strategies=(Strategy.RANDOM, Strategy.ORACLE, Strategy.TESTS), n_values=tuple(args.n),
                           seeds=args.seeds, workers=args.workers)
    done = run_bon(settings, command="benchmarks/bench_bon.py " + " ".join(argv if argv is not None else sys.argv[1:]))
    for r in done.results:
        print(f"{r.strategy.value:>8} N={r.n:<3} pass@1 {100 * r.pass_at_1:5.1f} ± {100 * r.std:.1f}  "
              f"({r.n_problems} problems)")
    _with_random_fallback(done)
    return 0


def _with_random_fallback(done: Any) -> None:
    """tests where a problem has examples, random where it has none; all problems, per seed."""
    from codescaler.rerank import Settings, Strategy, evaluate

    with_tests = {p.task_id for p in done.pools if p.has_visible_tests}
    ns = tuple(sorted(set(done.settings.n_values)))
    seeds = done.settings.seeds
    tested = evaluate([p for p in done.pools if p.task_id in with_tests], Settings(ns, (Strategy.TESTS,), seeds=seeds))
    rest = evaluate([p for p in done.pools if p.task_id not in with_tests], Settings(ns, (Strategy.RANDOM,), seeds=seeds))
    print(f"tests (+ random on the {rest[0].n_problems} problems without examples), all {len(done.pools)} problems:")
    for t, r in zip(tested, rest, strict=True):
        per_seed = [(a * t.n_problems + b * r.n_problems) / (t.n_problems + r.n_problems)
                    for a, b in zip(t.per_seed, r.per_seed, strict=True)]
        print(f"  N={t.n:<3} {100 * statistics.fmean(per_seed):.1f} ± {100 * statistics.stdev(per_seed):.1f}")


if __name__ == "__main__":
    sys.exit(main())
