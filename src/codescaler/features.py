"""Backbone features of a (problem, code): one forward pass of a causal LM, read out several ways (L2).

The CPU design of the reward model (docs/reward_model.md): back-propagating through a 0.5B backbone
costs ~3.7 s per pair here, a forward pass a fraction of that and it is shared by every pair a program
is in. So the default RM is a small Bradley–Terry head (``codescaler.heads``) over the features below,
computed once per unique program and cached (``codescaler.feature_cache``).

Contract
--------
- Input: the RM input of ``rm_checkpoint`` (same template and truncation as every other RM), with the
  code's token span from ``encode_rm_input_span``. Backbones: causal LMs (``AutoModelForCausalLM``).
- Output: one float32 row per item, columns named by ``FeatureSpec.names()`` in this order:
  1. ``h{L}.{pool}.{i}`` for each layer L in ``layers`` (0 = embeddings, N = the last layer after the
     final norm) and each pool in ``pooling``: ``last`` = the sequence's last token (where a sequence
     classifier reads its score: it has seen the whole code and the end of turn), ``mean`` = the mean
     over the code tokens;
  2. with ``likelihood``: statistics of log p(code token | problem, previous code) under the same LM
     (its head is the tied embedding, already loaded): mean, min, 5% / 25% / 50% quantiles, sum, mean
     entropy of the predictive distribution, fraction of tokens with log-prob below -3, log(1 + tokens);
  3. with ``without_problem``: the same code's mean and summed log-prob with an empty problem, and the
     differences (how much the problem explains the code); a second, cheap pass (one shared prefix);
  4. with ``facts``: log(1 + characters), log(1 + lines), whether it parses as Python (1/0; -1 for
     other languages is not needed: the Scorer only sees extracted code of one language per item);
  5. with ``rm_scores``: the raw score of each named RM checkpoint (``rm:{name}``), by that checkpoint's
     own ``Scorer`` (its own forward pass), loaded on first use and refused when its weight files'
     sha256 is not the spec's (a head stacked on other weights would be miscalibrated).
- Log-probs are computed at code positions only, in chunks of ``LOGIT_CHUNK`` positions, never a
  full-vocabulary softmax over the whole sequence (the problem's tokens never reach the LM head).
- Prefix sharing and length bucketing come from ``codescaler.batching``; the shared prefix always
  stops before the position that predicts the first code token, so every code-dependent quantity is
  computed in the continuation and the result equals the unshared computation (tests check it).

``FeatureSpec`` and the column-name constants live in ``feature_spec``; finding, hashing and loading the
backbone in ``feature_backbone``. Their public names are re-exported here.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from codescaler.batching import plan_batches
from codescaler.errors import InputError
from codescaler.feature_backbone import backbone_folder, load_backbone, weights_sha256
from codescaler.feature_spec import (
    FACT_NAMES,
    LIKELIHOOD_NAMES,
    POOLINGS,
    SPEC_VERSION,
    WITHOUT_PROBLEM_NAMES,
    FeatureSpec,
)
from codescaler.rm_checkpoint import InputFormat, RMMetadata, encode_rm_input_span, rm_input_length

__all__ = ["FACT_NAMES", "LIKELIHOOD_NAMES", "LOGIT_CHUNK", "POOLINGS", "SPEC_VERSION", "WITHOUT_PROBLEM_NAMES",
           "FeatureExtractor", "FeatureSpec", "backbone_folder", "code_facts", "load_backbone", "load_stacked_rm",
           "weights_sha256"]

logger = logging.getLogger(__name__)

LOGIT_CHUNK = 256


class FeatureExtractor:
    """A loaded causal LM that turns (problem, code) into feature rows (module contract)."""

    def __init__(self, model: Any, tokenizer: Any, spec: FeatureSpec, *, batch_size: int = 8,
                 prefix_sharing: bool = True) -> None:
        import inspect

        self.model = model.eval()
        self.tokenizer = tokenizer
        self.backbone = model.get_decoder() if hasattr(model, "get_decoder") else model.model
        n_layers = int(model.config.num_hidden_layers)
        if spec.deepest_layer > n_layers or min(spec.layers, default=0) < 0:
            raise InputError(f"layers {list(spec.layers)} outside 0..{n_layers} of {spec.backbone}",
                             field="features.layers", fix=f"use layers between 0 and {n_layers}")
        if int(model.config.hidden_size) != spec.hidden_size:
            raise InputError(f"{spec.backbone} has hidden size {model.config.hidden_size}, the spec says "
                             f"{spec.hidden_size}", field="features.hidden_size", fix="retrain the head")
        self.spec = spec
        self._prefix_key: tuple[int, ...] | None = None
        self._prefix_value: Any = None
        self.meta = RMMetadata(input_format=InputFormat(spec.input_format), max_length=spec.max_length)
        self.batch_size = batch_size
        self.prefix_sharing = prefix_sharing
        self.device = next(model.parameters()).device
        self.precision = str(next(model.parameters()).dtype).removeprefix("torch.")
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self._pad_id = int(pad) if pad is not None else 0
        self._cache_arg = "cache" if "cache" in inspect.signature(self.backbone.forward).parameters \
            else "past_key_values"
        # Without likelihood features nothing past the deepest requested layer is needed: stop there.
        self._stop = n_layers if spec.likelihood else max(spec.deepest_layer, 1)
        self._n_layers = n_layers
        self._rm_scorers: list[Any] | None = None

    def rm_scorers(self) -> list[Any]:
        """The stacked RMs of ``spec.rm_scores``, loaded once in the backbone's dtype (so ``--dtype`` reaches
        every member); each refused unless its weights are the spec's."""
        if self._rm_scorers is None:
            dtype = next(self.model.parameters()).dtype
            self._rm_scorers = [load_stacked_rm(name, sha, device=str(self.device), dtype=dtype,
                                                batch_size=self.batch_size)
                                for name, sha in zip(self.spec.rm_scores, self.spec.rm_scores_sha256, strict=True)]
        return self._rm_scorers

    @classmethod
    def load(cls, spec: FeatureSpec, *, device: str | None = None, dtype: Any = None, batch_size: int = 8,
             prefix_sharing: bool = True) -> FeatureExtractor:
        """Load ``spec.backbone`` (short name, folder or hub id) straight in its target dtype.

        Refuses weights whose hash differs from ``spec.backbone_sha256`` (another model's features).
        """
        model, tokenizer, _sha = load_backbone(spec.backbone, device=device, dtype=dtype,
                                               expect_sha256=spec.backbone_sha256 or None)
        return cls(model, tokenizer, spec, batch_size=batch_size, prefix_sharing=prefix_sharing)

    def fits(self, prompt: str, code: str) -> bool:
        """True when the (problem, code) input is not cut by the spec's max length: its rows are then the
        same under any larger max length (what lets best-of-N read the log-prob baseline off an RM's pass)."""
        return rm_input_length(self.tokenizer, prompt, code, self.meta) <= self.spec.max_length

    # ----------------------------------------------------------------------------------------------
    def compute(self, prompts: Sequence[str], codes: Sequence[str]) -> Any:
        """Feature rows (numpy float32, ``len(codes) x dim``) in input order."""
        import numpy as np

        out = np.zeros((len(codes), len(self.spec.names())), dtype=np.float32)
        for indices, rows in self.iter_compute(prompts, codes):
            out[indices] = rows
        return out

    def iter_compute(self, prompts: Sequence[str], codes: Sequence[str]) -> Iterator[tuple[list[int], Any]]:
        """Yield (input indices, rows) batch by batch; every index appears once. Identical items run once."""
        import numpy as np
        import torch

        if len(prompts) != len(codes):
            raise InputError(f"{len(prompts)} prompts but {len(codes)} codes", fix="pass one prompt per code")
        groups: dict[tuple[str, str], list[int]] = {}
        for i, key in enumerate(zip(prompts, codes, strict=True)):
            groups.setdefault(key, []).append(i)
        unique = list(groups)
        spans = [encode_rm_input_span(self.tokenizer, p, c, self.meta) for p, c in unique]
        encoded = [s[0] for s in spans]
        # The position predicting the first code token must be in the continuation: share < start - 1.
        limit = [max(0, s[1] - 1) for s in spans]
        plan = plan_batches([p for p, _ in unique], encoded, self.batch_size,
                            prefix_sharing=self.prefix_sharing, limit=limit)
        with torch.inference_mode():
            for batch in plan:
                rows = self._rows([spans[j] for j in batch.members], batch.prefix,
                                  [unique[j][1] for j in batch.members], [unique[j][0] for j in batch.members])
                indices = [i for j in batch.members for i in groups[unique[j]]]
                repeat = [len(groups[unique[j]]) for j in batch.members]
                yield indices, np.repeat(rows, repeat, axis=0)

    # ----------------------------------------------------------------------------------------------
    def _rows(self, spans: list[tuple[list[int], int, int]], prefix: int, codes: list[str],
              prompts: list[str]) -> Any:
        import numpy as np

        hidden, lik = self._run(spans, prefix=prefix, hidden=True)
        parts = [hidden]
        if self.spec.likelihood:
            parts.append(lik)
        if self.spec.without_problem:
            # The code again under an empty problem: a second, cheap pass (the template is one shared prefix).
            empty = [encode_rm_input_span(self.tokenizer, "", code, self.meta) for code in codes]
            alone = self._run(empty, prefix=_shared_prefix(empty), hidden=False)[1]
            parts.append(np.stack([alone[:, 0], alone[:, 5], lik[:, 0] - alone[:, 0], lik[:, 5] - alone[:, 5]],
                                  axis=1).astype(np.float32))
        if self.spec.facts:
            parts.append(np.array([code_facts(c) for c in codes], dtype=np.float32).reshape(len(codes), -1))
        for scorer in self.rm_scorers() if self.spec.rm_scores else []:
            parts.append(np.array(scorer.score_codes(prompts, codes), dtype=np.float32).reshape(len(codes), 1))
        return np.concatenate(parts, axis=1)

    def _run(self, spans: list[tuple[list[int], int, int]], *, prefix: int, hidden: bool) -> tuple[Any, Any]:
        """One forward over a batch (sharing ``prefix`` tokens) -> (hidden features, likelihood stats)."""
        import numpy as np
        import torch

        from codescaler.model_device import right_pad

        batch = [ids[prefix:] for ids, _, _ in spans]
        input_ids, mask = right_pad(batch, prefix, self._pad_id, self.device)
        kwargs: dict[str, Any] = {"use_cache": False}
        if prefix:
            cache = self._prefix_cache(spans[0][0][:prefix])
            cache.batch_repeat_interleave(len(batch))  # on a copy: the forward appends to it in place
            kwargs = {"use_cache": True, self._cache_arg: cache}
        states = self._layer_states(input_ids, mask, kwargs)
        feats = np.zeros((len(batch), 0), dtype=np.float32)
        if hidden:
            cols = []
            for layer in self.spec.layers:
                h = states[layer].float()
                for pool in self.spec.pooling:
                    cols.append(torch.stack([_pool(h[r], spans[r], prefix, pool) for r in range(len(batch))]))
            feats = torch.cat(cols, dim=1).cpu().numpy() if cols else feats
        lik = np.zeros((len(batch), len(LIKELIHOOD_NAMES)), dtype=np.float32)
        if self.spec.likelihood:
            last = states[self._n_layers]
            for r, (ids, start, end) in enumerate(spans):
                # position t-1 predicts token t; code tokens start..end-1, in continuation coordinates
                pos = torch.arange(start - 1, end - 1, device=self.device) - prefix
                targets = torch.tensor(ids[start:end], dtype=torch.long, device=self.device)
                lik[r] = _likelihood_stats(self._token_logprobs(last[r, pos], targets))
        return feats, lik

    def _layer_states(self, input_ids: Any, mask: Any, kwargs: dict[str, Any]) -> dict[int, Any]:
        """Hidden states by layer index (0 = embeddings, N = last layer after the final norm), only as
        deep as needed: the layers past ``self._stop`` are not run."""
        import torch

        wanted = set(self.spec.layers) | ({self._n_layers} if self.spec.likelihood else set())
        states: dict[int, Any] = {}
        handles = []
        layers = self.backbone.layers

        def keep(index: int) -> Any:
            def hook(_module: Any, _args: Any, output: Any) -> None:
                states[index] = output[0] if isinstance(output, tuple) else output
                if index >= self._stop and self._stop < self._n_layers:
                    raise _StopForward
            return hook

        for i in sorted(wanted):
            if 1 <= i <= len(layers) and not (i == self._n_layers and self._stop == self._n_layers):
                handles.append(layers[i - 1].register_forward_hook(keep(i)))
        try:
            out = self.backbone(input_ids=input_ids, attention_mask=mask, **kwargs)
            if self._n_layers in wanted:
                states[self._n_layers] = out.last_hidden_state
        except _StopForward:
            pass
        finally:
            for handle in handles:
                handle.remove()
        if 0 in wanted:
            states[0] = self.backbone.embed_tokens(input_ids)
        missing = wanted - set(states)
        if missing:
            raise RuntimeError(f"no hidden states captured for layers {sorted(missing)}")
        return {k: v for k, v in states.items() if isinstance(v, torch.Tensor)}

    def _prefix_cache(self, prefix: list[int]) -> Any:
        """A copy of the backbone's key/value cache after ``prefix``; the last prefix is kept, so the
        batches of one shared group run their prefix once."""
        import copy

        import torch

        key = tuple(prefix)
        if key != self._prefix_key:
            ids = torch.tensor([prefix], dtype=torch.long, device=self.device)
            out = self.backbone(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=True)
            cache = getattr(out, "cache", None)
            self._prefix_key, self._prefix_value = key, cache if cache is not None else out.past_key_values
        return copy.deepcopy(self._prefix_value)

    def _token_logprobs(self, hidden: Any, targets: Any) -> tuple[Any, Any]:
        """(log-prob of each target, entropy at each position), LM head applied in chunks."""
        import torch

        head = self.model.get_output_embeddings()
        lps, ents = [], []
        for s in range(0, hidden.shape[0], LOGIT_CHUNK):
            logits = head(hidden[s:s + LOGIT_CHUNK]).float()
            logp = torch.log_softmax(logits, dim=-1)
            lps.append(logp.gather(-1, targets[s:s + LOGIT_CHUNK, None])[:, 0])
            ents.append(-(logp.exp() * logp).sum(-1))
        if not lps:
            empty = torch.zeros(0)
            return empty, empty
        return torch.cat(lps), torch.cat(ents)


class _StopForward(Exception):
    """Raised from a layer hook to stop the forward pass once the deepest needed layer has run."""


def _pool(h: Any, span: tuple[list[int], int, int], prefix: int, pool: str) -> Any:
    ids, start, end = span
    if pool == "last":
        return h[len(ids) - 1 - prefix]
    lo, hi = max(start - prefix, 0), max(end - prefix, 0)
    return h[lo:hi].mean(dim=0) if hi > lo else h[len(ids) - 1 - prefix]


def _likelihood_stats(pair: tuple[Any, Any]) -> list[float]:
    """LIKELIHOOD_NAMES from per-token log-probs and entropies (zeros for empty code)."""
    import torch

    lp, ent = pair
    n = int(lp.numel())
    if n == 0:
        return [0.0] * len(LIKELIHOOD_NAMES)
    q = torch.quantile(lp.float(), torch.tensor([0.05, 0.25, 0.5]))
    return [float(lp.mean()), float(lp.min()), float(q[0]), float(q[1]), float(q[2]), float(lp.sum()),
            float(ent.mean()), float((lp < -3.0).float().mean()), math.log1p(n)]


def load_stacked_rm(name: str, sha256: str, *, device: str | None = None, dtype: Any = None,
                    batch_size: int = 8) -> Any:
    """A stacked RM's Scorer, refused with one line when its weight files are not the ones a head was fitted on."""
    from codescaler.feature_backbone import weights_sha256
    from codescaler.scorer import Scorer, resolve_checkpoint

    folder = resolve_checkpoint(name)
    if Path(folder).is_dir():
        found = weights_sha256(folder)
        if found != sha256:
            raise InputError(f"stacked RM {name!r} has weights {found[:12]}…, the head was fitted on "
                             f"{sha256[:12]}…", field="features.rm_scores_sha256",
                             fix="pass the checkpoint the head was stacked on, or refit the stack on this one")
    return Scorer.load(name, device=device, dtype=dtype, batch_size=batch_size)


def _shared_prefix(spans: list[tuple[list[int], int, int]]) -> int:
    """Shared prefix for the empty-problem pass: everything before the first code position."""
    from codescaler.batching import MIN_SHARED_PREFIX, common_prefix_length

    if len(spans) < 2:
        return 0
    length = common_prefix_length([s[0] for s in spans])
    length = min(length, min(len(s[0]) for s in spans) - 1, min(s[1] for s in spans) - 1)
    return length if length >= MIN_SHARED_PREFIX else 0


def code_facts(code: str) -> list[float]:
    """FACT_NAMES for one program (pure)."""
    from codescaler.python_source import parse_python

    return [math.log1p(len(code)), math.log1p(code.count("\n") + 1), 1.0 if parse_python(code) is not None else 0.0]
