"""Scorer: load a reward model once, score (problem, response) batches -> raw scores and rewards (L2).

The one extract -> format -> score -> shape path that best-of-N, RL integrations, the server and the
benchmarks share: ``iter_score``/``score_items`` take (problem, response-or-code) items in any order and
batch and run them through ``codescaler.scoring`` (``extract.item_program``, then this model, then
shaping), as ``bench.pairwise`` and ``codescaler.bon`` do. The input format, truncation, extraction mode and shaping come from the checkpoint's
``codescaler.json`` (``codescaler.rm_checkpoint``), so scoring matches training by construction.

Contract and decisions
----------------------
- Batching by length: items are tokenized, sorted by token count (longest first), cut into batches of
  ``batch_size``, padded within each batch only, and returned in input order. Identical (problem, code)
  pairs are scored once.
- Prefix sharing (decoder RMs, on by default): the candidates of one problem share their first tokens
  (chat template, problem statement, often a function signature). When at least two items of a call
  have the same problem and a common token prefix of at least ``batching.MIN_SHARED_PREFIX`` tokens, that prefix
  is run once and its key/value cache is reused for every continuation (batched, right-padded, the score
  read at each one's last real token). Causal attention makes this the same computation, so scores agree
  with the unshared path to float noise (< 1e-4 in float32; tests check it); it saves the prefix's
  compute on every candidate but the first, which is most of the work in best-of-N and GRPO groups.
  ``prefix_sharing=False`` turns it off; encoders (bidirectional attention) never use it.
- Padding is always done here, on the right, whatever the tokenizer's ``padding_side``; the raw score is
  ``logits[..., 0]`` at the last real token (decoder RMs with a ``score`` head: the head is applied to
  that token's hidden state; encoders: the model's own pooled logits). So scores do not depend on the
  padding side, the batch size or the input order beyond float noise (< 1e-3 in float32).
- ``dtype=None`` ("auto"): bfloat16 on CUDA when supported; on CPU bfloat16 only for models of at least
  100M parameters on CPUs with native bf16 (AVX512-BF16/AMX), where Qwen2.5-0.5B measured 1.3x (busy
  machine) to 2.9x (quiet) faster at ~5% score error; float32 otherwise (small models lose too much
  precision in bf16; see docs/reward_model.md). The score head of a decoder RM always runs in float32
  on the bf16 hidden state, so scores are not rounded to bf16 (which made near candidates tie).
- A response without valid code gets ``raw_score=None``, ``valid=False`` and reward 0 (shaping).
- Thread-safety: one Scorer is meant for one thread at a time (torch releases the GIL, but the
  tokenizer and batching state are not shared-safe); servers should serialise calls.

The dtype rule and right padding live in ``model_device`` (``pick_dtype``, ``right_pad``); finding a
checkpoint's metadata, tokenizer and sequence classifier in ``rm_loading``. Both are re-exported here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from codescaler import __version__
from codescaler.batching import plan_batches
from codescaler.errors import InputError
from codescaler.model_device import pick_dtype, right_pad, target_device
from codescaler.records import ExtractMode, Score, ScoreItem
from codescaler.rm_checkpoint import (
    METADATA_FILE,
    InputFormat,
    RMMetadata,
    adapter_base_model,
    default_metadata,
    encode_rm_input,
    read_metadata,
)
from codescaler.rm_loading import hub_metadata, load_sequence_classifier, tokenizer_source
from codescaler.scoring import gather, iter_item_scores

__all__ = ["DEFAULT_MODEL", "Scorer", "default_rm_path", "pick_dtype", "resolve_checkpoint", "right_pad",
           "tokenizer_source"]

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "default"


# Shipped checkpoints by short name (folders under src/codescaler/assets): the LoRA RM (the default), the
# feature-head RM, and the two stacked (docs/reward_model.md).
SHIPPED_RMS = {DEFAULT_MODEL: "default_rm", "feature-head": "feature_head_rm", "stacked": "stacked_rm"}


def default_rm_path(name: str = DEFAULT_MODEL) -> Path:
    """Where a shipped RM lives (``src/codescaler/assets/default_rm`` for ``default``)."""
    return Path(__file__).resolve().parent / "assets" / SHIPPED_RMS[name]


def resolve_checkpoint(model: str) -> str:
    """``default`` (or another shipped RM's short name, ``SHIPPED_RMS``) -> its folder; a short name,
    folder or hub id -> where it loads from."""
    from codescaler.models import check_hub_model, resolve_model

    if model in SHIPPED_RMS:
        path = default_rm_path(model)
        if not any((path / name).is_file() for name in ("config.json", "adapter_config.json", "codescaler.json")):
            raise InputError(
                f"the {model!r} reward model is not shipped in this build ({path} is missing)",
                field="model",
                fix="pass a trained checkpoint with --rm PATH (train one with `codescaler train`), "
                "or a hub reward model such as Skywork/Skywork-Reward-V2-Qwen3-0.6B",
            )
        return str(path)
    resolved = resolve_model(model)
    if not Path(resolved).exists():
        check_hub_model(resolved)  # a hub id: one clear line now rather than a traceback after retries
    return resolved


class Scorer:
    """A loaded reward model. Build with ``Scorer.load``; call ``score`` or ``score_codes``."""

    def __init__(self, model: Any, tokenizer: Any, meta: RMMetadata, *, name: str, batch_size: int = 16,
                 extract_mode: ExtractMode | str | None = None, max_length: int | None = None,
                 prefix_sharing: bool = True, features: tuple[Any, Any] | None = None) -> None:
        """``features``: (FeatureExtractor, Head) for a head checkpoint; ``model`` is then its causal LM."""
        import torch

        if batch_size < 1:
            raise InputError(f"batch_size must be >= 1, got {batch_size}", field="batch_size")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.meta = meta
        self.name = name
        self.batch_size = batch_size
        self.extract_mode = ExtractMode(extract_mode) if extract_mode is not None else meta.extract_mode
        self.max_length = max_length if max_length is not None else meta.max_length
        position_limit = getattr(model.config, "max_position_embeddings", None)
        if isinstance(position_limit, int) and self.max_length > position_limit:
            logger.warning("max_length %d exceeds the model's %d positions; using %d", self.max_length,
                           position_limit, position_limit)
            self.max_length = position_limit
        self.device = next(model.parameters()).device
        self._features = features
        # Called with (prompts, codes, feature rows) of every batch a head checkpoint scores: lets a caller
        # keep a feature (best-of-N's log-prob column) from the same forward pass.
        self.on_feature_rows: Callable[[list[str], list[str], Any], None] | None = None
        if features is not None:
            # A head was fitted on features of one exact input (the spec's max length): scoring with
            # another truncation would feed it rows from another distribution.
            self.max_length = features[0].spec.max_length
            features[0].batch_size = batch_size
            features[0].prefix_sharing = bool(prefix_sharing)
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self._pad_id = int(pad) if pad is not None else 0  # pads are masked out: any id works
        # Decoder RMs (Qwen, Llama, Skywork ...) expose `score` (a Linear over hidden states) and their
        # backbone under `base_model_prefix`: apply the head at the last real token ourselves, so the
        # result never depends on pad_token_id guessing (HF pools at the last non-pad *id*).
        head = getattr(model, "score", None) if features is None else None
        backbone = getattr(model, getattr(model, "base_model_prefix", ""), None)
        self._head = head if isinstance(head, torch.nn.Linear) and backbone is not None else None
        self._backbone = backbone if self._head is not None else None
        # Only causal decoders may reuse a prefix's cache: an encoder's prefix tokens attend to the suffix.
        self.prefix_sharing = bool(prefix_sharing) and (self._backbone is not None or features is not None) \
            and not getattr(model.config, "is_encoder_decoder", False)
        # transformers renamed `past_key_values` to `cache` (5.2x); use whichever this version takes.
        self._cache_arg = "past_key_values"
        if self._backbone is not None:
            import inspect

            if "cache" in inspect.signature(self._backbone.forward).parameters:
                self._cache_arg = "cache"
        if self._head is not None and self._head.weight.dtype != torch.float32:
            # The head is one small Linear: apply a float32 copy to the (bf16) hidden state, so a score is
            # not rounded to bf16's 8 bits (steps of 0.0625 at |score| ~ 10 turn close candidates into
            # ties that best-of-N then has to break at random).
            import copy

            self._head = copy.deepcopy(self._head).float()

    # ----------------------------------------------------------------------------------------------
    @classmethod
    def load(
        cls,
        model: str = DEFAULT_MODEL,
        *,
        device: str | None = None,
        dtype: str | Any | None = None,
        batch_size: int = 16,
        extract_mode: ExtractMode | str | None = None,
        max_length: int | None = None,
        input_format: InputFormat | str | None = None,
        prefix_sharing: bool = True,
    ) -> Scorer:
        """Load an RM: ``"default"`` (the shipped RM), a checkpoint folder, a short name or a hub id.

        ``device``: ``cuda`` when available, else ``cpu`` (None). ``dtype``: see the module docstring.
        ``extract_mode``/``max_length``: override the checkpoint's metadata. ``input_format``: only for
        models without ``codescaler.json`` (default: chat_template when the tokenizer has one).
        ``prefix_sharing``: reuse a problem's shared prefix across its candidates (module docstring).
        LoRA checkpoints (``adapter_config.json``) are loaded on their base model and merged.
        Raises ``InputError`` for a missing model, a bad option, or a format that contradicts the
        checkpoint's metadata.
        """
        from transformers import AutoTokenizer

        path = resolve_checkpoint(model)
        local = Path(path).is_dir()
        meta = None
        if local and (Path(path) / METADATA_FILE).is_file():
            meta = read_metadata(path)
        elif not local:
            meta = hub_metadata(path)
        if meta is not None and input_format is not None and InputFormat(input_format) != meta.input_format:
            raise InputError(f"{path} was trained with input format {meta.input_format.value!r}, not "
                             f"{input_format!r}", field="input_format", fix="drop --input-format")
        if meta is not None and meta.head is not None:
            return cls._load_head(path, meta, name=model, device=device, dtype=dtype, batch_size=batch_size,
                                  extract_mode=extract_mode, prefix_sharing=prefix_sharing)
        adapter = local and (Path(path) / "adapter_config.json").is_file()
        base = path
        if adapter:
            base = resolve_checkpoint(adapter_base_model(path, meta))
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_source(path, base))
        if meta is None:
            meta = default_metadata(tokenizer, model, input_format)
        target = target_device(device)
        # Load in float32 first: the dtype choice needs the parameter count, and a cast is cheap.
        net = load_sequence_classifier(base, quiet_missing_head=adapter)
        if adapter:
            from peft import PeftModel

            net = PeftModel.from_pretrained(net, path).merge_and_unload()
        n_params = sum(p.numel() for p in net.parameters())
        chosen = pick_dtype(dtype, target, n_params)
        net = net.to(device=target, dtype=chosen)
        if net.config.pad_token_id is None and tokenizer.pad_token_id is not None:
            net.config.pad_token_id = tokenizer.pad_token_id
        logger.info("loaded RM %s (%.1fM params, %s, %s, input %s)", model, n_params / 1e6, chosen, target,
                    meta.input_format.value)
        return cls(net, tokenizer, meta, name=model, batch_size=batch_size, extract_mode=extract_mode,
                   max_length=max_length, prefix_sharing=prefix_sharing)

    @classmethod
    def _load_head(cls, path: str, meta: RMMetadata, *, name: str, device: str | None, dtype: Any,
                   batch_size: int, extract_mode: ExtractMode | str | None, prefix_sharing: bool) -> Scorer:
        """A head checkpoint: the backbone as a causal LM straight in its dtype, features, the head."""
        from codescaler.features import FeatureExtractor, FeatureSpec
        from codescaler.heads import load_head

        assert meta.head is not None
        where = str(Path(path) / METADATA_FILE)
        spec = FeatureSpec.from_dict(meta.head["features"], path=where)
        head = load_head(path, meta.head)
        if head.columns != spec.names():
            raise InputError("the head's columns are not the features its spec computes", path=where,
                             field="head.features", fix="retrain the head with `codescaler train --head`")
        extractor = FeatureExtractor.load(spec, device=device, dtype=dtype, batch_size=batch_size,
                                          prefix_sharing=prefix_sharing)
        extractor.rm_scorers()  # stacked RMs load now (and a wrong one is refused now), not at the first score
        logger.info("loaded RM %s (%s head over %d features of %s, %s)", name, head.kind, len(head.columns),
                    spec.backbone, next(extractor.model.parameters()).dtype)
        return cls(extractor.model, extractor.tokenizer, meta, name=name, batch_size=batch_size,
                   extract_mode=extract_mode, prefix_sharing=prefix_sharing, features=(extractor, head))

    @property
    def feature_extractor(self) -> Any:
        """The ``FeatureExtractor`` of a head checkpoint (None for other RMs)."""
        return self._features[0] if self._features is not None else None

    @property
    def info(self) -> dict[str, Any]:
        """What produced the scores: model, input format, shaping, extraction, limits, versions."""
        return {
            "model": self.name,
            "backbone": self.meta.backbone,
            "input_format": self.meta.input_format.value,
            "shaping": self.meta.shaping.value,
            "extract_mode": self.extract_mode.value,
            "max_length": self.max_length,
            "dtype": str(next(self.model.parameters()).dtype).removeprefix("torch."),
            "device": str(self.device),
            "prefix_sharing": self.prefix_sharing,
            "head": (self.meta.head or {}).get("kind"),
            "codescaler_version": __version__,
            "checkpoint_codescaler_version": self.meta.codescaler_version,
        }

    # ----------------------------------------------------------------------------------------------
    def score(
        self, prompts: Sequence[str], responses: Sequence[str], languages: Sequence[str | None] | None = None
    ) -> list[Score]:
        """Extract code from each response, score it against its problem, shape the reward.

        ``languages``: one per response (None = Python). Returns one ``Score`` per response, in order;
        responses without valid code are not run through the model. Raises ``InputError`` for
        mismatched lengths or an unknown language.
        """
        if len(prompts) != len(responses):
            raise InputError(f"{len(prompts)} prompts but {len(responses)} responses", fix="pass one prompt per response")
        if languages is not None and len(languages) != len(responses):
            raise InputError(f"{len(languages)} languages but {len(responses)} responses", field="languages")
        langs = list(languages) if languages is not None else [None] * len(responses)
        return self.score_items([ScoreItem(p, r, lang) for p, r, lang in zip(prompts, responses, langs, strict=True)])

    def score_items(self, items: Sequence[ScoreItem], *, extract_mode: ExtractMode | str | None = None) -> list[Score]:
        """One ``Score`` per item, in order (``iter_score`` gathered)."""
        return gather(len(items), self.iter_score(items, extract_mode=extract_mode))

    def iter_score(self, items: Sequence[ScoreItem], *, extract_mode: ExtractMode | str | None = None
                   ) -> Iterator[tuple[list[int], list[Score]]]:
        """Score (problem, response-or-code) items: extract (``extract.item_program``, this scorer's mode
        unless ``extract_mode``), score the valid programs batch by batch, shape. Yields (item indices,
        Scores): first every item without valid code (no model work), then one group per model batch."""
        mode = ExtractMode(extract_mode) if extract_mode is not None else self.extract_mode
        return iter_item_scores(items, mode, self.iter_score_codes, self.meta.shaping)

    def score_codes(self, prompts: Sequence[str], codes: Sequence[str]) -> list[float]:
        """Raw RM scores for already-extracted code, in input order."""
        scores: list[float] = [0.0] * len(codes)
        for indices, values in self.iter_score_codes(prompts, codes):
            for i, value in zip(indices, values, strict=True):
                scores[i] = value
        return scores

    def iter_score_codes(
        self, prompts: Sequence[str], codes: Sequence[str]
    ) -> Iterator[tuple[list[int], list[float]]]:
        """Score batch by batch, longest first: yields (input indices, raw scores) per model batch.

        For progress reporting; every index appears exactly once over the whole iteration.
        """
        import torch

        if len(prompts) != len(codes):
            raise InputError(f"{len(prompts)} prompts but {len(codes)} codes", fix="pass one prompt per code")
        if self._features is not None:
            extractor, head = self._features
            for done, rows in extractor.iter_compute(prompts, codes):
                if self.on_feature_rows is not None:
                    self.on_feature_rows([prompts[i] for i in done], [codes[i] for i in done], rows)
                yield done, [float(v) for v in head.score(rows)]
            return
        # Identical (problem, code) pairs (common in GRPO groups) are encoded and scored once.
        groups: dict[tuple[str, str], list[int]] = {}
        for i, key in enumerate(zip(prompts, codes, strict=True)):
            groups.setdefault(key, []).append(i)
        unique = list(groups)
        encoded = [encode_rm_input(self.tokenizer, p, c, self.meta, self.max_length) for p, c in unique]
        plan = plan_batches([p for p, _ in unique], encoded, self.batch_size, prefix_sharing=self.prefix_sharing)
        cache: Any = None
        cached_prefix: list[int] | None = None
        with torch.inference_mode():
            for batch in plan:
                rows = [encoded[j] for j in batch.members]
                if batch.prefix:
                    prefix = rows[0][:batch.prefix]
                    if prefix != cached_prefix:  # the batches of one shared group run their prefix once
                        cache, cached_prefix = self._prefix_cache(prefix), prefix
                    values = self._forward([ids[batch.prefix:] for ids in rows], cache, batch.prefix)
                else:
                    values = self._forward(rows)
                indices: list[int] = []
                raws: list[float] = []
                for j, value in zip(batch.members, values, strict=True):
                    for i in groups[unique[j]]:
                        indices.append(i)
                        raws.append(value)
                yield indices, raws

    def _prefix_cache(self, prefix: list[int]) -> Any:
        """The backbone's key/value cache after ``prefix`` (batch of one)."""
        import torch

        assert self._backbone is not None
        ids = torch.tensor([prefix], dtype=torch.long, device=self.device)
        out = self._backbone(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=True)
        cache = getattr(out, "cache", None)
        return cache if cache is not None else out.past_key_values

    def _forward(self, batch: list[list[int]], prefix_cache: Any = None, prefix_length: int = 0) -> list[float]:
        """Right-pad one batch of token ids and return logits[..., 0] at each row's last real token.

        With ``prefix_cache`` (from ``_prefix_cache``, ``prefix_length`` tokens) the rows are
        continuations of that prefix: the cache is copied, repeated over the batch and attended to.
        """
        import copy

        import torch

        input_ids, mask = right_pad(batch, prefix_length, self._pad_id, self.device)
        if self._head is not None and self._backbone is not None:
            if prefix_cache is not None:
                cache = copy.deepcopy(prefix_cache)  # the forward appends to it in place
                cache.batch_repeat_interleave(len(batch))
                hidden = self._backbone(input_ids=input_ids, attention_mask=mask, use_cache=True,
                                        **{self._cache_arg: cache}).last_hidden_state
            else:
                hidden = self._backbone(input_ids=input_ids, attention_mask=mask, use_cache=False).last_hidden_state
            last = mask[:, prefix_length:].sum(dim=1) - 1
            logits = self._head(hidden[torch.arange(len(batch), device=self.device), last].float())
        else:
            logits = self.model(input_ids=input_ids, attention_mask=mask).logits
        return [float(v) for v in logits[:, 0].float().cpu()]
