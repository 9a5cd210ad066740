"""Feature-head reward models: ablations, baselines and held-out accuracy from ONE set of forward passes.

    python benchmarks/rm_features.py --train-pairs runs/train-data/train.pairs.jsonl \
        --val-pairs runs/train-data/val.pairs.jsonl --per-source 60 --val-per-source 15 \
        --sets codex hep-python rm-bench-python --output-dir runs/rm-features

Every program (TRAIN sample, validation sample, and the evaluation-only sets) goes through the backbone
once, into the feature cache (`codescaler.feature_cache`, resumable: rerun to continue). Then every row
of the ablation table is a head fitted in seconds on those cached rows, and every baseline is read off
the same rows, so all figures come from the same forward passes in the same run:

- ``logprob``: mean token log-prob of the code under the backbone (the ``lp_mean`` feature; the same
  chat-formatted context as ``codescaler eval --baselines``'s log-prob scorer);
- ``untrained``: a seeded random linear head on the last layer's last-token state (what a sequence
  classifier on the untrained backbone scores);
- ``shorter`` / ``longer``: length-only judges (fewer / more characters of code wins).

Training pairs are sampled per source (``--per-source`` pairs, at most 2 per problem, seeded), because
a forward pass of the 0.5B backbone costs ~10 ms per token on a 2-core CPU without AVX-512. The
evaluation sets are evaluation-only (HumanEval-derived); no head or setting is chosen on them: the
shipped configuration is the best on the validation pairs (problems held out of TRAIN).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

SETS = ("codex", "hep-python", "hep-js", "hep-java", "hep-go", "hep-cpp", "hep-rust", "rm-bench-python")
LAYERS = (8, 12, 18, 24)


def source_of_tasks(raw: Path) -> dict[str, str]:
    out = {}
    for folder in sorted(raw.iterdir()):
        path = folder / "problems.jsonl"
        if path.is_file():
            for line in path.read_text(encoding="utf-8").split("\n"):
                if line.strip():
                    out.setdefault(json.loads(line)["task_id"], folder.name)
    return out


def sample_pairs(path: Path, per_source: int, seed: int, sources: dict[str, str],
                 override: dict[str, int] | None = None) -> list[Any]:
    """Up to ``per_source`` usable pairs of each source (``override``: another count for some
    ``source:kind`` keys, e.g. ``mbpp:mutant``), at most 2 per problem, seeded (nested in N)."""
    from codescaler.training import read_pairs

    examples, _ = read_pairs(path)
    rows = {n: json.loads(line) for n, line in enumerate(path.read_text(encoding="utf-8").split("\n"), 1)
            if line.strip()}
    by_source: dict[str, dict[str, list[Any]]] = defaultdict(lambda: defaultdict(list))
    for ex in examples:
        row = rows[ex.line]
        kind = "mutant" if "/mut-" in str(row.get("rejected_id", "")) else "real"
        by_source[f"{sources.get(ex.group, 'unknown')}:{kind}"][ex.group].append(ex)
    picked = []
    for source, problems in sorted(by_source.items()):
        # One generator per source and per problem: a larger --per-source takes a superset of a smaller
        # one, so a cache filled for N pairs per source is reused when a later run asks for more.
        names = sorted(problems)
        random.Random(f"{seed}:{source}").shuffle(names)
        taken: list[Any] = []
        want = (override or {}).get(source, per_source)
        for name in names:
            if len(taken) >= want:
                break
            group = sorted(problems[name], key=lambda ex: ex.line)
            random.Random(f"{seed}:{source}:{name}").shuffle(group)
            taken += group[: min(2, want - len(taken))]
        picked += taken
    return picked


def eval_items(name: str, work: Path) -> tuple[str, Any]:
    from codescaler.bench import pairwise
    from codescaler.data.locate import locate_data_dir
    from rm_heldout import codex_pairs

    if name == "codex":
        return "pairs", pairwise.read_eval_pairs(codex_pairs(work))
    if name.startswith("hep-"):
        return "pairs", pairwise.load_hep(locate_data_dir(None), [name.removeprefix("hep-")])
    items = pairwise.load_rm_bench(locate_data_dir(None) / "RM-Bench/data/code_filtered.json")
    return "rm-bench", [it for it in items if it.group == name.removeprefix("rm-bench-")]


def eval_texts(kind: str, items: Any, mode: Any) -> list[tuple[str, str]]:
    """(prompt, code) of every program the evaluation will score (extracted as the evaluation does)."""
    from codescaler.bench.pairwise import program_texts

    flat = []
    if kind == "pairs":
        for p in items:
            flat += [(p.prompt, p.chosen, p.language, p.is_code), (p.prompt, p.rejected, p.language, p.is_code)]
    else:
        for it in items:
            flat += [(it.prompt, t, it.language, False) for t in (*it.chosen, *it.rejected)]
    texts = program_texts(flat, "code", mode)
    return [(f[0], t) for f, t in zip(flat, texts, strict=True) if t is not None]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--train-pairs", type=Path, default=ROOT / "runs/train-data/train.pairs.jsonl")
    ap.add_argument("--val-pairs", type=Path, default=ROOT / "runs/train-data/val.pairs.jsonl")
    ap.add_argument("--raw", type=Path, default=ROOT / "runs/train-data/raw", help="for each task's source")
    ap.add_argument("--per-source", type=int, default=25)
    ap.add_argument("--val-per-source", type=int, default=8)
    ap.add_argument("--source-pairs", nargs="*", default=[], metavar="SOURCE:KIND=N",
                    help="another training-pair count for some sources, e.g. leetcode-train:mutant=300 "
                         "(kinds: mutant = reference vs mutant, real = LLM samples)")
    ap.add_argument("--limit", type=int, default=None, help="first N pairs (items) of each evaluation set")
    ap.add_argument("--sets", nargs="+", choices=SETS, default=["hep-python", "rm-bench-python", "codex"])
    ap.add_argument("--output-dir", type=Path, default=ROOT / "runs/rm-features")
    ap.add_argument("--cache-dir", type=Path, default=ROOT / ".cache/codescaler/features")
    ap.add_argument("--max-length", type=int, default=768)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--without-problem", action="store_true",
                    help="also the code's log-prob under an empty problem (a second, likelihood-only cache) "
                         "and the heads that use it")
    ap.add_argument("--features-only", action="store_true", help="fill the cache and stop")
    ap.add_argument("--ship", type=Path, default=None, help="write the best-on-validation head checkpoint here")
    ap.add_argument("--scorers", nargs="*", default=[],
                    help="checkpoints scored on the same items by their own forward passes, as in "
                         "rm_heldout.py (e.g. rm:default = the shipped LoRA RM)")
    a = ap.parse_args(argv)

    from codescaler.feature_cache import FeatureCache
    from codescaler.head_training import HeadTrainSettings, LazyExtractor, spec_for
    from rm_features_eval import set_modes

    out = a.output_dir
    out.mkdir(parents=True, exist_ok=True)
    sources = source_of_tasks(a.raw)
    override = {}
    for spec in a.source_pairs:
        key, sep, count = spec.partition("=")
        if not sep or ":" not in key or not count.isdigit():
            raise SystemExit(f"--source-pairs {spec!r}: expected SOURCE:KIND=N, e.g. mbpp:mutant=300")
        override[key] = int(count)
    train = sample_pairs(a.train_pairs, a.per_source, a.seed, sources, override)
    val = sample_pairs(a.val_pairs, a.val_per_source, a.seed, sources) if a.val_per_source else []
    settings = HeadTrainSettings(pairs=(a.train_pairs,), output=out, layers=LAYERS, max_length=a.max_length,
                                 batch_size=a.batch_size)
    lazy = LazyExtractor(settings.backbone, lambda w, sha: spec_for(settings, hidden_size=w, sha256=sha),
                         batch_size=a.batch_size, dtype=None)
    cache = FeatureCache(a.cache_dir, lazy.spec, lazy.precision)
    items: list[tuple[str, str]] = []
    for ex in train + val:
        items += [(ex.prompt, ex.chosen_code), (ex.prompt, ex.rejected_code)]
    n_pair_items = len(items)
    sets: dict[str, tuple[str, Any]] = {}
    set_ranges = []
    for name in a.sets:
        kind, loaded = eval_items(name, out)
        sets[name] = (kind, loaded[: a.limit] if a.limit else loaded)
        start = len(items)
        for mode, _suffix in set_modes(kind):
            items += eval_texts(*sets[name], mode)
        set_ranges.append((start, len(items)))
    prompts, codes = [p for p, _ in items], [c for _, c in items]
    todo = cache.missing(prompts, codes)
    print(f"{len(train)} train pairs, {len(val)} validation pairs, {len(items)} programs "
          f"({len(set(items))} distinct); {len(todo)} to compute", flush=True)
    started = time.monotonic()
    if todo:
        from tqdm import tqdm

        extractor = lazy.get()
        with tqdm(total=len(todo), unit="program", mininterval=30) as bar:
            # pairs first, so that a run cut short can already fit heads
            cache.fill(extractor, prompts[:n_pair_items], codes[:n_pair_items], bar.update, chunk=32)
            for start, stop in set_ranges:  # then set by set, in the order given
                cache.fill(extractor, prompts[start:stop], codes[start:stop], bar.update, chunk=32)
    seconds = time.monotonic() - started
    stats = {"programs_computed": len(todo), "seconds": round(seconds, 1),
             "programs_per_second": round(len(todo) / seconds, 3) if todo and seconds else None}
    print(json.dumps(stats), flush=True)
    if a.without_problem:
        cache, stats["without_problem"] = _without_problem(cache, lazy, codes, a)
        print(json.dumps(stats["without_problem"]), flush=True)
    if a.features_only:
        return 0
    from rm_features_eval import run_ablations

    run_ablations(cache, train, val, sets, sources, out, stats, ship=a.ship, seed=a.seed,
                  checkpoints=tuple(a.scorers), limit=a.limit)
    return 0


def _without_problem(cache: Any, lazy: Any, codes: list[str], a: argparse.Namespace) -> tuple[Any, dict[str, Any]]:
    """Fill a likelihood-only cache of every code under an empty problem (pairs first, then the sets)
    and return the main rows joined with the four without-problem columns."""
    from dataclasses import replace

    from codescaler.feature_cache import FeatureCache
    from codescaler.features import FeatureExtractor
    from rm_features_eval import WithoutProblemRows

    alone_spec = replace(lazy.spec, layers=(), pooling=(), facts=False)
    alone = FeatureCache(a.cache_dir, alone_spec, lazy.precision)
    distinct = list(dict.fromkeys(codes))
    todo = alone.missing([""] * len(distinct), distinct)
    started = time.monotonic()
    if todo:
        from tqdm import tqdm

        main = lazy.get()
        extractor = FeatureExtractor(main.model, main.tokenizer, alone_spec, batch_size=a.batch_size)
        with tqdm(total=len(todo), unit="program", mininterval=30) as bar:
            alone.fill(extractor, [""] * len(distinct), distinct, bar.update, chunk=64)
    seconds = time.monotonic() - started
    return WithoutProblemRows(cache, alone), {
        "programs_computed": len(todo), "seconds": round(seconds, 1),
        "programs_per_second": round(len(todo) / seconds, 3) if todo and seconds else None}


if __name__ == "__main__":
    raise SystemExit(main())
