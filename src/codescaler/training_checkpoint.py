"""Writing a trained reward model: weights and tokenizer, score statistics, versions (layer L2).

``save_model`` writes what the Trainer holds (full weights, a LoRA adapter with its score head, or merged
weights); ``score_statistics`` scores a sample of the training pairs with the SAVED checkpoint through the
Scorer (so the statistics describe exactly what users load); ``trainer_settings``, ``settings_record``
and ``versions`` are the manifest's parts that say how the checkpoint was made.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from codescaler.records import Pair
from codescaler.training_settings import TrainSettings


def save_model(trainer: Any, output: Path, settings: TrainSettings) -> None:
    """Save the trained model and tokenizer to ``output`` (process 0 writes; every process must call it)."""
    if settings.lora and settings.merge:
        merged = trainer.accelerator.unwrap_model(trainer.model).merge_and_unload()
        if trainer.is_world_process_zero():
            merged.save_pretrained(output)
            trainer.processing_class.save_pretrained(output)
        trainer.accelerator.wait_for_everyone()
        return
    trainer.save_model(str(output))  # process 0 writes; for LoRA: adapter + modules_to_save (score head)
    if trainer.is_world_process_zero():
        trainer.processing_class.save_pretrained(output)


def score_statistics(output: Path, examples: list[Pair], limit: int, seed: int) -> dict[str, Any]:
    """Score a sample of training pairs with the SAVED checkpoint (the Scorer's exact path)."""
    if limit <= 0 or not examples:
        return {}
    import statistics

    from codescaler.scorer import Scorer

    sample = examples if len(examples) <= limit else random.Random(seed).sample(examples, limit)
    scorer = Scorer.load(str(output), dtype="float32")
    prompts = [ex.prompt for ex in sample]
    chosen = scorer.score_codes(prompts, [ex.chosen for ex in sample])
    rejected = scorer.score_codes(prompts, [ex.rejected for ex in sample])
    both = chosen + rejected
    wins = sum(1.0 if c > r else 0.5 if c == r else 0.0 for c, r in zip(chosen, rejected, strict=True))
    return {"mean": statistics.fmean(both), "std": statistics.pstdev(both), "pairs": len(sample),
            "chosen_mean": statistics.fmean(chosen), "rejected_mean": statistics.fmean(rejected),
            "train_pairwise_accuracy": wins / len(sample)}


def trainer_settings(config: Any) -> dict[str, Any]:
    """The ``RewardConfig`` fields a manifest records."""
    keys = ("learning_rate", "num_train_epochs", "max_steps", "per_device_train_batch_size",
            "gradient_accumulation_steps", "seed", "center_rewards_coefficient", "bf16", "lr_scheduler_type",
            "warmup_steps", "weight_decay", "gradient_checkpointing", "eval_steps", "save_steps")
    return {k: getattr(config, k, None) for k in keys}


def settings_record(data: dict[str, Any]) -> dict[str, Any]:
    """``asdict(settings)`` made JSON-safe: paths as text, enums as their values."""
    return {k: (str(v) if isinstance(v, Path) else v.value if hasattr(v, "value") else v) for k, v in data.items()}


def versions() -> dict[str, str]:
    """Installed versions of codescaler and the training stack (``missing`` when not installed)."""
    import importlib.metadata as md

    out = {}
    for name in ("codescaler", "torch", "transformers", "trl", "peft", "accelerate", "datasets"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = "missing"
    return out
