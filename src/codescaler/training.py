"""Preference pairs -> a trained Bradley–Terry reward model through TRL's ``RewardTrainer`` (layer L2).

Contract
--------
- Input: a pairs JSONL (``prompt``, ``chosen``, ``rejected``, optional ``margin``, ``task_id``,
  ``language``). ``chosen``/``rejected`` are RESPONSES: the code is extracted from each with the
  checkpoint's extraction mode (strict by default) and ONLY that code is what the RM sees, encoded by
  ``rm_checkpoint.encode_rm_input`` (the exact function the Scorer uses). TRL receives pre-tokenised
  ``chosen_ids``/``rejected_ids`` and therefore never applies a template of its own.
- Rows are dropped, with a count in the result and the manifest, when the chosen response has no valid
  code (the RM would give it reward 0 anyway), when the rejected response has no valid code (it never
  reaches the RM at scoring time: shaping gives it 0), or when both codes are identical after
  extraction. A row whose two raw responses are the same text, a missing or non-string field, bad JSON,
  or a file with no usable pair raise ``InputError`` naming file, line and field.
- Loss: TRL's Bradley–Terry loss ``-log σ(r_c - r_r - margin)``; the margin column is sent only when
  ``margin_scale > 0`` (then ``margin = margin_scale * row margin``), so the default is the paper's plain
  loss. ``center_rewards_coefficient`` is TRL's. No hand-written training loop.
- Held-out validation: ``eval_pairs`` or a ``eval_fraction`` of the PROMPTS (split by ``task_id``, or
  by prompt text, so no problem is on both sides), evaluated during training with
  ``pairwise_accuracy`` (ties count half).
- Output: a standard HF folder (full weights, or for LoRA the peft adapter with the score head saved
  through ``modules_to_save``; ``merge=True`` saves merged full weights) + tokenizer + ``codescaler.json``
  (``RMMetadata`` with score statistics and a manifest). Trainer checkpoints go to
  ``output/checkpoint-N``; ``resume=True`` continues from the last one.
- Multi-GPU/multi-process: run the same command under ``accelerate launch``; only process 0 writes the
  metadata and computes the statistics.

This module is the run itself (``train_reward_model``; ``run_training`` is ``codescaler train``'s path:
checks, a ``RewardConfig`` from a ``TrainSchedule``, training, the model card). Its parts:
``training_settings`` (settings and result), ``training_pairs`` (reading, splitting, encoding, metrics),
``training_backbone`` (the starting model, LoRA), ``training_checkpoint`` (saving, statistics, versions).
Their public names are re-exported here.
"""

from __future__ import annotations

import logging
import math
import random
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from codescaler.data import file_sha256
from codescaler.errors import InputError
from codescaler.extras import require
from codescaler.rm_checkpoint import METADATA_FILE, write_metadata
from codescaler.training_backbone import (
    DEFAULT_MAX_LENGTH,
    is_peft,
    load_backbone,
    load_warm_start,
    lora_config,
)
from codescaler.training_checkpoint import (
    save_model,
    score_statistics,
    settings_record,
    trainer_settings,
    versions,
)
from codescaler.training_pairs import (
    PairCounts,
    chosen_minus_rejected,
    encode_pairs,
    pairwise_metrics,
    read_pairs,
    split_heldout,
)
from codescaler.training_settings import TrainResult, TrainSchedule, TrainSettings

__all__ = ["DEFAULT_MAX_LENGTH", "PairCounts", "TrainResult", "TrainSchedule", "TrainSettings", "chosen_minus_rejected",
           "encode_pairs", "load_backbone", "load_warm_start", "pairwise_metrics", "read_pairs", "reward_config",
           "run_training", "split_heldout", "train_reward_model", "versions"]

logger = logging.getLogger(__name__)


def train_reward_model(settings: TrainSettings, config: Any) -> TrainResult:
    """Train and save an RM. ``config`` is a ``trl.RewardConfig`` (its ``output_dir`` is replaced).

    Raises ``InputError`` for bad settings (``TrainSettings.validate``), pairs files, backbones or flags
    (``resume`` without a checkpoint).
    """
    require("train", "trl", "datasets", "accelerate")
    from transformers import set_seed
    from transformers.trainer_utils import get_last_checkpoint
    from trl import RewardTrainer

    settings.validate()
    started = time.monotonic()
    output = Path(settings.output)
    config.output_dir = str(output)
    config.max_length = None  # encode_rm_input already truncated with the keep-the-code rule
    config.remove_unused_columns = False
    resume_from = None
    if settings.resume:
        resume_from = get_last_checkpoint(str(output)) if output.is_dir() else None
        if resume_from is None:
            raise InputError(f"--resume: no checkpoint-N folder in {output}", path=str(output),
                             fix="drop --resume to start a new run")
    examples, counts = read_pairs(settings.pairs, settings.extract_mode)
    eval_counts = None
    if settings.eval_pairs is not None:
        train_examples = examples
        held_examples, eval_counts = read_pairs(settings.eval_pairs, settings.extract_mode)
    else:
        train_examples, held_examples = split_heldout(examples, settings.eval_fraction, config.seed)
    if 0 < settings.eval_max_pairs < len(held_examples):
        held_examples = random.Random(config.seed).sample(held_examples, settings.eval_max_pairs)
    set_seed(config.seed)  # before loading: the fresh score head is random
    warm_start: dict[str, Any] | None = None
    if settings.init_from:
        model, tokenizer, meta, settings, warm_start = load_warm_start(settings)
    else:
        model, tokenizer, meta = load_backbone(settings.model, settings)
    train_ds = encode_pairs(train_examples, tokenizer, meta, settings.margin_scale)
    eval_ds = encode_pairs(held_examples, tokenizer, meta, settings.margin_scale) if held_examples else None
    if eval_ds is None:
        config.eval_strategy = "no"
        logger.warning("no held-out pairs (a single problem?): training without validation")
    trainer = RewardTrainer(
        model=model, args=config, train_dataset=train_ds, eval_dataset=eval_ds, processing_class=tokenizer,
        compute_metrics=pairwise_metrics, preprocess_logits_for_metrics=chosen_minus_rejected,
        peft_config=lora_config(settings, model) if settings.lora and not is_peft(model) else None,
    )
    train_output = trainer.train(resume_from_checkpoint=resume_from)
    heldout = trainer.evaluate() if eval_ds is not None else {}
    save_model(trainer, output, settings)
    if not trainer.is_world_process_zero():
        return TrainResult(output, None, heldout)
    write_metadata(output, meta)  # the Scorer below must read the real input format and max_length
    stats = score_statistics(output, train_examples, settings.stats_pairs, config.seed)
    manifest = {
        "data": {
            "pairs": str(settings.pairs), "pairs_sha256": file_sha256(settings.pairs), "counts": asdict(counts),
            "eval_pairs": str(settings.eval_pairs) if settings.eval_pairs else None,
            "eval_pairs_sha256": file_sha256(settings.eval_pairs) if settings.eval_pairs else None,
            "eval_counts": asdict(eval_counts) if eval_counts else None,
            "train_pairs": len(train_examples), "heldout_pairs": len(held_examples),
            "heldout_problems": len({ex.group for ex in held_examples}),
        },
        "settings": {**settings_record(asdict(settings)), "trainer": trainer_settings(config)},
        "heldout": {k: v for k, v in heldout.items() if isinstance(v, int | float)},
        "train": {"global_step": train_output.global_step, "train_loss": train_output.training_loss,
                  "seconds": round(time.monotonic() - started, 1), "world_size": config.world_size,
                  "resumed_from": resume_from, "init_from": warm_start},
        "score_statistics": stats,
        "versions": versions(),
        "reproduce": settings.command,
    }
    meta = replace(meta, score_mean=stats.get("mean"), score_std=stats.get("std"), manifest=manifest)
    write_metadata(output, meta)
    logger.info("saved reward model to %s (held-out accuracy %s)", output,
                heldout.get("eval_pairwise_accuracy", "n/a"))
    return TrainResult(output, meta, heldout)


def run_training(settings: TrainSettings, schedule: TrainSchedule) -> TrainResult:
    """``codescaler train`` (TRL path): check, build the ``RewardConfig``, train, write the model card.

    Raises ``InputError`` for bad settings or schedule, and when ``settings.output`` already holds a
    checkpoint (``codescaler.json`` or ``checkpoint-N``) while ``settings.resume`` is off. On processes
    other than 0 the result has no metadata and no card is written.
    """
    require("train", "trl", "datasets", "accelerate")  # one line naming the extra, before any work
    schedule.validate()
    settings.validate()
    output = Path(settings.output)
    existing = output.is_dir() and ((output / METADATA_FILE).exists() or any(output.glob("checkpoint-*")))
    if existing and not settings.resume:
        raise InputError(f"{output} already holds a checkpoint", path=str(output),
                         fix="pass --resume to continue it, or choose a new --output-dir")
    result = train_reward_model(settings, reward_config(settings, schedule))
    if result.metadata is not None:
        from codescaler.model_card import write_model_card

        write_model_card(result.output, result.metadata)
    return result


def reward_config(settings: TrainSettings, schedule: TrainSchedule) -> Any:
    """TRL's ``RewardConfig`` for ``schedule``: "auto" resolved on this machine, cadence from the pair count.

    Evaluation and checkpoints come every ``schedule.eval_steps`` steps, else four times a run.
    """
    import torch
    from trl import RewardConfig

    cuda = torch.cuda.is_available()
    bf16 = schedule.bf16 == "on" or (schedule.bf16 == "auto" and cuda and torch.cuda.is_bf16_supported())
    checkpointing = schedule.gradient_checkpointing == "on" or (schedule.gradient_checkpointing == "auto" and cuda)
    # Step counts for eval/checkpoint cadence need the pair count; reading twice is cheap next to training.
    n_pairs = len(read_pairs(settings.pairs, settings.extract_mode)[0])
    lr = schedule.lr if schedule.lr is not None else (1e-4 if settings.lora else 2e-5)
    config = RewardConfig(
        output_dir=str(settings.output), learning_rate=lr, num_train_epochs=schedule.epochs,
        max_steps=schedule.max_steps, per_device_train_batch_size=schedule.batch_size,
        per_device_eval_batch_size=schedule.batch_size, gradient_accumulation_steps=schedule.grad_accum,
        seed=schedule.seed, bf16=bf16, gradient_checkpointing=checkpointing,
        center_rewards_coefficient=schedule.center_rewards_coefficient, report_to=list(schedule.report_to),
        save_total_limit=2, eval_strategy="steps", save_strategy="steps", warmup_steps=0,
        lr_scheduler_type="linear",
        # Without CUDA, say so: under torchrun/accelerate the processes then join a gloo (MULTI_CPU) group.
        use_cpu=not cuda,
    )
    per_epoch = max(1, math.ceil(n_pairs / (schedule.batch_size * schedule.grad_accum * max(1, config.world_size))))
    total = schedule.max_steps if schedule.max_steps > 0 else math.ceil(schedule.epochs * per_epoch)
    every = schedule.eval_steps or max(1, total // 4)
    config.eval_steps = config.save_steps = every
    config.logging_steps = max(1, min(10, every))
    return config
