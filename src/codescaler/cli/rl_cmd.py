"""``codescaler rl``: GRPO of a code policy with the CodeScaler reward, the unit-test reward or both (layer L4).

A thin parser over ``codescaler.rl.run_rl`` (docs/rl.md). Multi-GPU: the same command under
``accelerate launch``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from codescaler.cli import options


def register(subparsers: Any) -> None:
    from codescaler.rl import DEFAULT_EVAL, DEFAULT_POLICY, DEFAULT_TRAIN, PRESETS, REWARDS

    p = subparsers.add_parser(
        "rl",
        help="GRPO a policy with the CodeScaler reward and/or unit tests",
        description="GRPO (TRL GRPOTrainer) of a code policy. Rewards: rm (CodeScaler, strict extraction + "
        "softplus), tests (1 when the extracted code passes the hidden tests, else 0), rm+tests (their sum). "
        "Writes metrics.jsonl (one row per step), eval.jsonl (held-out greedy pass@1), rollouts.jsonl (every "
        "completion and its rewards), checkpoints (docs/rl.md).",
    )
    options.flag(p, "--output-dir", "--output", required=True, type=Path, help="run folder (metrics, eval, checkpoints)")
    p.add_argument("--reward", choices=REWARDS, default="rm", help="default: %(default)s")
    options.add_policy(p, default=DEFAULT_POLICY)
    options.add_rm(p, purpose=" for rm rewards", old=())
    p.add_argument("--problems", default=DEFAULT_TRAIN,
                   help="training problems: JSONL path, mbpp-train, or a TRAIN dataset of `codescaler data "
                   "--list` (default: %(default)s = MBPP task ids 601-974)")
    p.add_argument("--eval-problems", default=DEFAULT_EVAL,
                   help="held-out problems (default: %(default)s = MBPP ids 511-600); 'none' to skip")
    p.add_argument("--preset", choices=sorted(PRESETS), default="gpu",
                   help="gpu: the paper's hyperparameters, full fine-tuning; cpu: 0.5B + LoRA, 4 prompts x 4 "
                   "rollouts, held-out eval every 5 steps; smoke: 2 steps on 8 easy problems, no checkpoint "
                   "(default: %(default)s)")
    p.add_argument("--max-steps", type=int, default=100, help="GRPO steps (default: %(default)s)")
    p.add_argument("--eval-every", type=int, default=None,
                   help="held-out eval every K steps (always at step 0 and at the end; default: the preset's)")
    options.flag(p, "--limit", "--train-limit", type=int, default=None, metavar="K",
                 help="use the first K training problems (default: the preset's; all for gpu and cpu)")
    lora = p.add_mutually_exclusive_group()
    lora.add_argument("--lora", dest="lora", action="store_true", default=None,
                      help="train LoRA adapters (default for the cpu and smoke presets)")
    lora.add_argument("--full", "--no-lora", dest="lora", action="store_false",
                      help="full fine-tuning (default for the gpu preset)")
    p.add_argument("--lora-r", type=int, default=16, help="LoRA rank (default: %(default)s)")
    p.add_argument("--lora-alpha", type=int, default=32, help="LoRA alpha (default: %(default)s)")
    p.add_argument("--eval-limit", type=int, default=None,
                   help="use the first N held-out problems (default: the preset's; smoke none, cpu 32, gpu all)")
    p.add_argument("--max-completion-length", type=int, default=None, help="override the preset")
    p.add_argument("--batch-size", type=int, default=None,
                   help="completions per device per step (override the preset; a multiple of --num-generations)")
    p.add_argument("--num-generations", type=int, default=None, help="rollouts per prompt (override the preset)")
    p.add_argument("--lr", type=float, default=None, help="learning rate (override the preset)")
    p.add_argument("--lr-scheduler", default=None, metavar="NAME",
                   help="learning-rate schedule: linear (the presets'), constant, constant_with_warmup, cosine")
    p.add_argument("--grad-accum", type=int, default=None, metavar="K",
                   help="gradient accumulation steps (override the preset): a step's rollouts are "
                   "--batch-size x K completions, optimised --batch-size at a time")
    p.add_argument("--beta", type=float, default=None,
                   help="KL coefficient to the starting policy (GRPOConfig beta; with LoRA the reference is the "
                   "policy with its adapter disabled, no second model; default: the preset's, 0)")
    p.add_argument("--mask-truncated", action="store_true", default=None,
                   help="leave completions cut at --max-completion-length out of the loss (GRPOConfig "
                   "mask_truncated_completions): a cut answer scores 0 and would otherwise teach brevity")
    p.add_argument("--save-steps", type=int, default=None, help="checkpoint every N steps (override the preset; smoke: none)")
    p.add_argument("--workers", type=int, default=None, help="execution workers (default: CPU count)")
    options.add_data_dir(p)
    p.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint-N in --output-dir")
    p.add_argument("--report-to", nargs="+", default=["none"], metavar="TRACKER",
                   help="experiment trackers for TRL (tensorboard, wandb, trackio, ...; default: none)")
    vllm = p.add_mutually_exclusive_group()
    vllm.add_argument("--vllm-server", default=None, metavar="URL",
                      help="generate rollouts on a `trl vllm-serve` server at URL (TRL use_vllm, vllm_mode=server)")
    vllm.add_argument("--vllm-colocate", dest="vllm_server", action="store_const", const="colocate",
                      help="generate rollouts with vLLM inside the training process (vllm_mode=colocate)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from codescaler.rl import RLSettings, run_rl

    overrides = {key: value for key, value in (
        ("max_completion_length", args.max_completion_length), ("per_device_train_batch_size", args.batch_size),
        ("num_generations", args.num_generations), ("learning_rate", args.lr), ("save_steps", args.save_steps),
        ("lr_scheduler_type", args.lr_scheduler), ("gradient_accumulation_steps", args.grad_accum),
        ("beta", args.beta), ("mask_truncated_completions", args.mask_truncated),
    ) if value is not None}
    eval_problems = None if str(args.eval_problems).lower() == "none" else args.eval_problems
    settings = RLSettings(
        output=args.output_dir, reward=args.reward, policy=args.policy, rm=args.rm, problems=args.problems,
        eval_problems=eval_problems, preset=args.preset, max_steps=args.max_steps, eval_every=args.eval_every,
        train_limit=args.limit, eval_limit=args.eval_limit, resume=args.resume, seed=args.seed,
        data_dir=str(args.data_dir) if args.data_dir else None, workers=args.workers, lora=args.lora, lora_r=args.lora_r,
        lora_alpha=args.lora_alpha, overrides=overrides,
        report_to=[] if args.report_to == ["none"] else list(args.report_to), vllm=args.vllm_server)
    result = run_rl(settings)
    print(json.dumps(result))
    return 0
