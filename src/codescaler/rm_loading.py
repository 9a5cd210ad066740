"""The parts of a reward-model checkpoint, found and loaded for the Scorer (layer L2).

``hub_metadata``: a hub model's ``codescaler.json`` (None when it has none or the hub is unreachable);
``tokenizer_source``: where a checkpoint's tokenizer lives; ``load_sequence_classifier``: the one-label
model in float32 (the Scorer then picks the dtype and merges a LoRA adapter).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from codescaler.rm_checkpoint import METADATA_FILE, RMMetadata, read_metadata

logger = logging.getLogger(__name__)


def hub_metadata(model_id: str) -> RMMetadata | None:
    """codescaler.json of a hub model, or None when it has none or the hub is unreachable."""
    try:
        from huggingface_hub import hf_hub_download

        local = hf_hub_download(model_id, METADATA_FILE)
    except Exception as err:  # offline, missing file, gated repo: all mean "no metadata"
        logger.debug("no %s for %s: %s", METADATA_FILE, model_id, err)
        return None
    return read_metadata(Path(local).parent)


def tokenizer_source(checkpoint: str, base: str) -> str:
    """Where a checkpoint's tokenizer lives: the checkpoint itself (a hub id, or a folder with tokenizer
    files), else its base model (a LoRA adapter folder such as the shipped default RM carries none)."""
    folder = Path(checkpoint)
    return checkpoint if not folder.is_dir() or (folder / "tokenizer_config.json").is_file() else base


def load_sequence_classifier(base: str, *, quiet_missing_head: bool) -> Any:
    """Load a one-label sequence classifier in float32. With an adapter the score head comes from the
    adapter, so transformers' "score.weight MISSING / newly initialized" report is noise: silence it."""
    import torch
    from transformers import AutoModelForSequenceClassification
    from transformers.utils import logging as hf_logging

    previous = hf_logging.get_verbosity()
    if quiet_missing_head:
        hf_logging.set_verbosity_error()
    try:
        return AutoModelForSequenceClassification.from_pretrained(base, num_labels=1, dtype=torch.float32)
    finally:
        hf_logging.set_verbosity(previous)
