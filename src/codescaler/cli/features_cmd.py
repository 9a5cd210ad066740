"""``codescaler features``: fill the feature cache for pairs files; and ``train --head``'s runner (L4).

The cache (``codescaler.feature_cache``) is content-addressed and resumable: run it, kill it, run it
again; a later ``codescaler train --head`` with the same feature flags computes nothing twice.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from codescaler.errors import InputError

DEFAULT_CACHE = Path(".cache/codescaler/features")


def add_feature_flags(p: argparse.ArgumentParser, *, with_model: bool) -> None:
    """Flags that define a feature spec (shared by ``features`` and ``train --head``)."""
    if with_model:
        p.add_argument("--model", default=None,
                       help="causal-LM backbone: short name, folder or hub id (default qwen2.5-coder-0.5b-instruct)")
        p.add_argument("--max-length", type=int, default=None, help="tokens per input (default 1024)")
        p.add_argument("--batch-size", type=int, default=8, help="programs per forward pass")
        p.add_argument("--dtype", default=None, help="backbone dtype: auto (default), float32, bfloat16")
        p.add_argument("--extract-mode", choices=["strict", "lenient"], default="strict",
                       help="how code is read out of each pair's responses (default: %(default)s)")
    p.add_argument("--layers", type=int, nargs="*", default=None, metavar="L",
                   help="hidden-state layers to read (0 = embeddings, 24 = the last of Qwen2.5-0.5B; default "
                   "12 18 24; none: no hidden states)")
    p.add_argument("--pooling", nargs="+", choices=["last", "mean"], default=["last", "mean"],
                   help="per layer: the last token's state and/or the mean over code tokens")
    p.add_argument("--no-likelihood", dest="likelihood", action="store_false",
                   help="skip the code's log-probability features (then the forward stops at the deepest layer)")
    p.add_argument("--without-problem", action="store_true",
                   help="add the code's log-probability without the problem (a second, cheaper pass)")
    p.add_argument("--no-facts", dest="facts", action="store_false", help="skip length / parses features")
    p.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE,
                   help="feature cache folder (default: %(default)s)")


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "features", help="compute and cache backbone features of the programs in pairs files",
        description="Compute the backbone features (hidden states, likelihood, program facts) of every program "
        "in the given pairs files into the content-addressed cache that `codescaler train --head` reads. "
        "Resumable: a rerun computes only what is missing.")
    p.add_argument("--pairs", required=True, type=Path, nargs="+", help="pairs JSONL files")
    add_feature_flags(p, with_model=True)
    p.set_defaults(func=run)


def head_settings(args: argparse.Namespace, command: str = "") -> Any:
    from codescaler.head_training import (
        DEFAULT_BACKBONE,
        DEFAULT_LAYERS,
        DEFAULT_MAX_LENGTH,
        HeadTrainSettings,
    )
    from codescaler.heads import DEFAULT_L2_GRID, HeadSettings
    from codescaler.records import ExtractMode

    layers = DEFAULT_LAYERS if args.layers is None else tuple(args.layers)
    head = HeadSettings(kind=getattr(args, "head", None) or "linear",
                        l2_grid=tuple(getattr(args, "l2", None) or DEFAULT_L2_GRID),
                        folds=getattr(args, "folds", 5), seed=getattr(args, "seed", 0),
                        free=tuple(getattr(args, "free", None) or ()))
    output = getattr(args, "output", None)
    return HeadTrainSettings(
        pairs=tuple(args.pairs), output=Path(output) if output else Path("."),
        backbone=args.model or DEFAULT_BACKBONE, layers=layers, pooling=tuple(args.pooling),
        likelihood=args.likelihood, without_problem=args.without_problem, facts=args.facts,
        max_length=args.max_length or DEFAULT_MAX_LENGTH, extract_mode=ExtractMode(args.extract_mode),
        eval_pairs=getattr(args, "eval_pairs", None), cache_dir=args.cache_dir, head=head,
        batch_size=args.batch_size, dtype=args.dtype, command=command)


def _progress() -> tuple[Any, Any, Any]:
    from tqdm import tqdm

    bar: dict[str, Any] = {}

    def on_total(total: int) -> None:
        bar["bar"] = tqdm(total=total, unit="program", desc="features", disable=total == 0)

    def step(n: int) -> None:
        if "bar" in bar:
            bar["bar"].update(n)

    def close() -> None:
        if "bar" in bar:
            bar["bar"].close()

    return on_total, step, close


def run(args: argparse.Namespace) -> int:
    from codescaler.feature_cache import FeatureCache
    from codescaler.head_training import LazyExtractor, read_all_pairs, spec_for

    settings = head_settings(args)
    settings.validate()
    examples, _ = read_all_pairs(settings.pairs, settings.extract_mode)
    extractor = LazyExtractor(settings.backbone, lambda w, sha: spec_for(settings, hidden_size=w, sha256=sha),
                              batch_size=settings.batch_size, dtype=settings.dtype)
    cache = FeatureCache(settings.cache_dir, extractor.spec)
    prompts = [ex.prompt for ex in examples] * 2
    codes = [ex.chosen_code for ex in examples] + [ex.rejected_code for ex in examples]
    on_total, step, close = _progress()
    todo = len(cache.missing(prompts, codes))
    on_total(todo)
    try:
        done = cache.fill(extractor.get(), prompts, codes, step) if todo else 0
    finally:
        close()
    print(f"{done} programs computed, {len(cache)} in {cache.folder}")
    return 0


def run_head_training(args: argparse.Namespace, command: str) -> int:
    from codescaler.head_training import train_head

    if args.init_from or args.lora:
        raise InputError("--head trains a head on a frozen backbone: --init-from and --lora do not apply",
                         field="--head", fix="drop --init-from/--lora, or drop --head for TRL training")
    if args.output.exists() and not args.resume and any(args.output.iterdir()):
        raise InputError(f"{args.output} already exists and is not empty", path=str(args.output),
                         fix="pass --resume to overwrite it with a new head, or choose a new --output")
    on_total, step, close = _progress()
    try:
        out, manifest = train_head(head_settings(args, command), step, on_total)
    finally:
        close()
    report = manifest["head"]
    cv = report.get("cv_accuracy")
    held = report.get("heldout_accuracy")
    print(f"saved {out} ({report['kind']} head, {report['pairs']} pairs; CV accuracy "
          f"{'n/a' if cv is None else f'{cv:.3f}'}, held-out {'n/a' if held is None else f'{held:.3f}'})")
    return 0
