"""Held-out pairwise accuracy of reward models next to the no-training baselines, on real public data.

    python benchmarks/rm_heldout.py --scorers rm:default logprob untrained:default \
        [--sets codex hep-python rm-bench] [--output-dir runs/rm-heldout] [--limit N] [--extract-mode lenient]

Sets (none is seen by any training step; all are HumanEval-derived or RM-Bench, i.e. evaluation only):
- ``codex``: Codex HumanEval Python samples, a passing vs a failing real sample of the same problem, at
  most 3 pairs per problem, rejected programs with valid code only (built once with `codescaler data
  codex-humaneval-python` + `codescaler pairs --max-pairs-per-problem 3 --exclude-invalid-rejected
  --seed 0`, labels from the dataset);
- ``hep-python``: HumanEvalPack Python canonical vs buggy (RewardBench hep-python);
- ``rm-bench``: RM-Bench code (easy / normal / hard, official accuracy matrix).

Scorers: ``rm:CHECKPOINT`` (``rm:default`` = the shipped RM), ``untrained:CHECKPOINT`` (the checkpoint's
backbone with a fresh seeded head, same tokenizer and input format), ``logprob`` (mean token log-prob of
the code under Qwen2.5-Coder-0.5B-Instruct). One JSON per (scorer, set) is written to the output folder
and reused on a rerun (resumable); the table is printed as Markdown and saved as ``table.md``.
"""

from __future__ import annotations

import argparse
import functools
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SETS = ("codex", "hep-python", "rm-bench")


def codex_pairs(work: Path) -> Path:
    pairs = work / "codex.pairs.jsonl"
    if pairs.is_file():
        return pairs
    cli = [sys.executable, "-m", "codescaler"]
    data = work / "codex-data"
    if not (data / "labels.jsonl").is_file():
        subprocess.run([*cli, "data", "codex-humaneval-python", "--output-dir", str(data)], check=True)
    subprocess.run([*cli, "pairs", "--problems", str(data / "problems.jsonl"), "--candidates",
                    str(data / "candidates.jsonl"), "--verdicts", str(data / "labels.jsonl"), "--output",
                    str(pairs), "--max-pairs-per-problem", "3", "--exclude-invalid-rejected", "--seed", "0"],
                   check=True)
    return pairs


def load_set(name: str, work: Path) -> tuple[str, Any]:
    from codescaler.bench import pairwise
    from codescaler.data import locate_data_dir

    if name == "codex":
        return "pairs", pairwise.read_eval_pairs(codex_pairs(work))
    if name == "hep-python":
        return "pairs", pairwise.load_hep(locate_data_dir(), ["python"])
    return "rm-bench", pairwise.load_rm_bench(locate_data_dir() / "RM-Bench/data/code_filtered.json")


def make_scorer(spec: str) -> Any:
    from codescaler.bench import baselines
    from codescaler.scorer import Scorer, resolve_checkpoint

    kind, _, arg = spec.partition(":")
    if kind == "rm":
        return Scorer.load(arg)
    if kind == "untrained":
        return baselines.untrained_backbone(resolve_checkpoint(arg))
    if kind == "logprob":
        return baselines.LogProbScorer(arg or baselines.LOGPROB_MODEL)
    raise SystemExit(f"unknown scorer {spec!r}: use rm:PATH, untrained:PATH or logprob[:MODEL]")


def headline(result: dict[str, Any]) -> str:
    if "accuracy" in result:
        return f"{100 * result['accuracy']:.1f}%"
    return " / ".join(f"{100 * result[k]:.1f}" for k in ("easy", "normal", "hard", "average"))


def evaluate_cached(path: Path, kind: str, items: list[Any], scorer: Any, *, input_mode: str,
                    extract_mode: Any, meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """The result of scoring ``items`` (a pair set or RM-Bench), read from ``path`` when a run already
    wrote it, else computed and written atomically with ``meta`` and the seconds it took.

    ``scorer`` is a callable returning the scorer, so that nothing is loaded when every result is cached.
    """
    from codescaler.bench import pairwise
    from codescaler.data.artifacts import atomic_write_json

    if path.is_file():
        return json.loads(path.read_text(encoding="utf-8"))
    evaluate = pairwise.evaluate_pairs if kind == "pairs" else pairwise.evaluate_rm_bench
    started = time.monotonic()
    result = evaluate(items, scorer().score_codes, input_mode=input_mode, extract_mode=extract_mode)
    result["seconds"] = round(time.monotonic() - started, 1)
    result.update(meta or {})
    atomic_write_json(path, result, sort_keys=True)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scorers", nargs="+", default=["rm:default", "untrained:default", "logprob"])
    parser.add_argument("--sets", nargs="+", choices=SETS, default=list(SETS))
    parser.add_argument("--output-dir", type=Path, default=ROOT / "runs" / "rm-heldout")
    parser.add_argument("--limit", type=int, default=None, help="first N items per set (quick checks)")
    parser.add_argument("--rm-bench-languages", nargs="+", default=None, metavar="LANG",
                        help="score only these RM-Bench languages (e.g. python: 27 of its 228 prompts)")
    parser.add_argument("--extract-mode", choices=["none", "strict", "lenient"], default="none",
                        help="RM-Bench: none = each raw response is the assistant turn (default); strict or "
                        "lenient = only the code extracted from it, no code = a loss (the pair sets hold code "
                        "already); runs with extraction are saved under their own names")
    args = parser.parse_args(argv)
    from codescaler.records import ExtractMode

    # Pair sets hold code: "none" reads them with the strict rule, as before the flag existed.
    extract_mode = ExtractMode.STRICT if args.extract_mode == "none" else ExtractMode(args.extract_mode)
    out = args.output_dir
    out.mkdir(parents=True, exist_ok=True)
    results: dict[tuple[str, str], dict[str, Any]] = {}
    for spec in args.scorers:
        scorer = functools.cache(functools.partial(make_scorer, spec))  # loaded on first use
        for name in args.sets:
            suffix = f".{args.extract_mode}" if args.extract_mode != "none" and name == "rm-bench" else ""
            suffix += f".first{args.limit}" if args.limit else ""  # never reuse a partial run as a full one
            if name == "rm-bench" and args.rm_bench_languages:
                suffix += "." + "-".join(sorted(args.rm_bench_languages))
            path = out / f"{spec.replace(':', '_').replace('/', '_')}.{name}{suffix}.json"
            cached = path.is_file()
            kind, items = ("", []) if cached else load_set(name, out)
            if kind == "rm-bench" and args.rm_bench_languages:
                items = [item for item in items if item.group in args.rm_bench_languages]
            items = items[: args.limit] if args.limit else items
            raw = kind == "rm-bench" and args.extract_mode == "none"
            meta: dict[str, Any] = {"scorer": spec, "set": name, "extract_mode": args.extract_mode,
                                    "limit": args.limit}
            if name == "rm-bench":
                meta["languages"] = args.rm_bench_languages or "all"
            results[(spec, name)] = evaluate_cached(path, kind, items, scorer, extract_mode=extract_mode,
                                                    input_mode="response" if raw else "code", meta=meta)
            if not cached:
                print(f"{spec} on {name}: {headline(results[(spec, name)])} "
                      f"({results[(spec, name)]['seconds']} s)", flush=True)
        del scorer
    lines = ["| scorer | " + " | ".join(args.sets) + " |", "|---|" + "---|" * len(args.sets)]
    for spec in args.scorers:
        cells = [headline(results[(spec, s)]) if (spec, s) in results else "n/a" for s in args.sets]
        lines.append(f"| {spec} | " + " | ".join(cells) + " |")
    table = "\n".join(lines) + "\n\nRM-Bench cells: easy / normal / hard / average (%).\n"
    (out / "table.md").write_text(table, encoding="utf-8")
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
