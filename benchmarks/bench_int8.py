"""Does int8 keep the backbone's ranking? Dynamic int8 (torch's fbgemm kernels) vs float32 feature rows.

    python benchmarks/bench_int8.py [--items 32] [--output runs/bench_int8.json]

Issue 12 asks whether a cheaper CPU runtime keeps the ranking (Spearman >= 0.99 to the reference
scores). This machine has AVX2 only (no VNNI, no native bf16), so the reference is float32. Two int8
variants of the 0.5B backbone are timed side by side with float32 on the same Codex HumanEval
candidates (the ones `bench_features.py` uses), in one run on an idle machine:

- ``int8 per-tensor, all linear layers`` (``quantize_dynamic`` defaults, the LM head included);
- ``int8 per-channel, LM head in float32`` (per-output-channel weight scales; log-probs keep a float head).

For each: ms per candidate, speed-up over float32, Spearman correlation of every likelihood feature with
its float32 value, and the cosine of the hidden-state features. Activations are quantised per tensor
at run time, which is what hurts a model with activation outliers such as Qwen2.
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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--items", type=int, default=32)
    ap.add_argument("--output", type=Path, default=ROOT / "runs/bench_int8.json")
    a = ap.parse_args(argv)
    warnings.filterwarnings("ignore")
    import numpy as np
    from scipy.stats import spearmanr

    from bench_features import candidates
    from codescaler.features import FeatureExtractor, FeatureSpec, load_backbone
    from codescaler.head_training import DEFAULT_BACKBONE

    prompts, codes = candidates(a.items, 4)
    model, tok, sha = load_backbone(DEFAULT_BACKBONE, dtype="float32")
    spec = FeatureSpec(backbone=DEFAULT_BACKBONE, backbone_sha256=sha, hidden_size=model.config.hidden_size,
                       max_length=768, layers=(12, 24))
    names = spec.names()
    hidden = [i for i, n in enumerate(names) if n.startswith("h")]
    variants = {"float32": model,
                "int8 per-tensor, all linear layers": quantized(model, per_channel=False, head=True),
                "int8 per-channel, LM head in float32": quantized(model, per_channel=True, head=False)}
    rows, ref, ref_ms = [], None, None
    for label, m in variants.items():
        ex = FeatureExtractor(m, tok, spec)
        ex.compute(prompts[:4], codes[:4])  # warm-up
        start = time.perf_counter()
        out = ex.compute(prompts, codes)
        ms = (time.perf_counter() - start) / len(codes) * 1000
        row = {"variant": label, "ms_per_candidate": round(ms, 1)}
        if ref is None:
            ref, ref_ms = out, ms
        else:
            row["speedup"] = round(ref_ms / ms, 2)
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
