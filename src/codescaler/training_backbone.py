"""The model a reward-model training run starts from: a backbone, or a codescaler RM to continue (layer L2).

- ``load_backbone``: any HF checkpoint as a 1-label sequence classifier + tokenizer (a causal LM gets a
  fresh ``score`` head, as in TRL), a pad token that can never end an input, and the ``RMMetadata``
  (input format, max length, extraction mode) that training and scoring will share.
- ``load_warm_start``: ``--init-from``: a codescaler checkpoint (full weights or a LoRA adapter on its
  base) with its own input format, plus provenance for the manifest.
- ``lora_config``: the peft ``LoraConfig`` for ``--lora`` (optionally only the last N layers).
Failures to load or to fit the contract raise ``InputError``.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

from codescaler.data import file_sha256
from codescaler.errors import InputError
from codescaler.rm_checkpoint import (
    METADATA_FILE,
    InputFormat,
    RMMetadata,
    adapter_base_model,
    read_metadata,
)
from codescaler.training_settings import TrainSettings

logger = logging.getLogger(__name__)

DEFAULT_MAX_LENGTH = 1024


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


def lora_config(settings: TrainSettings, model: Any) -> Any:
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



def is_peft(model: Any) -> bool:
    from peft import PeftModel

    return isinstance(model, PeftModel)
