"""``codescaler bon``: best-of-N selection accuracy and latency per strategy (layer L4).

Flags -> ``bon.BonSettings`` -> ``bon.run_bon``; the library's docstring lists the cached signal files
in ``--output-dir`` and docs/best_of_n.md the strategies and the report.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from codescaler.cli import options


def register(subparsers: Any) -> None:
    from codescaler.rerank import Strategy

    p = subparsers.add_parser(
        "bon", help="best-of-N selection: accuracy and latency of RM, tests, hybrid ... strategies",
        description="Draw N candidates per problem with fixed seeds, select one by each strategy, and "
        "report pass@1 of the selection (hidden tests) with its model and execution cost.")
    p.add_argument("--problems", required=True, type=Path, help="problems JSONL (with visible_tests for tests/hybrid)")
    p.add_argument("--candidates", required=True, type=Path, help="candidates JSONL (response and/or code)")
    options.add_rm(p, purpose=" for rm/hybrid/cascade/tests+rm")
    p.add_argument("--verdicts", type=Path, default=None,
                   help="hidden-test verdicts JSONL (ground truth); computed with the executor when absent")
    p.add_argument("--n", type=int, nargs="+", default=[4, 8, 16, 32], help="N values (default: 4 8 16 32)")
    p.add_argument("--strategies", nargs="+", choices=[s.value for s in Strategy],
                   default=["random", "oracle", "rm", "tests", "hybrid", "cascade", "tests+rm"],
                   help="selection strategies to compare (default: %(default)s)")
    p.add_argument("--seeds", type=int, default=20, help="draws per problem (default: 20)")
    p.add_argument("--base-seed", type=int, default=0, help="seed of the first draw (default: %(default)s)")
    p.add_argument("--top-k", type=int, default=3, help="hybrid: candidates executed, best by RM (default: 3)")
    p.add_argument("--cascade-max", type=int, default=None, metavar="K",
                   help="cascade: execute at most K candidates in RM order (default: up to N)")
    p.add_argument("--generated-tests", type=Path, default=None,
                   help="generated tests (CodeT test_case JSONL) for the generated-tests strategy")
    p.add_argument("--max-generated-tests", type=int, default=0,
                   help="use at most this many distinct generated tests per problem (0: all)")
    p.add_argument("--test-generation-seconds", type=float, default=0.0, metavar="S",
                   help="generated-tests: seconds it took to generate one problem's tests, if known (model cost)")
    p.add_argument("--scores", type=Path, default=None,
                   help="RM scores JSONL to use as given (task_id, candidate_id, reward[, seconds])")
    p.add_argument("--output-dir", type=Path, default=Path("runs/bon"),
                   help="folder for the signal caches and the report (default: %(default)s)")
    p.add_argument("--workers", type=int, default=None, help="parallel sandbox runs (default: CPU count)")
    options.add_scorer_options(p, dtype_default=None, full=False)
    p.add_argument("--logprob-model", default="qwen2.5-coder-0.5b-instruct",
                   help="causal LM of the logprob strategy (mean token log-prob of the code, no training)")
    p.set_defaults(func=run)


def settings_from(args: argparse.Namespace) -> Any:
    from codescaler.bon import BonSettings
    from codescaler.records import ExtractMode
    from codescaler.rerank import Strategy

    return BonSettings(
        problems=args.problems, candidates=args.candidates, output_dir=args.output_dir, model=args.rm,
        verdicts=args.verdicts, scores=args.scores, n_values=tuple(args.n),
        strategies=tuple(dict.fromkeys(Strategy(s) for s in args.strategies)), seeds=args.seeds,
        base_seed=args.base_seed, top_k=args.top_k, cascade_max=args.cascade_max,
        generated_tests=args.generated_tests, max_generated_tests=args.max_generated_tests,
        test_generation_seconds=args.test_generation_seconds, workers=args.workers, device=args.device,
        dtype=None if args.dtype in (None, "auto") else args.dtype, batch_size=args.batch_size,
        extract_mode=ExtractMode(args.extract_mode) if args.extract_mode else None,
        logprob_model=args.logprob_model)


def _command_line(args: argparse.Namespace) -> str:
    """The flags this run resolved to, as a command (args, not sys.argv: main() may be called from code)."""
    parts = ["codescaler", "bon"]
    for key, value in vars(args).items():
        if key in ("func", "verb", "verbose") or value is None or value is False:
            continue
        flag = "--" + key.replace("_", "-")
        parts += [flag] + ([str(v) for v in value] if isinstance(value, list) else [str(value)])
    return " ".join(parts)


def run(args: argparse.Namespace) -> int:
    from codescaler.bon import run_bon

    done = run_bon(settings_from(args), command=_command_line(args))
    last = max(done.settings.n_values)
    for r in done.results:
        if r.n == last:
            print(f"{r.strategy.value:>16} N={r.n:<3} pass@1 {100 * r.pass_at_1:5.1f} ± {100 * r.std:.1f}  "
                  f"({r.n_problems} problems, {r.seconds_per_problem:.3f} s/problem)")
    print(f"wrote {', '.join(str(p) for p in done.paths.values())}")
    return 0
