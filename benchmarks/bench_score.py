"""Scorer throughput vs plain transformers loops over the same model and items, side by side in one run.

Items: real Codex (code-davinci-002) HumanEval samples from the public data (MultiPL-E Python yaml),
``--per-problem`` of them per problem, a problem's candidates next to each other (the shape of a
best-of-N pool or a GRPO group; 1 = every item from a different problem); problem = the HumanEval
prompt, code = prompt + completion (a complete function). EVAL-ONLY data: it is
only used to time the scorer here, nothing is trained or tuned on it.

Compared, on the same loaded model (same weights, dtype, threads):
  scorer   codescaler.Scorer.score_codes (a problem's shared prefix run once; length-sorted batches)
  scorer, no prefix sharing   the same with prefix_sharing off (length-sorted batches only)
  naive    fixed batches of the input order, every batch padded to the longest item of the whole set
           (tokenizer.pad(..., padding="max_length")), logits from the model's own forward
  dynamic  fixed batches of the input order padded to the longest item of each batch (padding=True)
  single   batch size 1, no padding, the model's own forward

Run:  .venv/bin/python benchmarks/bench_score.py --model minilm --items 128
      .venv/bin/python benchmarks/bench_score.py --model default --items 64 --per-problem 8
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _data_dir(arg: str | None) -> Path:
    for candidate in (arg, os.environ.get("CODESCALER_DATA"), str(REPO.parent / "shared" / "data")):
        if candidate and (Path(candidate) / "README.md").is_file():
            return Path(candidate)
    sys.exit("public data not found: pass --data-dir or set CODESCALER_DATA")


def load_items(data: Path, n: int, seed: int, per_problem: int) -> tuple[list[str], list[str]]:
    import yaml

    folder = data / "code-bert-score/evaluation/data/multipl_e/python-davinci-0.8-keep"
    files = sorted(folder.glob("HumanEval_*.yaml"))
    rng = random.Random(seed)
    chosen = rng.sample(files, min(len(files), (n + per_problem - 1) // per_problem))
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    prompts, codes = [], []
    for path in chosen:
        doc = yaml.load(path.read_text(encoding="utf-8"), Loader=loader)
        for completion in rng.sample(doc["completions"], per_problem):
            prompts.append(doc["prompt"])
            codes.append(doc["prompt"] + completion)
    return prompts[:n], codes[:n]


def hardware() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().split("\n"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    text = (f"CPU: {cpu}, {os.cpu_count()} logical cores, torch {torch.__version__} "
            f"({torch.get_num_threads()} threads, {torch.backends.cpu.get_cpu_capability()})")
    if torch.cuda.is_available():
        text += f"; GPU: {torch.cuda.get_device_name(0)}"
    return text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--items", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--device", default=None)
    parser.add_argument("--skip-dynamic", action="store_true", help="skip the input-order dynamic-padding loop")
    parser.add_argument("--skip-single", action="store_true", help="skip the batch-size-1 loop")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--per-problem", type=int, default=8,
                        help="candidates per problem (default 8: a best-of-N pool / GRPO group)")
    args = parser.parse_args()

    import torch

    from codescaler.rm_checkpoint import encode_rm_input
    from codescaler.scorer import Scorer

    prompts, codes = load_items(_data_dir(args.data_dir), args.items, args.seed, args.per_problem)
    scorer = Scorer.load(args.model, device=args.device, dtype=args.dtype, batch_size=args.batch_size)
    model, tok, meta = scorer.model, scorer.tokenizer, scorer.meta
    device = scorer.device
    print(hardware())
    print(f"model {args.model}: {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M params, "
          f"{scorer.info['dtype']} on {device}, input {meta.input_format.value}; {len(codes)} items, "
          f"batch size {args.batch_size}, {args.per_problem} per problem")

    encoded = [encode_rm_input(tok, p, c, meta, scorer.max_length) for p, c in zip(prompts, codes, strict=True)]
    lengths = [len(ids) for ids in encoded]
    real_tokens = sum(lengths)
    longest = max(lengths)
    print(f"tokens per item: min {min(lengths)}, mean {real_tokens / len(lengths):.0f}, max {longest} "
          f"(max_length {scorer.max_length}; the problem is cut first when longer)")
    tok.padding_side = "right"

    def naive(batch_size: int, pad_to: int | None) -> list[float]:
        """The plain loop: the same token ids, the model's own forward and pooling."""
        out: list[float] = []
        with torch.inference_mode():
            for start in range(0, len(encoded), batch_size):
                chunk = encoded[start:start + batch_size]
                if batch_size == 1:
                    batch = {"input_ids": torch.tensor(chunk), "attention_mask": torch.ones(1, len(chunk[0]),
                                                                                         dtype=torch.long)}
                elif pad_to is None:  # HF's usual dynamic padding: to the longest item of this batch
                    batch = tok.pad({"input_ids": chunk}, padding=True, return_tensors="pt")
                else:
                    batch = tok.pad({"input_ids": chunk}, padding="max_length", max_length=pad_to, return_tensors="pt")
                batch = {k: v.to(device) for k, v in batch.items()}
                out.extend(float(v) for v in model(**batch).logits[:, 0].float().cpu())
        return out

    # Warm-up (first calls allocate and pick kernels), then time each method once, in one run.
    scorer.score_codes(prompts[:2], codes[:2])
    naive(2, longest)
    runs: dict[str, tuple[float, list[float], int]] = {}
    computed = {"tokens": 0}

    def count(_module, _args, kwargs):  # tokens (pads included) each scorer forward computes
        computed["tokens"] += int(kwargs["input_ids"].numel())

    hook = scorer._backbone.register_forward_pre_hook(count, with_kwargs=True) if scorer._backbone is not None \
        else None
    sharing = scorer.prefix_sharing
    started = time.perf_counter()
    reference = scorer.score_codes(prompts, codes)
    elapsed = time.perf_counter() - started
    if hook is None:  # encoders run the model's own forward: tokens from the length-sorted batching rule
        sorted_lengths = sorted(lengths, reverse=True)
        computed["tokens"] = sum(sorted_lengths[i] * len(sorted_lengths[i:i + args.batch_size])
                                 for i in range(0, len(sorted_lengths), args.batch_size))
    runs["scorer" + (" (prefix sharing)" if sharing else "")] = (elapsed, reference, computed["tokens"])
    if sharing:
        scorer.prefix_sharing = False
        computed["tokens"] = 0
        started = time.perf_counter()
        got = scorer.score_codes(prompts, codes)
        runs["scorer, no prefix sharing"] = (time.perf_counter() - started, got, computed["tokens"])
        scorer.prefix_sharing = True
    if hook is not None:
        hook.remove()
    started = time.perf_counter()
    got = naive(args.batch_size, longest)
    runs[f"naive batches of {args.batch_size}, max padding"] = (time.perf_counter() - started, got,
                                                                 longest * len(encoded))
    if not args.skip_dynamic:
        started = time.perf_counter()
        got = naive(args.batch_size, None)
        padded = sum(max(lengths[i:i + args.batch_size]) * len(lengths[i:i + args.batch_size])
                     for i in range(0, len(lengths), args.batch_size))
        runs[f"naive batches of {args.batch_size}, dynamic padding"] = (time.perf_counter() - started, got, padded)
    if not args.skip_single:
        started = time.perf_counter()
        got = naive(1, None)
        runs["batch size 1"] = (time.perf_counter() - started, got, real_tokens)

    base = next(iter(runs.values()))[0]
    print(f"\n{'method':<36} {'seconds':>8} {'items/s':>8} {'tokens/s':>9} {'computed tok':>12} "
          f"{'speed-up of scorer':>18} {'max |score diff|':>16}")
    for name, (seconds, scores, computed) in runs.items():
        diff = max(abs(a - b) for a, b in zip(reference, scores, strict=True))
        print(f"{name:<36} {seconds:8.2f} {len(encoded) / seconds:8.2f} {real_tokens / seconds:9.0f} "
              f"{computed:12d} {seconds / base:17.2f}x {diff:16.2e}")
    print("\ntokens/s counts real (non-pad) tokens; 'computed tok' is what the model actually processed; "
          "'speed-up of scorer' = that method's seconds / the scorer's.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
