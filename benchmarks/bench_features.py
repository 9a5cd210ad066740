"""Scoring cost per candidate of feature variants vs the LoRA sequence-classifier RM, side by side in one run.

    python benchmarks/bench_features.py [--items 16] [--per-problem 4] [--repeats 2]

Candidates: Codex HumanEval Python samples (the first ``--per-problem`` of the first problems), scored
the way best-of-N and GRPO score them (several candidates per problem, prefix sharing on). Variants:
the full feature pass (hidden states + likelihood: every layer and the LM head at code positions),
hidden states only up to layer 24 / 18 / 12 / 8 (the forward stops there), and the shipped LoRA RM
(``Scorer.load("default")``). Each is timed ``--repeats`` times in turn (round robin), so all see the
same machine load; the table reports the median ms per candidate and the ratio to the LoRA RM.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def candidates(n: int, per_problem: int) -> tuple[list[str], list[str]]:
    import yaml

    from codescaler.data import locate_data_dir

    folder = locate_data_dir() / "code-bert-score/evaluation/data/multipl_e/python-davinci-0.8-keep"
    prompts, codes = [], []
    for path in sorted(folder.glob("HumanEval_*.yaml")):
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        for completion in doc["completions"][:per_problem]:
            prompts.append(doc["prompt"])
            codes.append(doc["prompt"] + completion)
        if len(codes) >= n:
            break
    return prompts[:n], codes[:n]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--items", type=int, default=16)
    ap.add_argument("--per-problem", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--output", type=Path, default=ROOT / "runs/bench_features.json")
    ap.add_argument("--checkpoints", nargs="*", default=[], metavar="RM",
                    help="also time these RM checkpoints end to end through Scorer.load (e.g. the stacked RM "
                         "src/codescaler/assets/stacked_rm)")
    ap.add_argument("--only-checkpoints", action="store_true",
                    help="time only the LoRA RM and --checkpoints (skip the feature variants)")
    a = ap.parse_args(argv)
    from codescaler.features import FeatureExtractor, FeatureSpec, load_backbone
    from codescaler.head_training import DEFAULT_BACKBONE
    from codescaler.scorer import Scorer

    prompts, codes = candidates(a.items, a.per_problem)
    model, tok, sha = load_backbone(DEFAULT_BACKBONE)
    base = {"backbone": DEFAULT_BACKBONE, "backbone_sha256": sha, "hidden_size": model.config.hidden_size,
            "max_length": 768}
    variants = {
        "features: layers 12,18,24 + likelihood + facts": FeatureSpec(**base, layers=(12, 18, 24)),
        "features: likelihood + facts only": FeatureSpec(**base, layers=(), pooling=()),
        "features: hidden to layer 24, no likelihood": FeatureSpec(**base, layers=(24,), likelihood=False),
        "features: hidden to layer 18 (stop there)": FeatureSpec(**base, layers=(18,), likelihood=False),
        "features: hidden to layer 12 (stop there)": FeatureSpec(**base, layers=(12,), likelihood=False),
        "features: hidden to layer 8 (stop there)": FeatureSpec(**base, layers=(8,), likelihood=False),
    }
    runners = {name: (lambda s=spec: FeatureExtractor(model, tok, s).compute(prompts, codes))
               for name, spec in variants.items()} if not a.only_checkpoints else {}
    dtype = str(next(model.parameters()).dtype).removeprefix("torch.")
    lora = Scorer.load("default", dtype=dtype)
    runners["shipped LoRA RM (sequence classifier, merged)"] = lambda: lora.score_codes(prompts, codes)
    for name in a.checkpoints:
        loaded = Scorer.load(name, dtype=dtype)
        runners[f"checkpoint {name}"] = lambda s=loaded: s.score_codes(prompts, codes)
    times: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(a.repeats):
        for name, run in runners.items():
            started = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - started)
    ref = statistics.median(times["shipped LoRA RM (sequence classifier, merged)"])
    lines = ["| variant | ms per candidate | / LoRA RM |", "|---|---|---|"]
    report = {}
    for name, values in times.items():
        med = statistics.median(values)
        report[name] = {"seconds": values, "ms_per_candidate": 1000 * med / len(codes), "ratio": med / ref}
        lines.append(f"| {name} | {1000 * med / len(codes):.0f} | {med / ref:.2f} |")
    print("\n".join(lines))
    a.output.parent.mkdir(parents=True, exist_ok=True)
    a.output.write_text(json.dumps({"items": len(codes), "per_problem": a.per_problem, "dtype":
                                    str(next(model.parameters()).dtype), "variants": report}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
