"""``codescaler eval {pairs,hep,rm-bench}``: pairwise reward-model accuracy, JSON out (layer L4).

``pairs``: a pairs JSONL (prompt, chosen, rejected responses[, language]). ``hep``: HumanEvalPack
canonical vs buggy per language (RewardBench hep-*). ``rm-bench``: RM-Bench code (hard/normal/easy).
``--baselines`` also measures, the same way, the untrained backbone and the mean code log-prob under
Qwen2.5-Coder-0.5B-Instruct. Definitions: ``codescaler.bench.pairwise`` and docs/training.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from codescaler.cli import options
from codescaler.errors import InputError

logger = logging.getLogger(__name__)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("eval", help="pairwise accuracy benchmarks for reward models",
                                   description="Measure how often a reward model prefers the better program.")
    bench = parser.add_subparsers(dest="benchmark", metavar="BENCHMARK", required=True)
    pairs = bench.add_parser("pairs", help="accuracy on a pairs JSONL (prompt, chosen, rejected)")
    pairs.add_argument("--pairs", required=True, type=Path, help="pairs JSONL (prompt, chosen, rejected[, language])")
    hep = bench.add_parser("hep", help="HumanEvalPack canonical vs buggy (RewardBench hep-*)")
    hep.add_argument("--languages", default="python", help="comma list of python,js,java,go,cpp,rust")
    rmb = bench.add_parser("rm-bench", help="RM-Bench code domain: hard/normal/easy accuracy")
    for sub, default_input in ((pairs, "code"), (hep, "code"), (rmb, "response")):
        options.add_rm(sub, required=True)
        sub.add_argument("--output", type=Path, default=None, help="JSON file to write (default: print)")
        sub.add_argument("--baselines", action="store_true",
                         help="also score length-only judges (shorter / longer code wins), the untrained backbone "
                         "and Qwen2.5-Coder-0.5B code log-prob, the same way")
        sub.add_argument("--input", choices=["code", "response"], default=default_input,
                         help="what the RM sees: extracted code or the whole response (default: %(default)s)")
        options.add_limit(sub, what="items (quick checks)")
        options.add_scorer_options(sub)
        options.add_data_dir(sub)
        sub.add_argument("--logprob-model", default="qwen2.5-coder-0.5b-instruct",
                         help="causal LM for the log-prob baseline (default: %(default)s)")
        sub.set_defaults(func=run)


def data_dir(flag: Path | None) -> Path:
    """--data-dir, else $CODESCALER_DATA, else ../shared/data next to the repository."""
    if flag is not None:
        return flag
    env = os.environ.get("CODESCALER_DATA")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[3].parent / "shared" / "data"


def _load(args: argparse.Namespace) -> tuple[str, Any]:
    from codescaler.bench import pairwise

    if args.benchmark == "pairs":
        return "pairs", pairwise.read_eval_pairs(args.pairs)
    if args.benchmark == "hep":
        languages = [x.strip() for x in args.languages.split(",") if x.strip()]
        return "pairs", pairwise.load_hep(data_dir(args.data_dir), languages)
    return "rm-bench", pairwise.load_rm_bench(data_dir(args.data_dir) / "RM-Bench/data/code_filtered.json")


def run(args: argparse.Namespace) -> int:
    from codescaler.bench import baselines, pairwise
    from codescaler.records import ExtractMode
    from codescaler.scorer import Scorer, resolve_checkpoint

    if args.limit is not None and args.limit < 1:
        raise InputError(f"--limit must be >= 1, got {args.limit}", field="--limit")
    kind, items = _load(args)
    items = items[: args.limit] if args.limit else items
    scorer = Scorer.load(args.rm, **options.scorer_kwargs(args))
    extract_mode = ExtractMode(args.extract_mode) if args.extract_mode else scorer.extract_mode
    evaluate = pairwise.evaluate_pairs if kind == "pairs" else pairwise.evaluate_rm_bench

    def measure(score_fn: Any) -> dict[str, Any]:
        from tqdm import tqdm

        from codescaler.scoring import in_chunks

        started = time.monotonic()
        with tqdm(desc="eval", unit="program", disable=None, delay=2) as bar:
            result = evaluate(items, in_chunks(score_fn, bar.update), input_mode=args.input,
                              extract_mode=extract_mode)
        result["seconds"] = round(time.monotonic() - started, 2)
        return result

    report: dict[str, Any] = {"benchmark": args.benchmark, "model": args.rm, "input": args.input,
                              "extract_mode": extract_mode.value, "scorer": scorer.info, "rm": measure(scorer.score_codes)}
    if args.baselines:
        report["baselines"] = {}
        if args.output is not None:
            _emit(args.output, report)  # the RM's result is kept even if a slow baseline is interrupted
        # Length-only judges: a gain that one of them also gets is a length artifact, not judgement.
        report["baselines"]["shorter_code_wins"] = measure(lambda _p, codes: [-float(len(c)) for c in codes])
        report["baselines"]["longer_code_wins"] = measure(lambda _p, codes: [float(len(c)) for c in codes])
        try:
            untrained = baselines.untrained_backbone(resolve_checkpoint(args.rm), device=args.device,
                                                     batch_size=args.batch_size)
            report["baselines"]["untrained_backbone"] = measure(untrained.score_codes)
        except InputError as err:
            logger.warning("untrained-backbone baseline skipped: %s", err)
            report["baselines"]["untrained_backbone"] = {"skipped": str(err)}
        if args.output is not None:
            _emit(args.output, report)
        del scorer  # free memory before loading the causal LM
        logprob = baselines.LogProbScorer(args.logprob_model, device=args.device)
        report["baselines"][f"logprob:{args.logprob_model}"] = measure(logprob.score_codes)
    _emit(args.output, report)
    if args.output is not None:
        print(f"wrote {args.output}: accuracy {_headline(report['rm'])}")
    return 0


def _emit(path: Path | None, report: dict[str, Any]) -> None:
    """Write the report (atomically) to ``path``, or print it when there is no path."""
    text = json.dumps(report, indent=2, sort_keys=True)
    if path is None:
        print(text)
    else:
        from codescaler.data import atomic_write_text

        atomic_write_text(path, text + "\n")


def _headline(result: dict[str, Any]) -> str:
    value = result.get("accuracy", result.get("average"))
    return f"{value:.3f} (n={result.get('n')})" if isinstance(value, float) else "n/a"
