"""What a GRPO experiment's arms gained and lost on the held-out set, answer by answer.

For the base policy and each arm's final adapter (``<out>/<arm>/final``), greedy answers on the held-out
problems through the in-run eval's own code path (``rl_metrics.evaluate_pass_at_1``: the same dtype rule,
batches, prompt and decoding as ``codescaler rl``'s eval.jsonl rows, so a rerun of a deterministic CPU eval
reproduces those rows), each with its sandbox status. Writes ``<out>/heldout_answers.jsonl`` (one row
per model and problem: ``model``, ``task_id``, ``status``, ``tokens``, ``response``; resumable: a model
already there is not evaluated again) and prints, per arm, the problems gained and lost against the
base policy with the statuses of the lost answers and the mean answer length.

    python benchmarks/rl_heldout_answers.py --out runs/rl-filtered --eval-limit 90
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
BASE = "base"


def _rows(path: Path) -> list[dict]:
    from codescaler.data.artifacts import read_jsonl

    return [row for _, row in read_jsonl(path)] if path.is_file() else []


def answers_for(policy: str, adapter: Path | None, problems: list, batch_size: int, max_new_tokens: int) -> list[dict]:
    """Greedy answers (with statuses) of ``policy`` (+ ``adapter``) on ``problems`` by the in-run eval."""
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
                                with_answers=True)
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
    a = ap.parse_args(argv)
    problems = load_problem_set(a.eval_problems, a.data_dir, for_training=False)[:a.eval_limit]
    path = a.out / "heldout_answers.jsonl"
    done = {r["model"] for r in _rows(path)}
    models = [(BASE, None)] + [(d.name, d / "final") for d in sorted(a.out.iterdir())
                               if (d / "final" / "adapter_config.json").is_file()]
    policy = resolve_model(a.policy)
    for name, adapter in models:
        if name in done:
            continue
        rows = answers_for(policy, adapter, problems, a.batch_size, a.max_new_tokens)
        atomic_write_jsonl(path, _rows(path) + [{"model": name, **r} for r in rows])  # whole models only
        print(f"{name}: {sum(r['status'] == 'passed' for r in rows)} of {len(rows)} passed", flush=True)
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


if __name__ == "__main__":
    raise SystemExit(main())
