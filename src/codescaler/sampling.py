"""Sampling N candidate responses per problem from a policy (layer L2).

Two backends share one contract, ``Sampler.generate(messages, n, seed) -> list[str]``:

- ``HFSampler``: any Hugging Face causal LM with a chat template, batched generation with left padding
  on CPU or GPU (several problems share one ``generate`` call).
- ``OpenAISampler``: any OpenAI-compatible ``/v1/chat/completions`` endpoint (vLLM, TGI, llama.cpp ...).

``sample_candidates`` streams ``Candidate`` records and skips problems already complete, so the CLI can
append to a JSONL file and resume after a stop. Seeds are derived from (seed, task_id) of the first
problem of each generate() call, independent of visiting order; with one problem per call
(``batch_size <= n``) a resumed run draws exactly the samples of an uninterrupted one.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from codescaler.errors import InputError
from codescaler.records import Candidate, Language, Problem

logger = logging.getLogger(__name__)

DEFAULT_INSTRUCTION = (
    "Solve the following {language} programming problem. Write the complete solution in a single "
    "```{language} code block.\n\n{prompt}"
)


@dataclass(frozen=True)
class SamplingConfig:
    """How to sample: ``n`` responses per problem at ``temperature``/``top_p``."""

    n: int = 8
    temperature: float = 0.8
    top_p: float = 0.95
    max_new_tokens: int = 512
    batch_size: int = 16          # sequences per generate() call (HF backend)
    seed: int = 0
    instruction: str = DEFAULT_INSTRUCTION
    system_prompt: str | None = None


def build_messages(problem: Problem, config: SamplingConfig) -> list[dict[str, str]]:
    """The chat shown to the policy: an optional system turn and the problem as the user turn."""
    language = Language.parse(problem.language).value
    user = config.instruction.format(language=language, prompt=problem.prompt.strip())
    messages = []
    if config.system_prompt:
        messages.append({"role": "system", "content": config.system_prompt})
    messages.append({"role": "user", "content": user})
    return messages


def problem_seed(seed: int, task_id: str) -> int:
    """A per-problem seed that does not depend on the order problems are visited in."""
    digest = hashlib.sha256(f"{seed}:{task_id}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


class Sampler(Protocol):
    def generate_batch(
        self, conversations: Sequence[list[dict[str, str]]], n: int, seeds: Sequence[int]
    ) -> list[list[str]]:
        """n responses for each conversation."""
        ...


class HFSampler:
    """Batched sampling from a local Hugging Face causal LM (loaded once)."""

    def __init__(self, model: str, config: SamplingConfig, *, device: str | None = None,
                 dtype: str = "auto") -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.config = config
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        torch_dtype = _resolve_dtype(dtype, self.device)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(model)
            self.model = AutoModelForCausalLM.from_pretrained(model, dtype=torch_dtype)
        except OSError as err:
            raise InputError(
                f"cannot load causal LM {model!r}: {err}",
                fix="pass a local HF folder, a prepared short name (run `python -m codescaler.models "
                "prepare`), or --endpoint for an OpenAI-compatible server",
            ) from err
        if self.tokenizer.chat_template is None:
            raise InputError(f"model {model!r} has no chat template", fix="use an instruct/chat model")
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model.to(self.device).eval()  # type: ignore[arg-type]

    def generate_batch(
        self, conversations: Sequence[list[dict[str, str]]], n: int, seeds: Sequence[int]
    ) -> list[list[str]]:
        import torch

        texts = [
            self.tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=True)
            for c in conversations
        ]
        enc = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        enc = {k: v.to(self.device) for k, v in enc.items()}
        # One seed per generate() call: the first problem's, so the batch is reproducible as a unit.
        torch.manual_seed(seeds[0])
        with torch.inference_mode():
            out = self.model.generate(
                **enc,
                do_sample=self.config.temperature > 0,
                temperature=self.config.temperature if self.config.temperature > 0 else None,
                top_p=self.config.top_p if self.config.temperature > 0 else None,
                max_new_tokens=self.config.max_new_tokens,
                num_return_sequences=n,
                pad_token_id=self.tokenizer.pad_token_id,
            )
        prompt_len = enc["input_ids"].shape[1]
        decoded = self.tokenizer.batch_decode(out[:, prompt_len:], skip_special_tokens=True)
        return [decoded[i * n:(i + 1) * n] for i in range(len(conversations))]


class OpenAISampler:
    """Sampling from an OpenAI-compatible chat-completions endpoint (e.g. a vLLM server)."""

    def __init__(self, endpoint: str, model: str, config: SamplingConfig, *, api_key: str | None = None,
                 timeout: float = 600.0, retries: int = 3) -> None:
        import httpx

        self.url = endpoint.rstrip("/")
        if not self.url.endswith("/chat/completions"):
            self.url += "/v1/chat/completions" if not self.url.endswith("/v1") else "/chat/completions"
        self.model = model
        self.config = config
        self.retries = retries
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.client = httpx.Client(timeout=timeout, headers=headers)

    def generate_batch(
        self, conversations: Sequence[list[dict[str, str]]], n: int, seeds: Sequence[int]
    ) -> list[list[str]]:
        return [self._one(c, n, s) for c, s in zip(conversations, seeds, strict=True)]

    def _one(self, messages: list[dict[str, str]], n: int, seed: int) -> list[str]:
        import httpx

        body = {
            "model": self.model, "messages": messages, "n": n, "seed": seed,
            "temperature": self.config.temperature, "top_p": self.config.top_p,
            "max_tokens": self.config.max_new_tokens,
        }
        last: Exception | None = None
        for attempt in range(self.retries):
            try:
                resp = self.client.post(self.url, json=body)
                if resp.status_code >= 500:
                    raise httpx.HTTPStatusError("server error", request=resp.request, response=resp)
                if resp.status_code >= 400:
                    raise InputError(f"{self.url} answered {resp.status_code}: {resp.text[:300]}",
                                     fix="check --endpoint-model and the endpoint URL")
                choices = resp.json().get("choices")
                if not isinstance(choices, list) or len(choices) != n:
                    raise InputError(f"{self.url} returned {len(choices or [])} choices, expected {n}",
                                     fix="the server must support the `n` parameter")
                return [str(c.get("message", {}).get("content") or "") for c in choices]
            except (httpx.TransportError, httpx.HTTPStatusError) as err:
                last = err
                logger.warning("endpoint %s failed (attempt %d/%d): %s", self.url, attempt + 1,
                               self.retries, err)
                time.sleep(min(2 ** attempt, 10))
        raise InputError(f"endpoint {self.url} failed {self.retries} times: {last}",
                         fix="check the server is up; re-run the same command to resume")


def sample_candidates(
    problems: Iterable[Problem],
    sampler: Sampler,
    config: SamplingConfig,
    *,
    done: dict[str, int] | None = None,
) -> Iterator[list[Candidate]]:
    """Yield, per group of problems, the new candidates; problems with ``done[task_id] >= n`` are skipped.

    Candidate ids are ``s{index}`` (0-based), stable across resumed runs. A problem found partly done is
    sampled again in full and only the missing indices are yielded.
    """
    done = done or {}
    todo = [p for p in problems if done.get(p.task_id, 0) < config.n]
    per_call = max(1, config.batch_size // max(1, config.n))
    for start in range(0, len(todo), per_call):
        group = todo[start:start + per_call]
        conversations = [build_messages(p, config) for p in group]
        seeds = [problem_seed(config.seed, p.task_id) for p in group]
        responses = sampler.generate_batch(conversations, config.n, seeds)
        out: list[Candidate] = []
        for problem, texts in zip(group, responses, strict=True):
            have = done.get(problem.task_id, 0)
            for index, text in enumerate(texts):
                if index >= have:
                    out.append(Candidate(task_id=problem.task_id, candidate_id=f"s{index}", response=text))
        yield out


def _resolve_dtype(dtype: str, device: str) -> Any:
    import torch

    if dtype == "auto":
        # bf16 matmuls are ~3x faster than fp32 on recent CPUs (MODELS.md) and standard on GPUs.
        return torch.bfloat16
    try:
        return {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
                "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}[dtype]
    except KeyError:
        raise InputError(f"unknown dtype {dtype!r}", fix="use auto, float32, bfloat16 or float16") from None
