"""``codescaler train``: preference pairs -> a Bradley–Terry reward model (TRL RewardTrainer) (layer L4).

Data, format and LoRA flags fill ``training.TrainSettings``; optimisation flags fill
``training.TrainSchedule``, which ``training.run_training`` resolves into TRL's ``RewardConfig``.
Multi-GPU: run the same command under ``accelerate launch`` (docs/training.md).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from codescaler.cli import options
from codescaler.errors import InputError


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "train",
        help="train a reward model on preference pairs",
        description="Train a Bradley-Terry reward model with TRL's RewardTrainer on pairs JSONL (prompt, "
        "chosen, rejected responses[, margin, task_id, language]); the RM sees the problem and ONLY the "
        "extracted code. Writes an HF folder + codescaler.json to --output-dir (docs/training.md).",
    )
    p.add_argument("--pairs", required=True, type=Path, nargs="+", help="training pairs JSONL (several: concatenated)")
    options.flag(p, "--output-dir", "--output", required=True, type=Path, help="checkpoint folder to write")
    options.add_backbone(p, help="short name (minilm, qwen2.5-coder-0.5b-instruct), HF folder or hub id of a "
                         "causal LM, encoder or 1-label RM (default: minilm; with --head qwen2.5-coder-0.5b-instruct)")
    held = p.add_mutually_exclusive_group()
    held.add_argument("--eval-pairs", type=Path, default=None, help="held-out pairs JSONL")
    held.add_argument("--eval-fraction", type=float, default=0.1,
                      help="fraction of PROBLEMS held out when no --eval-pairs (default: %(default)s)")
    options.add_extract_mode(p, default="strict", help="how code is read out of each pair's responses (default: strict)")
    p.add_argument("--input-format", choices=["chat_template", "plain"], default=None,
                   help="default: chat_template when the tokenizer has one, else plain")
    p.add_argument("--max-length", type=int, default=None,
                   help="tokens per input (default: the --init-from checkpoint's, else 1024)")
    p.add_argument("--dtype", default=None, help="--head: backbone dtype (auto, float32, bfloat16)")
    p.add_argument("--init-from", default=None, metavar="CHECKPOINT",
                   help="continue training a codescaler RM checkpoint (a folder, or `default` for the shipped "
                   "RM) on --pairs with a fresh optimizer; a LoRA checkpoint keeps its adapter shape and base, "
                   "and the input format comes from the checkpoint (--backbone is then ignored)")
    p.add_argument("--head", choices=["linear", "mlp"], default=None,
                   help="the CPU path (docs/reward_model.md): a Bradley-Terry head of this kind over cached "
                   "features of a frozen causal-LM backbone (--backbone, default qwen2.5-coder-0.5b-instruct), "
                   "fitted on every pair; the LoRA/TRL flags below do not apply")
    options.add_feature_flags(p, with_backbone=False)
    options.add_head_flags(p)
    p.add_argument("--lora", action="store_true", help="train a LoRA adapter (+ the score head)")
    p.add_argument("--lora-r", type=int, default=16, help="with --lora: adapter rank (default: %(default)s)")
    p.add_argument("--lora-alpha", type=int, default=32, help="with --lora: adapter alpha (default: %(default)s)")
    p.add_argument("--lora-dropout", type=float, default=0.05, help="with --lora: adapter dropout (default: %(default)s)")
    p.add_argument("--lora-layers", type=int, default=0,
                   help="with --lora: adapt only the last N transformer layers; the backward pass then stops "
                   "there, which makes CPU training several times cheaper (default 0: all layers)")
    p.add_argument("--merge", action="store_true", help="with --lora: save merged full weights")
    p.add_argument("--epochs", type=float, default=1.0, help="passes over the training pairs (default: %(default)s)")
    p.add_argument("--max-steps", type=int, default=-1, help="overrides --epochs when > 0")
    p.add_argument("--lr", type=float, default=None, help="learning rate (default: 2e-5 full, 1e-4 LoRA)")
    p.add_argument("--batch-size", type=int, default=8, help="pairs per device per step (--head: programs per forward)")
    p.add_argument("--grad-accum", type=int, default=1, help="gradient accumulation steps (default: %(default)s)")
    p.add_argument("--margin-scale", type=float, default=0.0,
                   help="use margin = SCALE * row margin in the loss (default 0: plain Bradley-Terry)")
    p.add_argument("--center-rewards-coefficient", type=float, default=None,
                   help="TRL's reward-centering term, e.g. 0.01")
    p.add_argument("--eval-steps", type=int, default=None, help="evaluate and checkpoint every N steps")
    p.add_argument("--gradient-checkpointing", choices=["auto", "on", "off"], default="auto",
                   help="auto: on with CUDA, off on CPU")
    p.add_argument("--bf16", choices=["auto", "on", "off"], default="auto",
                   help="bf16 mixed precision; auto: on with a bf16-capable GPU, off on CPU")
    p.add_argument("--eval-max-pairs", type=int, default=0,
                   help="evaluate on a seeded sample of at most N held-out pairs (default 0: all)")
    p.add_argument("--seed", type=int, default=42, help="random seed (default: %(default)s)")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint-N in --output-dir")
    p.add_argument("--stats-pairs", type=int, default=256,
                   help="training pairs scored afterwards for score_mean/std (default: %(default)s)")
    p.add_argument("--report-to", nargs="+", default=["none"], metavar="TRACKER",
                   help="experiment trackers for TRL/transformers (tensorboard, wandb, trackio, mlflow, ...; "
                   "default: none)")
    p.add_argument("--push-to-hub", default=None, metavar="TARGET",
                   help="after saving, write the model card and push --output to this hub repo id (user/name) "
                   "or copy it to a file:///folder (codescaler.hub_push)")
    p.add_argument("--hub-endpoint", default=None, metavar="URL",
                   help="with --push-to-hub: the hub's URL (default: HF_ENDPOINT or huggingface.co)")
    p.set_defaults(func=run)


# Flags that do not shape the model: a repeat run need not resume or publish.
_NOT_REPRODUCED = ("func", "verb", "verbose", "resume", "push_to_hub", "hub_endpoint")


def reproduce_command(args: argparse.Namespace) -> str:
    """The command line that repeats this run: every train flag spelled out (defaults included)."""
    skip = [*_NOT_REPRODUCED, *(["backbone"] if args.init_from else []),  # the checkpoint names its own base
            *(["eval_fraction"] if args.eval_pairs is not None else [])]  # exclusive with --eval-pairs
    return options.command_line("train", args, skip=skip)


def run(args: argparse.Namespace) -> int:
    status = _train(args)
    if status == 0 and args.push_to_hub:
        from codescaler.hub_push import publish_checkpoint

        print(f"pushed {args.output_dir} to {publish_checkpoint(args.output_dir, args.push_to_hub, endpoint=args.hub_endpoint)}")
    return status


def _train(args: argparse.Namespace) -> int:
    if args.head:
        return options.run_head_training(args, reproduce_command(args))
    args.backbone = args.backbone or "minilm"
    if len(args.pairs) != 1:
        raise InputError("TRL training takes one --pairs file", field="--pairs", fix="concatenate them first")
    args.pairs = args.pairs[0]
    from codescaler.records import ExtractMode
    from codescaler.rm_checkpoint import InputFormat
    from codescaler.training import TrainSchedule, TrainSettings, run_training

    settings = TrainSettings(
        pairs=args.pairs, output=args.output_dir, model=args.backbone, eval_pairs=args.eval_pairs,
        eval_fraction=args.eval_fraction, extract_mode=ExtractMode(args.extract_mode),
        input_format=InputFormat(args.input_format) if args.input_format else None,
        max_length=args.max_length, margin_scale=args.margin_scale, lora=args.lora, lora_r=args.lora_r,
        lora_alpha=args.lora_alpha, lora_dropout=args.lora_dropout, lora_layers=args.lora_layers,
        eval_max_pairs=args.eval_max_pairs, merge=args.merge, resume=args.resume, init_from=args.init_from,
        stats_pairs=args.stats_pairs, command=reproduce_command(args))
    schedule = TrainSchedule(
        epochs=args.epochs, max_steps=args.max_steps, lr=args.lr, batch_size=args.batch_size,
        grad_accum=args.grad_accum, seed=args.seed, center_rewards_coefficient=args.center_rewards_coefficient,
        eval_steps=args.eval_steps, gradient_checkpointing=args.gradient_checkpointing, bf16=args.bf16,
        report_to=() if args.report_to == ["none"] else tuple(args.report_to))
    result = run_training(settings, schedule)
    if result.metadata is None:
        args.push_to_hub = None  # processes other than 0 neither write the card nor push
        return 0
    acc = result.heldout.get("eval_pairwise_accuracy")
    print(f"saved {result.output} (held-out pairwise accuracy {f'{acc:.3f}' if isinstance(acc, float) else 'n/a'})")
    return 0
