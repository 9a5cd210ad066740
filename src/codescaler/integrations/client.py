"""A reward-server client with the Scorer's ``score`` interface (layer L3).

``RemoteScorer(url).score(prompts, responses, languages)`` posts to ``<url>/score`` of a running
``codescaler serve`` and returns ``records.Score`` objects, so the framework adapters treat an in-process
Scorer and a server the same way. Requests are chunked to at most 1,024 items and under the server's
``max_items_per_request`` and ``max_body_bytes`` (read once from ``/info``); a 503 (queue full) is
retried after its Retry-After, a bounded number of times.
Any other failure raises ``RuntimeError`` naming the URL and the server's message: a reward that silently
became 0 would corrupt training.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

from codescaler.errors import InputError
from codescaler.records import Score

logger = logging.getLogger(__name__)

_DEFAULT_CHUNK = 256
# Requests stay well under the server's limits: the server feeds large requests to the model in chunks
# anyway, so a client gains nothing from sending more than this at once.
_MAX_CHUNK = 1024
_DEFAULT_BODY_BYTES = 64 * 1024 * 1024
# JSON bytes per text character, at worst: a control character escaped as \u00XX. Typical text is ~1.
_BYTES_PER_CHAR = 6


def plan_chunks(sizes: Sequence[int], max_items: int, max_chars: int) -> list[tuple[int, int]]:
    """[start, end) ranges over items of ``sizes`` characters: each at most ``max_items`` items and, where
    an item alone does not exceed it, ``max_chars`` characters (a larger item goes alone, and the
    server answers 413 naming it)."""
    chunks: list[tuple[int, int]] = []
    start, chars = 0, 0
    for i, size in enumerate(sizes):
        if i > start and (i - start >= max_items or chars + size > max_chars):
            chunks.append((start, i))
            start, chars = i, 0
        chars += size
    if start < len(sizes):
        chunks.append((start, len(sizes)))
    return chunks


class RemoteScorer:
    """Scores through ``codescaler serve`` at ``url`` (e.g. ``http://127.0.0.1:8000``)."""

    def __init__(self, url: str, *, timeout_s: float = 600.0, max_retries: int = 20) -> None:
        import httpx

        text = url.strip().rstrip("/")
        for suffix in ("/score", "/get_reward"):
            text = text.removesuffix(suffix)
        if not text.startswith(("http://", "https://")):
            raise InputError(f"reward server URL must start with http:// or https://, got {url!r}",
                             field="url", fix="e.g. http://127.0.0.1:8000")
        self.url = text
        self.max_retries = max_retries
        self._client = httpx.Client(base_url=text, timeout=timeout_s)
        self._info: dict[str, Any] | None = None

    @property
    def info(self) -> dict[str, Any]:
        """The server's ``/info`` (model, input format, shaping, limits), fetched once."""
        if self._info is None:
            self._info = self._request("GET", "/info")
        return self._info

    def close(self) -> None:
        self._client.close()

    def score(self, prompts: Sequence[str], responses: Sequence[str],
              languages: Sequence[str | None] | None = None) -> list[Score]:
        """One ``Score`` per response, in order (see ``Scorer.score``)."""
        if len(prompts) != len(responses):
            raise InputError(f"{len(prompts)} prompts but {len(responses)} responses",
                             fix="pass one prompt per response")
        langs = list(languages) if languages is not None else [None] * len(prompts)
        limits = self.info.get("limits", {})
        max_items = min(int(limits.get("max_items_per_request", _DEFAULT_CHUNK)) or _DEFAULT_CHUNK, _MAX_CHUNK)
        max_chars = int(limits.get("max_body_bytes", _DEFAULT_BODY_BYTES)) // _BYTES_PER_CHAR
        out: list[Score] = []
        for start, end in plan_chunks([len(p) + len(r) for p, r in zip(prompts, responses, strict=True)],
                                      max_items, max_chars):
            items = []
            for i in range(start, end):
                item: dict[str, Any] = {"prompt": prompts[i], "response": responses[i]}
                if langs[i] is not None:
                    item["language"] = langs[i]
                items.append(item)
            body = self._request("POST", "/score", json={"items": items})
            for reward, raw, valid in zip(body["rewards"], body["raw_scores"], body["valid"], strict=True):
                out.append(Score(raw_score=raw, valid=bool(valid), reward=float(reward)))
        return out

    def _request(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        import httpx

        for attempt in range(self.max_retries + 1):
            try:
                response = self._client.request(method, path, **kwargs)
            except httpx.TransportError as err:
                raise RuntimeError(f"reward server {self.url}{path} unreachable: {err}") from err
            if response.status_code == 503 and attempt < self.max_retries:
                wait = _retry_after(response.headers.get("retry-after"))
                logger.info("reward server busy (503); retrying in %.1f s", wait)
                time.sleep(wait)
                continue
            if response.status_code != 200:
                try:
                    message = response.json().get("error", response.text)
                except ValueError:
                    message = response.text[:500]
                raise RuntimeError(f"reward server {self.url}{path} answered {response.status_code}: {message}")
            data = response.json()
            if not isinstance(data, dict):
                raise RuntimeError(f"reward server {self.url}{path} returned {type(data).__name__}, not an object")
            return data
        raise RuntimeError(f"reward server {self.url}{path} stayed busy after {self.max_retries} retries")


def _retry_after(value: str | None) -> float:
    try:
        return min(max(float(value or 1.0), 0.05), 30.0)
    except ValueError:
        return 1.0
