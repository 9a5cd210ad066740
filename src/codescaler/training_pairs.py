"""Preference pairs for reward-model training: read, validate, extract, hold out, encode, measure (layer L2).

- ``read_pairs``: a pairs JSONL -> pairs of extracted programs, grouped by problem; rows whose chosen or
  rejected response has no valid code, or whose two codes are identical, are dropped and counted
  (``PairCounts``); a file with no usable pair raises ``InputError``.
- ``split_heldout``: a seeded split by problem (``Pair.group``), so no problem is on both sides.
- ``encode_pairs``: ``chosen_ids``/``rejected_ids`` (+ ``margin``) for TRL, through
  ``rm_checkpoint.encode_rm_input`` (the Scorer's exact input).
- ``chosen_minus_rejected`` / ``pairwise_metrics``: the held-out evaluation hooks of the Trainer
  (pairwise accuracy with ties counting half).
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from codescaler.errors import InputError
from codescaler.records import ExtractMode, Pair
from codescaler.rm_checkpoint import RMMetadata, encode_rm_input

logger = logging.getLogger(__name__)


@dataclass
class PairCounts:
    """What happened to the rows of one pairs file."""

    rows: int = 0
    kept: int = 0
    dropped_chosen_no_code: int = 0
    dropped_rejected_no_code: int = 0
    dropped_identical_code: int = 0



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

