"""GRPO with the CodeScaler reward vs the binary unit-test reward: held-out pass@1 before and after.

Driven by scripts/gpu_rl_experiment.sh (docs/rl.md). Runs ``codescaler rl`` twice (one subprocess per
reward, so GPU memory is freed between runs) on the same training problems with the same seed, then
reads each run's eval.jsonl (step 0 = before, last row = after) and metrics.jsonl, and writes
``<out>/summary.json`` and ``<out>/summary.md``.

--smoke: tiny random policy and RM built locally (build_tiny_model), the smoke preset, CPU, a few
problems; proves the pipeline end to end in minutes (its pass@1 is 0 by construction).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _rows(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").split("\n") if line.strip()]


def _smoke_models(out: Path) -> tuple[str, str]:
    from codescaler.rm_checkpoint import InputFormat, RMMetadata, write_metadata
    from codescaler.testing import build_tiny_model

    policy = build_tiny_model(out / "tiny_policy", arch="qwen2", kind="causal", seed=1)
    rm = build_tiny_model(out / "tiny_rm", arch="qwen3", seed=5)
    write_metadata(rm, RMMetadata(input_format=InputFormat.CHAT_TEMPLATE, max_length=512, backbone="tiny-qwen3"))
    return str(policy), str(rm)


def run_one(reward: str, args: argparse.Namespace, policy: str, rm: str) -> dict:
    run_dir = args.out / reward.replace("+", "_")
    cmd = [sys.executable, "-m", "codescaler", "rl", "--reward", reward, "--policy", policy,
           "--preset", "smoke" if args.smoke else "gpu", "--max-steps", str(args.steps),
           "--problems", args.problems, "--eval-problems", args.eval_problems,
           "--limit", str(args.train_limit), "--eval-limit", str(args.eval_limit),
           "--seed", str(args.seed), "--output-dir", str(run_dir)]
    if "rm" in reward.split("+"):
        cmd += ["--rm", rm]
    if args.max_completion_length:
        cmd += ["--max-completion-length", str(args.max_completion_length)]
    if args.data_dir:
        cmd += ["--data-dir", args.data_dir]
    if args.smoke:  # the smoke preset writes no checkpoint by default; one per step lets a re-run resume
        cmd += ["--save-steps", "1"]
    if (run_dir / "metrics.jsonl").is_file():
        cmd.append("--resume")
    print("+", " ".join(cmd), flush=True)
    start = time.monotonic()
    done = subprocess.run(cmd, cwd=REPO, check=False)
    wall = time.monotonic() - start
    evals, metrics = _rows(run_dir / "eval.jsonl"), _rows(run_dir / "metrics.jsonl")
    before = next((e for e in evals if e["step"] == 0), None)
    after = evals[-1] if evals and evals[-1]["step"] > 0 else None
    last = metrics[-1] if metrics else {}
    return {"reward": reward, "exit_code": done.returncode, "wall_s": round(wall, 1), "steps": last.get("step"),
            "pass_at_1_before": before and before["pass_at_1"], "pass_at_1_after": after and after["pass_at_1"],
            "valid_before": before and before["valid_rate"], "valid_after": after and after["valid_rate"],
            "eval_n": (after or before or {}).get("n"), "train_reward_first": metrics[0]["reward_mean"] if metrics
            else None, "train_reward_last": last.get("reward_mean"), "train_valid_last": last.get("valid_rate"),
            "run_dir": str(run_dir)}


def write_summary(out: Path, config: dict, results: list[dict]) -> None:
    summary = {"config": config, "results": results}
    tmp = out / "summary.json.tmp"
    tmp.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, out / "summary.json")
    lines = [f"# GRPO: CodeScaler reward vs unit-test reward ({'SMOKE, tiny random models' if config['smoke'] else 'GPU'})",
             "", f"policy `{config['policy']}`, rm `{config['rm']}`, train `{config['problems']}` "
             f"(first {config['train_limit']}), held-out `{config['eval_problems']}` (first {config['eval_limit']}), "
             f"{config['steps']} steps, seed {config['seed']}.", "",
             "| reward | steps | held-out pass@1 before | after | valid before | after | train reward first -> last "
             "| wall s | exit |", "|---|---|---|---|---|---|---|---|---|"]

    def f(x: object) -> str:
        return "-" if x is None else (f"{x:.3f}" if isinstance(x, float) else str(x))

    for r in results:
        lines.append(f"| {r['reward']} | {f(r['steps'])} | {f(r['pass_at_1_before'])} | {f(r['pass_at_1_after'])} | "
                     f"{f(r['valid_before'])} | {f(r['valid_after'])} | {f(r['train_reward_first'])} -> "
                     f"{f(r['train_reward_last'])} | {f(r['wall_s'])} | {r['exit_code']} |")
    tmp = out / "summary.md.tmp"
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    os.replace(tmp, out / "summary.md")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--smoke", action="store_true")
    p.add_argument("--policy", default="qwen2.5-coder-0.5b-instruct")
    p.add_argument("--rm", default="default", help="RM checkpoint for the rm reward")
    p.add_argument("--rewards", default="rm,tests")
    p.add_argument("--problems", default="mbpp-train")
    p.add_argument("--eval-problems", default="mbpp-validation")
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--train-limit", type=int, default=128)
    p.add_argument("--eval-limit", type=int, default=90)
    p.add_argument("--max-completion-length", type=int, default=0, help="0: the preset's")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    policy, rm = args.policy, args.rm
    if args.smoke:
        policy, rm = _smoke_models(args.out)
    config = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    config.update(policy=policy, rm=rm)
    results = [run_one(reward, args, policy, rm) for reward in args.rewards.split(",")]
    write_summary(args.out, config, results)
    print((args.out / "summary.md").read_text(encoding="utf-8"))
    return 0 if all(r["exit_code"] == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
