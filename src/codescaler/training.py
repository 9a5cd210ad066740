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
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from codescaler.data import file_sha256
from codescaler.errors import InputError
from codescaler.extras import require
from codescaler.records import ExtractMode, Pair
from codescaler.rm_checkpoint import (
    METADATA_FILE,
    InputFormat,
    RMMetadata,
    adapter_base_model,
    encode_rm_input,
    read_metadata,
    write_metadata,
)

logger = logging.getLogger(__name__)

DEFAULT_MAX_LENGTH = 1024


@dataclass(frozen=True)
class TrainSettings:
    """Our settings (data, input format, LoRA, output). Optimisation settings live in TRL's RewardConfig."""

    pairs: Path
    output: Path
    model: str = "minilm"
    eval_pairs: Path | None = None
    eval_fraction: float = 0.1
    extract_mode: ExtractMode = ExtractMode.STRICT
    input_format: InputFormat | None = None   # None: chat_template when the tokenizer has one, else plain
    max_length: int | None = None              # None: the --init-from checkpoint's, else 1024
    margin_scale: float = 0.0
    lora: bool = False
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_layers: int = 0                       # >0: adapt only the last N transformer layers (cheaper backward)
    eval_max_pairs: int = 0                    # >0: a seeded sample of the held-out pairs (faster evaluation)
    merge: bool = False
    resume: bool = False
    init_from: str | None = None               # a codescaler RM checkpoint (or "default") to continue
    stats_pairs: int = 256                     # training pairs scored for score_mean/std (0: skip)
    command: str = ""                          # the command line, recorded in the manifest

    def validate(self) -> None:
        """Raise ``InputError`` naming the setting (as its CLI flag) and what is accepted."""
        checks = [
            ("--eval-fraction", 0.0 <= self.eval_fraction < 1.0, self.eval_fraction, "a number in [0, 1)"),
            ("--max-length", self.max_length is None or self.max_length > 0, self.max_length, "a positive integer"),
            ("--margin-scale", self.margin_scale >= 0.0, self.margin_scale, "a number >= 0"),
            ("--lora-r", self.lora_r > 0, self.lora_r, "a positive integer"),
            ("--lora-layers", self.lora_layers >= 0, self.lora_layers, "an integer >= 0"),
            ("--eval-max-pairs", self.eval_max_pairs >= 0, self.eval_max_pairs, "an integer >= 0"),
            ("--stats-pairs", self.stats_pairs >= 0, self.stats_pairs, "an integer >= 0"),
        ]
        for flag, ok, value, accepted in checks:
            if not ok:
                raise InputError(f"{flag} must be {accepted}, got {value!r}", field=flag)
        if self.lora_layers and not self.lora:
            raise InputError("--lora-layers needs --lora", field="--lora-layers")
        if self.merge and not self.lora:
            raise InputError("--merge needs --lora", field="--merge")


@dataclass
class PairCounts:
    """What happened to the rows of one pairs file."""

    rows: int = 0
    kept: int = 0
    dropped_chosen_no_code: int = 0
    dropped_rejected_no_code: int = 0
    dropped_identical_code: int = 0


@dataclass(frozen=True)
class TrainResult:
    output: Path
    metadata: RMMetadata | None           # None on processes other than 0
    heldout: dict[str, float] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------------
# Data


def read_pairs(path: Path, extract_mode: ExtractMode = ExtractMode.STRICT) -> tuple[list[Pair], PairCounts]:
    """Read and validate one pairs JSONL (``data.read_pairs``: ``InputError`` naming file:line and field
    on bad rows), then extract the code: the pairs returned hold programs (``is_code``), grouped by
    problem (``task_id``, else the prompt), with their line; dropped rows are counted."""
    from codescaler.data import read_pairs as read_pair_file
    from codescaler.extract import extract_code

    counts = PairCounts()
    examples: list[Pair] = []
    for pair in read_pair_file(path):
        counts.rows += 1
        chosen = extract_code(pair.chosen, language=pair.language, mode=extract_mode)
        rejected = extract_code(pair.rejected, language=pair.language, mode=extract_mode)
        if not chosen.valid or chosen.code is None:
            counts.dropped_chosen_no_code += 1
            continue
        if not rejected.valid or rejected.code is None:
            counts.dropped_rejected_no_code += 1
            continue
        if chosen.code.strip() == rejected.code.strip():
            counts.dropped_identical_code += 1
            continue
        examples.append(replace(pair, chosen=chosen.code, rejected=rejected.code, is_code=True))
    counts.kept = len(examples)
    if not examples:
        raise InputError(
            f"none of the {counts.rows} pairs is usable: {counts.dropped_chosen_no_code} chosen without valid "
            f"code, {counts.dropped_rejected_no_code} rejected without valid code, "
            f"{counts.dropped_identical_code} with identical code (extract mode {extract_mode.value})",
            path=str(path), fix="chosen and rejected must be responses with one fenced, parseable code block "
            "each, and different programs; try --extract-mode lenient")
    if counts.kept < counts.rows:
        logger.warning("%s: kept %d of %d pairs (%d chosen without code, %d rejected without code, "
                       "%d identical code)", path, counts.kept, counts.rows, counts.dropped_chosen_no_code,
                       counts.dropped_rejected_no_code, counts.dropped_identical_code)
    return examples, counts


def split_heldout(examples: list[Pair], fraction: float, seed: int
                  ) -> tuple[list[Pair], list[Pair]]:
    """Hold out ``fraction`` of the problems (groups), seeded; every group lands on one side only.

    With fewer than two groups nothing can be held out and everything is training data.
    """
    if not 0.0 <= fraction < 1.0:
        raise InputError(f"eval fraction must be in [0, 1), got {fraction}", field="eval_fraction")
    groups = sorted({ex.group for ex in examples})
    if fraction == 0.0 or len(groups) < 2:
        return examples, []
    random.Random(seed).shuffle(groups)
    n_held = min(len(groups) - 1, max(1, round(fraction * len(groups))))
    held = set(groups[:n_held])
    return [ex for ex in examples if ex.group not in held], [ex for ex in examples if ex.group in held]


def encode_pairs(examples: list[Pair], tokenizer: Any, meta: RMMetadata, margin_scale: float) -> Any:
    """A ``datasets.Dataset`` with ``chosen_ids``/``rejected_ids`` (and ``margin`` when scaled) for TRL."""
    from datasets import Dataset

    columns: dict[str, list[Any]] = {"chosen_ids": [], "rejected_ids": []}
    for ex in examples:
        columns["chosen_ids"].append(encode_rm_input(tokenizer, ex.prompt, ex.chosen, meta))
        columns["rejected_ids"].append(encode_rm_input(tokenizer, ex.prompt, ex.rejected, meta))
    if margin_scale > 0:
        columns["margin"] = [margin_scale * ex.margin for ex in examples]
    return Dataset.from_dict(columns)


# --------------------------------------------------------------------------------------------------
# Metrics


def chosen_minus_rejected(logits: Any, labels: Any) -> Any:
    """``preprocess_logits_for_metrics``: a batch's logits are [chosen..., rejected...] -> differences."""
    import torch

    if isinstance(logits, tuple):
        logits = logits[0]
    rewards = logits.reshape(-1)
    chosen, rejected = torch.chunk(rewards, 2)
    return chosen - rejected


def pairwise_metrics(prediction: Any) -> dict[str, float]:
    """``compute_metrics``: accuracy with ties counting half, mean margin, over all held-out pairs."""
    import numpy as np

    diffs = np.asarray(prediction.predictions, dtype=np.float64).reshape(-1)
    if diffs.size == 0:
        return {}
    accuracy = float(np.mean(np.where(diffs > 0, 1.0, np.where(diffs == 0, 0.5, 0.0))))
    return {"pairwise_accuracy": accuracy, "mean_margin": float(diffs.mean()), "pairs": float(diffs.size)}


# --------------------------------------------------------------------------------------------------
# Model


def load_backbone(name: str, settings: TrainSettings) -> tuple[Any, Any, RMMetadata]:
    """Load ``name`` as a 1-label sequence classifier + tokenizer; decide the checkpoint metadata.

    A causal-LM checkpoint gets a fresh ``score`` head (as in TRL). Raises ``InputError`` when the model
    cannot be a 1-label sequence classifier, or when no pad token can be chosen safely.
    """
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from trl.trainer.reward_trainer import suppress_seqcls_warning

    from codescaler.models import resolve_model

    path = resolve_model(name)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as err:
        raise InputError(f"cannot load a tokenizer for {name!r}: {err}", field="model",
                         fix="pass an HF folder or hub id with a tokenizer") from None
    try:
        with suppress_seqcls_warning():
            model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1, dtype=torch.float32)
    except (OSError, ValueError, RuntimeError, KeyError) as err:
        first = str(err).strip().split("\n")[0][:300]
        raise InputError(f"{name!r} cannot be loaded as a sequence classifier with one label: {first}",
                         field="model", fix="use a reward model or a causal LM / encoder backbone that "
                         "AutoModelForSequenceClassification supports (num_labels=1)") from None
    if getattr(model.config, "num_labels", None) != 1:
        raise InputError(f"{name!r} has num_labels={model.config.num_labels}, a reward model needs 1",
                         field="model", fix="use a backbone without a classification head, or a 1-label RM")
    if tokenizer.eos_token is None:
        # BERT-style tokenizers have no EOS; TRL and the plain format append one: [SEP] ends a BERT input.
        if tokenizer.sep_token is None:
            raise InputError(f"{name!r}: the tokenizer has neither an EOS nor a SEP token", field="model")
        tokenizer.eos_token = tokenizer.sep_token
    _choose_pad_token(tokenizer, name)
    model.config.pad_token_id = tokenizer.pad_token_id
    fmt = settings.input_format
    if fmt is None:
        fmt = InputFormat.CHAT_TEMPLATE if getattr(tokenizer, "chat_template", None) else InputFormat.PLAIN
    if fmt is InputFormat.CHAT_TEMPLATE and not getattr(tokenizer, "chat_template", None):
        raise InputError(f"{name!r}: the tokenizer has no chat template", field="input_format",
                         fix="use --input-format plain")
    max_length = settings.max_length or DEFAULT_MAX_LENGTH
    positions = getattr(model.config, "max_position_embeddings", None)
    if isinstance(positions, int) and max_length > positions:
        logger.warning("max_length %d exceeds the model's %d positions; using %d", max_length, positions, positions)
        max_length = positions
    # A LoRA checkpoint names its base: keep short names and hub ids, make local paths absolute.
    local = Path(name).expanduser()
    base = str(local.resolve()) if local.exists() else name
    adapter = settings.lora and not settings.merge
    meta = RMMetadata(input_format=fmt, max_length=max_length, extract_mode=settings.extract_mode,
                      backbone=base, lora=adapter, base_model=base if adapter else None)
    return model, tokenizer, meta


def _choose_pad_token(tokenizer: Any, name: str) -> None:
    """Pick a pad token that is never an input's last token.

    HF sequence classifiers read the score at the last token that is not ``pad_token_id``; the Scorer
    reads it at the last real token. They agree only if the pad id never ends an input, and every input
    ends with EOS (plain) or the template's closing tokens. So pad must differ from EOS.
    """
    if tokenizer.pad_token is not None and tokenizer.pad_token_id != tokenizer.eos_token_id:
        return
    for candidate in (tokenizer.unk_token, tokenizer.bos_token, "<|endoftext|>", "<|finetune_right_pad_id|>"):
        if candidate and candidate in tokenizer.get_vocab() and candidate != tokenizer.eos_token:
            logger.info("%s: using %r as the pad token (it must differ from EOS %r)", name, candidate,
                        tokenizer.eos_token)
            tokenizer.pad_token = candidate
            return
    raise InputError(f"{name!r}: the pad token is missing or equal to EOS and no other special token can pad",
                     field="model", fix="save the tokenizer with a pad token different from EOS")


def load_warm_start(settings: TrainSettings) -> tuple[Any, Any, RMMetadata, TrainSettings, dict[str, Any]]:
    """Load the RM named by ``settings.init_from`` to continue training it (a fresh optimizer and schedule).

    A LoRA checkpoint (the shipped default RM is one) is loaded on its base model with its adapter and
    score head trainable; the adapter's own shape (r, alpha, layers) is kept, so the result is again an
    adapter over the same base. A full-weight checkpoint loads like ``--backbone PATH``. The input format
    and, unless given, max length come from the checkpoint, so train and score time stay identical.
    Returns the model, tokenizer, metadata, the settings actually used, and provenance for the manifest.
    """
    from codescaler.scorer import resolve_checkpoint

    assert settings.init_from is not None
    path = Path(resolve_checkpoint(settings.init_from))
    if not (path / METADATA_FILE).is_file():
        raise InputError(f"--init-from {settings.init_from!r}: {path} has no {METADATA_FILE}, so its input format "
                         "is unknown", path=str(path), field="init_from",
                         fix="pass a checkpoint written by `codescaler train` (or `default`); to start from a "
                         "plain backbone use --backbone")
    init_meta = read_metadata(path)
    if settings.input_format is not None and settings.input_format is not init_meta.input_format:
        raise InputError(f"--init-from {settings.init_from!r} was trained with input format "
                         f"{init_meta.input_format.value!r}, not {settings.input_format.value!r}",
                         field="input_format", fix="drop --input-format")
    used = replace(settings, input_format=init_meta.input_format,
                   max_length=settings.max_length or init_meta.max_length)
    adapter = (path / "adapter_config.json").is_file()
    if adapter:
        base = adapter_base_model(path, init_meta)
        if settings.merge:
            raise InputError("--merge with an adapter --init-from is not supported", field="merge",
                             fix="train without --merge, then load the adapter with Scorer (it merges on load)")
        used = replace(used, lora=True)
        model, tokenizer, meta = load_backbone(base, used)
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(path), is_trainable=True)
    else:
        model, tokenizer, meta = load_backbone(str(path), used)
    previous = init_meta.manifest or {}
    weights = next((path / name for name in ("adapter_model.safetensors", "model.safetensors")
                    if (path / name).is_file()), None)
    provenance = {"checkpoint": settings.init_from, "path": str(path), "adapter": adapter,
                  "weights_sha256": file_sha256(weights) if weights else None,
                  "reproduce": previous.get("reproduce"),
                  "global_step": (previous.get("train") or {}).get("global_step"),
                  "pairs_sha256": (previous.get("data") or {}).get("pairs_sha256")}
    return model, tokenizer, meta, used, provenance


def _lora_config(settings: TrainSettings, model: Any) -> Any:
    from peft import LoraConfig, TaskType

    head = "score" if hasattr(model, "score") else "classifier"
    targets: Any = "all-linear"
    layers = None
    if settings.lora_layers > 0:
        # peft takes layers_to_transform only with explicit module names: every Linear but the head.
        import torch

        total = getattr(model.config, "num_hidden_layers", None)
        if not isinstance(total, int) or total <= 0:
            raise InputError("--lora-layers: the backbone does not say how many layers it has",
                             field="lora_layers", fix="drop --lora-layers")
        targets = sorted({name.rsplit(".", 1)[-1] for name, mod in model.named_modules()
                          if isinstance(mod, torch.nn.Linear) and not name.startswith(head)})
        layers = list(range(max(0, total - settings.lora_layers), total))
    return LoraConfig(task_type=TaskType.SEQ_CLS, r=settings.lora_r, lora_alpha=settings.lora_alpha,
                      lora_dropout=settings.lora_dropout, target_modules=targets, layers_to_transform=layers,
                      modules_to_save=[head])


# --------------------------------------------------------------------------------------------------
# Training


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
        peft_config=_lora_config(settings, model) if settings.lora and not _is_peft(model) else None,
    )
    train_output = trainer.train(resume_from_checkpoint=resume_from)
    heldout = trainer.evaluate() if eval_ds is not None else {}
    _save_model(trainer, output, settings)
    if not trainer.is_world_process_zero():
        return TrainResult(output, None, heldout)
    write_metadata(output, meta)  # the Scorer below must read the real input format and max_length
    stats = _score_statistics(output, train_examples, settings.stats_pairs, config.seed)
    manifest = {
        "data": {
            "pairs": str(settings.pairs), "pairs_sha256": file_sha256(settings.pairs), "counts": asdict(counts),
            "eval_pairs": str(settings.eval_pairs) if settings.eval_pairs else None,
            "eval_pairs_sha256": file_sha256(settings.eval_pairs) if settings.eval_pairs else None,
            "eval_counts": asdict(eval_counts) if eval_counts else None,
            "train_pairs": len(train_examples), "heldout_pairs": len(held_examples),
            "heldout_problems": len({ex.group for ex in held_examples}),
        },
        "settings": {**_jsonable(asdict(settings)), "trainer": _trainer_settings(config)},
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


def _is_peft(model: Any) -> bool:
    from peft import PeftModel

    return isinstance(model, PeftModel)


def _save_model(trainer: Any, output: Path, settings: TrainSettings) -> None:
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


def _score_statistics(output: Path, examples: list[Pair], limit: int, seed: int) -> dict[str, Any]:
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


def _trainer_settings(config: Any) -> dict[str, Any]:
    keys = ("learning_rate", "num_train_epochs", "max_steps", "per_device_train_batch_size",
            "gradient_accumulation_steps", "seed", "center_rewards_coefficient", "bf16", "lr_scheduler_type",
            "warmup_steps", "weight_decay", "gradient_checkpointing", "eval_steps", "save_steps")
    return {k: getattr(config, k, None) for k in keys}


def _jsonable(data: dict[str, Any]) -> dict[str, Any]:
    return {k: (str(v) if isinstance(v, Path) else v.value if hasattr(v, "value") else v) for k, v in data.items()}


def versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {}
    for name in ("codescaler", "torch", "transformers", "trl", "peft", "accelerate", "datasets"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = "missing"
    return out
