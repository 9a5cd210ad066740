"""Sampling N candidate responses per problem from a policy (layer L2).

Two backends share one contract, ``Sampler.generate(messages, n, seed) -> list[str]``:

- ``HFSampler``: any Hugging Face causal LM with a chat template, batched generation with left padding
  on CPU or GPU (several problems share one ``generate`` call).
- ``OpenAISampler``: any OpenAI-compatible ``/v1/chat/completions`` endpoint (vLLM, SGLang, TGI,
  llama.cpp ...), with bounded concurrent requests and retries with backoff.

``sample_candidates`` streams ``Candidate`` records and skips problems already complete, so the CLI can
append to a JSONL file and resume after a stop. Seeds are derived from (seed, task_id) of the first
problem of each generate() call, independent of visiting order; with one problem per call
(``batch_size <= n``) a resumed run draws exactly the samples of an uninterrupted one.
"""

from __future__ import annotations

import hashlib
import logging
import math
import random
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from codescaler.errors import InputError
from codescaler.model_device import pick_dtype, target_device
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

    def validate(self) -> None:
        """Raise ``InputError`` naming the setting (as its ``codescaler sample`` flag); nothing is loaded."""
        for flag, value in (("--n", self.n), ("--max-new-tokens", self.max_new_tokens), ("--batch-size", self.batch_size)):
            if value < 1:
                raise InputError(f"{flag} must be >= 1, got {value}")
        if not (math.isfinite(self.temperature) and self.temperature >= 0):
            raise InputError(f"--temperature must be a finite number >= 0, got {self.temperature}",
                             fix="0 samples greedily")
        if not 0 < self.top_p <= 1:
            raise InputError(f"--top-p must be in (0, 1], got {self.top_p}")
        try:
            self.instruction.format(language="python", prompt="")
        except (KeyError, IndexError, ValueError) as err:
            raise InputError(f"the instruction template cannot be filled: {type(err).__name__}: {err}",
                             field="instruction", fix="use only the {language} and {prompt} placeholders "
                             "(double other braces: {{ }})") from None


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
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.config = config
        self.device = device or target_device().type
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
    """Sampling from an OpenAI-compatible chat-completions endpoint (vLLM, SGLang, TGI, llama.cpp ...).

    ``concurrency`` requests are in flight at once (one per conversation; a GPU server batches them),
    and ``sample_candidates`` hands this sampler ``problems_per_call`` conversations at a time. A request
    that fails with a connection error, a 5xx or a 429 is retried up to ``retries`` times in all, after
    ``backoff * 2**attempt`` seconds (capped at 30, with jitter; a numeric ``Retry-After`` header wins,
    capped at 60). Other 4xx answers and wrong choice counts raise ``InputError`` at once; so do
    ``retries`` failures of one request. Nothing is lost on failure: ``sample_candidates`` yields only
    completed calls, and the CLI appends each before the next begins.
    """

    def __init__(self, endpoint: str, model: str, config: SamplingConfig, *, api_key: str | None = None,
                 timeout: float = 600.0, retries: int = 5, concurrency: int = 8, backoff: float = 1.0) -> None:
        import httpx

        if concurrency < 1:
            raise InputError(f"concurrency must be >= 1, got {concurrency}", field="concurrency")
        self.url = endpoint.rstrip("/")
        if not self.url.endswith("/chat/completions"):
            self.url += "/v1/chat/completions" if not self.url.endswith("/v1") else "/chat/completions"
        self.model = model
        self.config = config
        self.retries = max(1, retries)
        self.concurrency = concurrency
        self.backoff = backoff
        # Two rounds of requests per call: the pool stays busy while the slowest request of a call ends.
        self.problems_per_call = 2 * concurrency
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        self.client = httpx.Client(timeout=timeout, headers=headers, limits=limits)

    def generate_batch(
        self, conversations: Sequence[list[dict[str, str]]], n: int, seeds: Sequence[int]
    ) -> list[list[str]]:
        if len(conversations) <= 1 or self.concurrency == 1:
            return [self._one(c, n, s) for c, s in zip(conversations, seeds, strict=True)]
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(conversations)),
                                thread_name_prefix="codescaler-sample") as pool:
            return list(pool.map(self._one, conversations, [n] * len(conversations), seeds))

    def _one(self, messages: list[dict[str, str]], n: int, seed: int) -> list[str]:
        import httpx

        body = {
            "model": self.model, "messages": messages, "n": n, "seed": seed,
            "temperature": self.config.temperature, "top_p": self.config.top_p,
            "max_tokens": self.config.max_new_tokens,
        }
        last: Exception | None = None
        for attempt in range(self.retries):
            retry_after: float | None = None
            try:
                resp = self.client.post(self.url, json=body)
                if resp.status_code >= 500 or resp.status_code == 429:
                    retry_after = _retry_after(resp.headers.get("Retry-After"))
                    raise httpx.HTTPStatusError(f"{resp.status_code} {resp.reason_phrase}", request=resp.request,
                                                response=resp)
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
                if attempt + 1 == self.retries:
                    break
                delay = retry_after if retry_after is not None else (
                    min(self.backoff * 2 ** attempt, 30.0) * (0.5 + random.random() / 2))
                logger.warning("endpoint %s failed (attempt %d/%d): %s; retrying in %.1f s", self.url,
                               attempt + 1, self.retries, err or type(err).__name__, delay)
                time.sleep(delay)
        raise InputError(f"endpoint {self.url} failed {self.retries} times: {last or type(last).__name__}",
                         fix="check the server is up; re-run the same command to resume")


def _retry_after(value: str | None) -> float | None:
    """A numeric ``Retry-After`` header in seconds (capped at 60); None for none or an HTTP date."""
    try:
        return min(max(float(value), 0.0), 60.0) if value is not None else None
    except ValueError:
        return None


def sample_candidates(
    problems: Iterable[Problem],
    sampler: Sampler,
    config: SamplingConfig,
    *,
    done: dict[str, int] | None = None,
) -> Iterator[list[Candidate]]:
    """Yield, per group of problems, the new candidates; problems with ``done[task_id] >= n`` are skipped.

    Candidate ids are ``s{index}`` (0-based), stable across resumed runs. A problem found partly done is
    sampled again in full and only the missing indices are yielded. Bad ``config`` values raise
    ``InputError`` (``SamplingConfig.validate``) at the first ``next()``.
    """
    config.validate()
    done = done or {}
    todo = [p for p in problems if done.get(p.task_id, 0) < config.n]
    # A sampler may say how many conversations it takes at a time (an endpoint: its request pool);
    # a local model takes ``batch_size`` sequences per generate() call.
    per_call = getattr(sampler, "problems_per_call", None) or max(1, config.batch_size // max(1, config.n))
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
    return pick_dtype(dtype, torch.device(device), 0)  # an explicit name (InputError for an unknown one)
