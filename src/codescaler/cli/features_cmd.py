"""``codescaler features``: fill the feature cache for pairs files (layer L4; the flags: cli.options).

The cache (``codescaler.feature_cache``) is content-addressed and resumable: run it, kill it, run it
again; a later ``codescaler train --head`` with the same feature flags computes nothing twice.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from codescaler.cli.options import add_feature_flags, feature_progress, head_settings


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "features", help="compute and cache backbone features of the programs in pairs files",
        description="Compute the backbone features (hidden states, likelihood, program facts) of every program "
        "in the given pairs files into the content-addressed cache that `codescaler train --head` reads. "
        "Resumable: a rerun computes only what is missing.")
    p.add_argument("--pairs", required=True, type=Path, nargs="+", help="pairs JSONL files")
    add_feature_flags(p, with_backbone=True)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from codescaler.feature_cache import FeatureCache
    from codescaler.head_training import LazyExtractor, read_all_pairs, spec_for

    settings = head_settings(args)
    settings.validate()
    examples, _ = read_all_pairs(settings.pairs, settings.extract_mode)
    extractor = LazyExtractor(settings.backbone, lambda w, sha: spec_for(settings, hidden_size=w, sha256=sha),
                              batch_size=settings.batch_size, dtype=settings.dtype)
    cache = FeatureCache(settings.cache_dir, extractor.spec, extractor.precision)
    prompts = [ex.prompt for ex in examples] * 2
    codes = [ex.chosen_code for ex in examples] + [ex.rejected_code for ex in examples]
    on_total, step, close = feature_progress()
    todo = len(cache.missing(prompts, codes))
    on_total(todo)
    try:
        done = cache.fill(extractor.get(), prompts, codes, step) if todo else 0
    finally:
        close()
    print(f"{done} programs computed, {len(cache)} in {cache.folder}")
    return 0
