"""No-training baselines for pairwise RM benchmarks, as ``ScoreFn``s (layer L3).

- ``untrained_backbone``: the trained checkpoint's backbone loaded as a 1-label sequence classifier,
  scored through the same ``Scorer`` path and input format as the RM. For an LM or encoder backbone its
  ``score`` head is freshly initialised (random, seeded: ``seed``), so this measures what the backbone's
  features give before any preference training; for a backbone that is already an RM (e.g. Skywork)
  its own head is kept (the "base RM" baseline).
- ``LogProbScorer``: mean token log-probability of the code under a causal LM (default
  Qwen2.5-Coder-0.5B-Instruct), conditioned on the chat-formatted problem (user turn + generation
  prompt). bfloat16 by default (also on CPU: ~3x faster there, and ranking is what matters).
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

    from codescaler.models import resolve_model
    from codescaler.rm_checkpoint import read_metadata
    from codescaler.scorer import Scorer, pick_dtype, tokenizer_source

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
    target = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    chosen = pick_dtype(None, target, sum(p.numel() for p in model.parameters()))  # as the RM is scored
    return Scorer(model.to(device=target, dtype=chosen), tokenizer, meta, name=f"untrained:{backbone}",
                  batch_size=batch_size)


class LogProbScorer:
    """Mean log p(code token | chat-formatted problem, previous code tokens) under a causal LM."""

    def __init__(self, model: str = LOGPROB_MODEL, *, device: str | None = None, dtype: str = "bfloat16",
                 max_length: int = 2048, batch_size: int = 4) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from codescaler.models import resolve_model

        path = resolve_model(model)
        self.name = model
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        if not getattr(self.tokenizer, "chat_template", None):
            raise InputError(f"{model!r} has no chat template", field="model", fix="use an instruct model")
        torch_dtype = {"bfloat16": torch.bfloat16, "float32": torch.float32}[dtype]
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        net: Any = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype)
        self.model = net.to(self.device).eval()
        self.max_length = max_length
        self.batch_size = batch_size

    def _encode(self, prompt: str, code: str) -> tuple[list[int], int]:
        """(ids, number of context tokens); the context is cut from its head when too long."""
        messages = [{"role": "user", "content": prompt}]
        context = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        ctx = list(self.tokenizer(context, add_special_tokens=False)["input_ids"])
        body = list(self.tokenizer(code, add_special_tokens=False)["input_ids"]) or [self.tokenizer.eos_token_id]
        body = body[: max(self.max_length // 2, self.max_length - len(ctx))]
        ctx = ctx[-(self.max_length - len(body)):]
        return ctx + body, len(ctx)

    def score_codes(self, prompts: Sequence[str], codes: Sequence[str]) -> list[float]:
        import torch

        encoded = [self._encode(p, c) for p, c in zip(prompts, codes, strict=True)]
        order = sorted(range(len(encoded)), key=lambda k: len(encoded[k][0]), reverse=True)
        out = [0.0] * len(encoded)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        with torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                batch = order[start:start + self.batch_size]
                width = max(len(encoded[k][0]) for k in batch)
                ids = torch.full((len(batch), width), pad, dtype=torch.long)
                mask = torch.zeros((len(batch), width), dtype=torch.long)
                for row, k in enumerate(batch):
                    seq = encoded[k][0]
                    ids[row, : len(seq)] = torch.tensor(seq)
                    mask[row, : len(seq)] = 1
                logits = self.model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device)).logits
                logprobs = torch.log_softmax(logits[:, :-1].float(), dim=-1)
                token_lp = logprobs.gather(-1, ids[:, 1:].to(self.device).unsqueeze(-1)).squeeze(-1)
                for row, k in enumerate(batch):
                    seq, n_ctx = encoded[k]
                    # position t predicts token t+1: code tokens n_ctx..len-1 are predicted at n_ctx-1..len-2
                    out[k] = float(token_lp[row, n_ctx - 1: len(seq) - 1].mean())
        return out
