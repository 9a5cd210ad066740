"""A reward-server client with the Scorer's ``score`` interface (layer L3).

``RemoteScorer(url).score(prompts, responses, languages)`` posts to ``<url>/score`` of a running
``codescaler serve`` and returns ``records.Score`` objects, so the framework adapters treat an in-process
Scorer and a server the same way. Requests are chunked to the server's ``max_items_per_request`` (read
once from ``/info``); a 503 (queue full) is retried after its Retry-After, a bounded number of times.
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
        chunk = int(limits.get("max_items_per_request", _DEFAULT_CHUNK)) or _DEFAULT_CHUNK
        out: list[Score] = []
        for start in range(0, len(prompts), chunk):
            items = []
            for i in range(start, min(start + chunk, len(prompts))):
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
