"""What a GRPO experiment's arms gained and lost on the held-out set, answer by answer.

For the base policy and each arm's final adapter (``<out>/<arm>/final``; ``--checkpoint checkpoint-N``: that
checkpoint's, named ``<arm>@checkpoint-N``), greedy answers on the held-out
problems through the in-run eval's own code path (``rl_metrics.evaluate_pass_at_1``: the same dtype rule,
batches, prompt and decoding as ``codescaler rl``'s eval.jsonl rows, so a rerun of a deterministic CPU eval
reproduces those rows), each with its sandbox status. Writes ``<out>/heldout_answers.jsonl`` (one row
per model and problem: ``model``, ``task_id``, ``status``, ``tokens``, ``response``; resumable: a model
already there is not evaluated again) and prints, per arm, the problems gained and lost against the
base policy with the statuses of the lost answers and the mean answer length.

``--samples K`` measures the policy GRPO trains instead of its mode: K answers a problem at the rollouts'
decoding (temperature 0.6, top-p 0.95, seeded), written to ``<out>/heldout_samples.jsonl`` (with
``sample`` and ``seed``; another ``--seed`` adds K more answers a problem to the same file), and prints
each model's pass rate over all its answers and, per arm against the base policy, the problems whose pass
rate rose and fell, the mean change of a problem's pass rate with its standard error (paired by problem),
and a two-sided sign test over the problems that changed. Greedy pass@1 flips
with any small change of the weights on problems the policy half-knows; the sampled rate moves smoothly.

    python benchmarks/rl_heldout_answers.py --out runs/rl-filtered --eval-limit 90
    python benchmarks/rl_heldout_answers.py --out runs/rl-filtered --eval-limit 90 --samples 4
    python benchmarks/rl_heldout_answers.py --out runs/rl-filtered --eval-limit 90 --samples 4 --seed 1 --models base,tests
"""

from __future__ import annotations

import argparse
import math
import sys
from collections import Counter
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
BASE = "base"


def _rows(path: Path) -> list[dict]:
    from codescaler.data.artifacts import read_jsonl

    return [row for _, row in read_jsonl(path)] if path.is_file() else []


def sign_test(up: int, down: int) -> float:
    """Two-sided exact sign test: the probability of a split at least this uneven when up and down are
    equally likely (ties left out)."""
    n = up + down
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(0, min(up, down) + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def paired_change(base: dict[str, float], arm: dict[str, float]) -> dict[str, Any]:
    """A problem's pass rate (or count), arm minus base, over the problems both measured: the problems that
    rose and fell, the mean change with its standard error, and the sign test over the problems that changed."""
    common = sorted(set(base) & set(arm))
    diffs = [arm[t] - base[t] for t in common]
    n = len(diffs)
    mean = sum(diffs) / n if n else 0.0
    se = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (n - 1) / n) if n > 1 else 0.0
    up, down = sum(d > 0 for d in diffs), sum(d < 0 for d in diffs)
    return {"problems": n, "rose": up, "fell": down, "mean": mean, "se": se, "p": sign_test(up, down)}


def answers_for(policy: str, adapter: Path | None, problems: list, batch_size: int, max_new_tokens: int,
                **sampled: Any) -> list[dict]:
    """Answers (with statuses) of ``policy`` (+ ``adapter``) on ``problems`` by the in-run eval: greedy, or
    ``sampled`` (``samples``, ``temperature``, ``top_p``, ``seed`` of ``evaluate_pass_at_1``)."""
    from codescaler.executor import ExecuteOptions
    from codescaler.records import ExtractMode
    from codescaler.rl import load_policy
    from codescaler.rl_metrics import evaluate_pass_at_1
    from codescaler.sampling import SamplingConfig

    model, tokenizer, _ = load_policy(policy, "cpu", lora=True)   # as the cpu preset's GRPO run loads it
    if adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter))
    result = evaluate_pass_at_1(model, tokenizer, problems, max_new_tokens=max_new_tokens, batch_size=batch_size,
                                options=ExecuteOptions(extract_mode=ExtractMode.STRICT), sampling=SamplingConfig(),
                                with_answers=True, **sampled)
    return result["answers"]


def main(argv: list[str] | None = None) -> int:
    from codescaler.data.artifacts import atomic_write_jsonl
    from codescaler.models import resolve_model
    from codescaler.rl_problems import load_problem_set

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, required=True, help="a benchmarks/rl_experiment.py output folder")
    ap.add_argument("--policy", default="qwen2.5-coder-0.5b-instruct")
    ap.add_argument("--eval-problems", default="mbpp-validation")
    ap.add_argument("--eval-limit", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=8, help="the cpu preset's eval batch (default %(default)s)")
    ap.add_argument("--max-new-tokens", type=int, default=192)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--samples", type=int, default=0, metavar="K",
                    help="K sampled answers a problem instead of one greedy answer (heldout_samples.jsonl)")
    ap.add_argument("--temperature", type=float, default=0.6, help="with --samples (the presets' rollouts: 0.6)")
    ap.add_argument("--top-p", type=float, default=0.95, help="with --samples (the presets' rollouts: 0.95)")
    ap.add_argument("--seed", type=int, default=0,
                    help="with --samples; each seed's answers are kept beside the others' (default %(default)s)")
    ap.add_argument("--checkpoint", default="final", metavar="NAME",
                    help="each arm's adapter folder to answer with: final (default) or checkpoint-N (named ARM@checkpoint-N)")
    ap.add_argument("--models", default=None, metavar="NAMES",
                    help="comma-separated models to answer: base and/or arm folder names (default: all)")
    a = ap.parse_args(argv)
    if a.samples < 0:
        ap.error(f"--samples must be >= 0, got {a.samples}")
    problems = load_problem_set(a.eval_problems, a.data_dir, for_training=False)[:a.eval_limit]
    sampled = dict(samples=a.samples, temperature=a.temperature, top_p=a.top_p, seed=a.seed) if a.samples else {}
    path = a.out / ("heldout_samples.jsonl" if a.samples else "heldout_answers.jsonl")
    done = {r["model"] for r in _rows(path) if r.get("seed", 0) == a.seed or not a.samples}
    suffix = "" if a.checkpoint == "final" else f"@{a.checkpoint}"   # another checkpoint: its own model name
    models = [(BASE, None)] + [(d.name + suffix, d / a.checkpoint) for d in sorted(a.out.iterdir())
                               if (d / a.checkpoint / "adapter_config.json").is_file()]
    if a.models is not None:
        asked = [m for m in a.models.split(",") if m]
        unknown = sorted(set(asked) - {name for name, _ in models})
        if unknown:
            ap.error(f"--models: no model {unknown[0]!r} in {a.out} (base, or an arm folder with {a.checkpoint}/adapter_config.json)")
        models = [(name, adapter) for name, adapter in models if name in asked]
    policy = resolve_model(a.policy)
    seed = {"seed": a.seed} if a.samples else {}   # sampled rows say which draws they are
    for name, adapter in models:
        if name in done:
            continue
        rows = answers_for(policy, adapter, problems, a.batch_size, a.max_new_tokens, **sampled)
        atomic_write_jsonl(path, _rows(path) + [{"model": name, **seed, **r} for r in rows])  # whole models only
        print(f"{name}: {sum(r['status'] == 'passed' for r in rows)} of {len(rows)} passed", flush=True)
    if a.samples:
        report_samples(_rows(path))
        return 0
    by_model: dict[str, dict[str, dict]] = {}
    for r in _rows(path):
        by_model.setdefault(r["model"], {})[r["task_id"]] = r
    base = by_model.get(BASE, {})
    for name, rows in by_model.items():
        passed = {t for t, r in rows.items() if r["status"] == "passed"}
        tokens = sum(r["tokens"] for r in rows.values()) / max(1, len(rows))
        line = f"{name}: {len(passed)} of {len(rows)} passed, {tokens:.0f} tokens an answer"
        if name != BASE and base:
            before = {t for t, r in base.items() if r["status"] == "passed"}
            lost = sorted(before - passed)
            line += (f"; gained {sorted(passed - before)}, lost {lost} "
                     f"(now {dict(Counter(rows[t]['status'] for t in lost))})")
        print(line)
    return 0


def report_samples(rows: list[dict]) -> None:
    """Per model the sampled pass rate; per arm its paired change against the base policy."""
    passes: dict[str, Counter[str]] = {}
    draws: dict[str, Counter[str]] = {}
    for r in rows:
        passes.setdefault(r["model"], Counter())[r["task_id"]] += r["status"] == "passed"
        draws.setdefault(r["model"], Counter())[r["task_id"]] += 1
    rates = {m: {t: passes[m][t] / n for t, n in per.items()} for m, per in draws.items()}
    base = rates.get(BASE, {})
    for name, per in draws.items():
        total, passed = sum(per.values()), sum(passes[name].values())
        seeds = sorted({r.get("seed", 0) for r in rows if r["model"] == name})
        line = f"{name}: {passed} of {total} answers passed ({passed / total:.3f}; seeds {seeds})"
        if name != BASE and base:
            c = paired_change(base, rates[name])
            line += (f"; per problem vs base: {c['rose']} rose, {c['fell']} fell, pass rate {c['mean']:+.3f} "
                     f"+- {c['se']:.3f}, sign test p = {c['p']:.2f}")
        print(line)


if __name__ == "__main__":
    raise SystemExit(main())
