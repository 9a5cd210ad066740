"""Does a cheaper CPU runtime keep the backbone's ranking? bfloat16 and dynamic int8 vs float32 features.

    python benchmarks/bench_int8.py [--items 32] [--variants bfloat16 int8-tensor int8-channel]
        [--output runs/bench_int8.json]

Issue 12 asks whether a cheaper CPU runtime keeps the ranking (Spearman >= 0.99 to the reference
scores). The reference is float32. Variants of the 0.5B backbone are timed side by side with it on the
same Codex HumanEval candidates (the ones `bench_features.py` uses), in one run on an idle machine:

- ``bfloat16``: the weights cast to bf16 (fast only on CPUs with native bf16: AVX512-BF16 / AMX);
- ``int8-tensor``: dynamic int8, per-tensor, all linear layers (``quantize_dynamic`` defaults, LM head too);
- ``int8-channel``: dynamic int8, per-output-channel weight scales, the LM head kept in float32.

Features are those of the shipped feature head (``assets/feature_head_rm``: layers 12, 18, 24, last and
mean pooling, likelihood, program facts). For each variant: ms per candidate, speed-up over float32,
Spearman correlation of every likelihood feature and of the **head's score** with their float32 values,
and the cosine of the hidden-state features. Dynamic int8 quantises activations per tensor at run time,
which is what hurts a model with activation outliers such as Qwen2.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))


def quantized(model, *, per_channel: bool, head: bool):  # type: ignore[no-untyped-def]
    import torch
    from torch.ao.quantization import default_dynamic_qconfig, per_channel_dynamic_qconfig

    qconfig = per_channel_dynamic_qconfig if per_channel else default_dynamic_qconfig
    clone = copy.deepcopy(model)
    names = {n: qconfig for n, m in clone.named_modules()
             if isinstance(m, torch.nn.Linear) and (head or n != "lm_head")}
    return torch.ao.quantization.quantize_dynamic(clone, names, dtype=torch.qint8)


VARIANTS = ("bfloat16", "int8-tensor", "int8-channel")


def variant(model, name: str):  # type: ignore[no-untyped-def]
    import torch

    if name == "bfloat16":
        return copy.deepcopy(model).to(torch.bfloat16)
    return quantized(model, per_channel=name == "int8-channel", head=name == "int8-tensor")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--items", type=int, default=32)
    ap.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    ap.add_argument("--output", type=Path, default=ROOT / "runs/bench_int8.json")
    a = ap.parse_args(argv)
    warnings.filterwarnings("ignore")
    import numpy as np
    from scipy.stats import spearmanr

    from bench_features import candidates
    from codescaler.features import FeatureExtractor, FeatureSpec, load_backbone
    from codescaler.heads import load_head
    from codescaler.rm_checkpoint import read_metadata

    asset = ROOT / "src/codescaler/assets/feature_head_rm"
    block = read_metadata(asset).head
    head = load_head(asset, block)
    spec = FeatureSpec.from_dict(block["features"])
    prompts, codes = candidates(a.items, 4)
    model, tok, _sha = load_backbone(spec.backbone, dtype="float32")
    names = spec.names()
    hidden = [i for i, n in enumerate(names) if n.startswith("h")]
    variants = {"float32": model, **{name: variant(model, name) for name in a.variants}}
    rows, ref, ref_ms, ref_score = [], None, None, None
    for label, m in variants.items():
        ex = FeatureExtractor(m, tok, spec)
        ex.compute(prompts[:4], codes[:4])  # warm-up
        start = time.perf_counter()
        out = ex.compute(prompts, codes)
        ms = (time.perf_counter() - start) / len(codes) * 1000
        score = head.score(out)
        row = {"variant": label, "ms_per_candidate": round(ms, 1)}
        if ref is None:
            ref, ref_ms, ref_score = out, ms, score
        else:
            row["speedup"] = round(ref_ms / ms, 2)
            row["head_score_spearman"] = round(float(spearmanr(ref_score, score).statistic), 4)
            row["spearman"] = {n: round(float(spearmanr(ref[:, i], out[:, i]).statistic), 4)
                               for i, n in enumerate(names) if not n.startswith("h") and ref[:, i].std() > 0}
            cos = (ref[:, hidden] * out[:, hidden]).sum(1) / (
                np.linalg.norm(ref[:, hidden], axis=1) * np.linalg.norm(out[:, hidden], axis=1))
            row["hidden_cosine_mean"] = round(float(cos.mean()), 4)
            row["hidden_cosine_min"] = round(float(cos.min()), 4)
        rows.append(row)
        print(json.dumps(row))
    a.output.parent.mkdir(parents=True, exist_ok=True)
    a.output.write_text(json.dumps({"items": len(codes), "rows": rows}, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
