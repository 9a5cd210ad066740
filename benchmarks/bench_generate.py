"""Rollout speed of the RL policy on this machine: tokens per second of the ways GRPO can generate.

    python benchmarks/bench_generate.py [--prompts 2] [--num-generations 4] [--max-new-tokens 160] \
        [--output runs/bench_generate.json]

Generation dominates a GRPO step on CPU (the smoke run's rows: ~57% of a step). One run, side by side on
the same prompts (the smoke preset's easiest MBPP TRAIN problems, chat-formatted as GRPO formats them),
the same sampling (temperature 0.6, top-p 0.95, seeded) and the same completion budget:

- ``plain loop``: one ``generate`` call per completion (KV cache, batch 1): what a naive rollout does;
- ``batched``: one ``generate`` call for all completions (prompts x num_generations, left padding, KV
  cache): what TRL's GRPOTrainer does without vLLM;
- ``batched, LoRA unmerged``: the same through a PEFT LoRA r=16 wrapper on every linear layer, as the
  policy is during LoRA GRPO (the adapter is a fresh one: lora_B = 0, so the outputs match the base);
- ``batched, static cache``: ``cache_implementation="static"`` (GRPOConfig.cache_implementation).

Tokens are the completion tokens up to and including EOS (padding after a finished row is not counted);
tokens/s = tokens / wall seconds. The float32 policy is used on an AVX2-only CPU (bf16 matmul is 3.4x
slower there: ``scorer.pick_dtype``); bf16 is measured too where the CPU has native bf16.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def completion_tokens(out: Any, prompt_len: int, eos_ids: set[int]) -> int:
    """Tokens of each generated row up to and including its first EOS (or the whole budget)."""
    total = 0
    for row in out[:, prompt_len:].tolist():
        n = len(row)
        for i, token in enumerate(row):
            if token in eos_ids:
                n = i + 1
                break
        total += n
    return total


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--prompts", type=int, default=2)
    ap.add_argument("--num-generations", type=int, default=4)
    ap.add_argument("--max-new-tokens", type=int, default=160)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip", nargs="*", default=[], help="variant names to leave out")
    ap.add_argument("--output", type=Path, default=ROOT / "runs" / "bench_generate.json")
    a = ap.parse_args(argv)

    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    from codescaler.data.artifacts import atomic_write_json
    from codescaler.models import resolve_model
    from codescaler.rl import DEFAULT_POLICY, LORA_TARGETS, PRESETS, load_problem_set
    from codescaler.sampling import SamplingConfig, build_messages
    from codescaler.scorer import pick_dtype

    path = resolve_model(DEFAULT_POLICY)
    tokenizer = AutoTokenizer.from_pretrained(path)
    tokenizer.padding_side = "left"
    problems = sorted(load_problem_set("mbpp-train", None, for_training=True),
                      key=lambda p: len(p.reference) if p.reference else 10**9)[: a.prompts]
    sampling = SamplingConfig()
    texts = [tokenizer.apply_chat_template(build_messages(p, sampling), tokenize=False, add_generation_prompt=True)
             for p in problems]
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    eos = {tokenizer.eos_token_id, *([model.generation_config.eos_token_id]
                                     if isinstance(model.generation_config.eos_token_id, int)
                                     else model.generation_config.eos_token_id or [])}
    config = dict(do_sample=True, temperature=PRESETS["smoke"]["temperature"],
                  top_p=PRESETS["smoke"]["top_p"], top_k=None,
                  max_new_tokens=a.max_new_tokens, pad_token_id=tokenizer.pad_token_id, eos_token_id=sorted(eos))

    def batched(m: Any, **extra: Any) -> tuple[int, float]:
        rows = [t for t in texts for _ in range(a.num_generations)]
        enc = tokenizer(rows, return_tensors="pt", padding=True, add_special_tokens=False)
        torch.manual_seed(a.seed)
        started = time.perf_counter()
        with torch.inference_mode():
            out = m.generate(**enc, generation_config=GenerationConfig(**config, **extra))
        return completion_tokens(out, enc["input_ids"].shape[1], eos), time.perf_counter() - started

    def plain(m: Any) -> tuple[int, float]:
        tokens, started = 0, time.perf_counter()
        torch.manual_seed(a.seed)
        for text in texts:
            enc = tokenizer([text], return_tensors="pt", add_special_tokens=False)
            for _ in range(a.num_generations):
                with torch.inference_mode():
                    out = m.generate(**enc, generation_config=GenerationConfig(**config))
                tokens += completion_tokens(out, enc["input_ids"].shape[1], eos)
        return tokens, time.perf_counter() - started

    lora = get_peft_model(AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval(),
                          LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules=list(LORA_TARGETS),
                                     task_type="CAUSAL_LM"))
    variants: dict[str, Any] = {
        "plain loop": lambda: plain(model),
        "batched": lambda: batched(model),
        "batched, LoRA unmerged": lambda: batched(lora),
        "batched, static cache": lambda: batched(model, cache_implementation="static"),
    }
    if str(pick_dtype(None, torch.device("cpu"), 500_000_000)) == "torch.bfloat16":
        bf16 = AutoModelForCausalLM.from_pretrained(path, dtype=torch.bfloat16).eval()
        variants["batched, bf16"] = lambda: batched(bf16)
    batched(model)  # warm-up: first-call allocations and kernel selection are not a variant's cost
    rows: dict[str, dict[str, Any]] = {}
    for name, run in variants.items():
        if name in a.skip:
            continue
        tokens, seconds = run()
        rows[name] = {"tokens": tokens, "seconds": round(seconds, 2), "tokens_per_s": round(tokens / seconds, 2)}
        print(f"{name}: {tokens} tokens in {seconds:.1f} s = {tokens / seconds:.2f} tokens/s", flush=True)
    base = rows.get("plain loop", {}).get("tokens_per_s")
    for row in rows.values():
        row["vs_plain_loop"] = round(row["tokens_per_s"] / base, 2) if base else None
    report = {"prompts": [p.task_id for p in problems], "num_generations": a.num_generations,
              "max_new_tokens": a.max_new_tokens, "threads": torch.get_num_threads(), "variants": rows}
    a.output.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(a.output, report)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
