"""No-training baselines for pairwise RM benchmarks, as ``ScoreFn``s (layer L3).

- ``untrained_backbone``: the trained checkpoint's backbone loaded as a 1-label sequence classifier,
  scored through the same ``Scorer`` path and input format as the RM. For an LM or encoder backbone its
  ``score`` head is freshly initialised (random, seeded: ``seed``), so this measures what the backbone's
  features give before any preference training; for a backbone that is already an RM (e.g. Skywork)
  its own head is kept (the "base RM" baseline).
- ``LogProbScorer``: mean token log-probability of the code under a causal LM (default
  Qwen2.5-Coder-0.5B-Instruct), conditioned on the chat-formatted problem (user turn + generation
  prompt): the ``lp_mean`` feature of ``codescaler.features``, in the Scorer's dtype rule.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from codescaler.errors import InputError

logger = logging.getLogger(__name__)

LOGPROB_MODEL = "qwen2.5-coder-0.5b-instruct"


def untrained_backbone(checkpoint: str, *, seed: int = 0, device: str | None = None, batch_size: int = 16) -> Any:
    """A ``Scorer`` over the checkpoint's backbone with the checkpoint's tokenizer and metadata."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from codescaler.model_device import pick_dtype, target_device
    from codescaler.models import resolve_model
    from codescaler.rm_checkpoint import read_metadata
    from codescaler.scorer import Scorer, tokenizer_source

    meta = read_metadata(checkpoint)
    backbone = meta.base_model or meta.backbone
    if not backbone:
        raise InputError(f"{checkpoint}: codescaler.json names no backbone", field="backbone",
                         fix="retrain with `codescaler train`, which records it")
    torch.manual_seed(seed)
    model = AutoModelForSequenceClassification.from_pretrained(resolve_model(backbone), num_labels=1,
                                                               dtype=torch.float32)
    # The RM's own tokenizer (eos/pad exactly as it was trained with), or its base's for an adapter.
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_source(checkpoint, resolve_model(backbone)))
    model.config.pad_token_id = tokenizer.pad_token_id
    target = target_device(device)
    chosen = pick_dtype(None, target, sum(p.numel() for p in model.parameters()))  # as the RM is scored
    return Scorer(model.to(device=target, dtype=chosen), tokenizer, meta, name=f"untrained:{backbone}",
                  batch_size=batch_size)


class LogProbScorer:
    """Mean log p(code token | chat-formatted problem, previous code tokens) under a causal LM.

    One home for the code's likelihood: this is the ``lp_mean`` feature of ``codescaler.features``
    (the RM input format, prefix sharing, the LM head applied at code positions only, in chunks), so
    the baseline, the feature heads and best-of-N's ``logprob`` strategy read the same number.
    """

    def __init__(self, model: str = LOGPROB_MODEL, *, device: str | None = None, dtype: str | None = None,
                 max_length: int = 2048, batch_size: int = 8) -> None:
        from codescaler.features import FeatureExtractor, FeatureSpec, load_backbone

        net, tokenizer, sha = load_backbone(model, device=device, dtype=dtype)
        if not getattr(tokenizer, "chat_template", None):
            raise InputError(f"{model!r} has no chat template", field="model", fix="use an instruct model")
        spec = FeatureSpec(backbone=model, backbone_sha256=sha, hidden_size=int(net.config.hidden_size),
                           max_length=max_length, layers=(), pooling=(), likelihood=True, facts=False)
        self.name = model
        self.extractor = FeatureExtractor(net, tokenizer, spec, batch_size=batch_size)
        self._column = spec.names().index("lp_mean")

    def score_codes(self, prompts: Sequence[str], codes: Sequence[str]) -> list[float]:
        rows = self.extractor.compute(list(prompts), list(codes))
        return [float(v) for v in rows[:, self._column]]
