"""Wire models of the reward server (layer L3): what /score and /get_reward accept and return.

Two request formats:

- ``POST /score`` (native): ``{"items": [{"prompt", "response", "language"?}, ...]}`` ->
  ``{"rewards", "raw_scores", "valid"}``, one entry per item, in order. ``prompt`` is the problem
  statement (plain text, no chat template); ``response`` the raw policy answer (code is extracted from it).
- ``POST /get_reward`` (OpenRLHF's remote reward model): ``{"query": [...], "prompts": [...]?,
  "labels": [...]?}`` where each query is the policy's prompt + response in the POLICY's chat template;
  returns ``{"rewards", "scores", "extra_logs"}``. Extra keys some OpenRLHF forks send (``metadata``,
  ``templates``...) are ignored.

Validation errors become HTTP 422 naming the field (``items.3.response``); limits on sizes are checked by
the app (HTTP 413), because they depend on the server's settings.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from codescaler.records import Language


class ScoreItem(BaseModel):
    """One (problem statement, policy response) to score; ``language`` None means Python."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    prompt: str
    response: str
    language: str | None = None

    @field_validator("language")
    @classmethod
    def _known_language(cls, value: str | None) -> str | None:
        if value is None:
            return None
        return Language.parse(value).value  # ValueError names the accepted values -> 422


class ScoreRequest(BaseModel):
    """Body of ``POST /score``."""

    model_config = ConfigDict(extra="ignore")

    items: list[ScoreItem]


class ScoreResponse(BaseModel):
    """``raw_scores[i]`` is None when item i has no valid code; its reward is then 0."""

    rewards: list[float]
    raw_scores: list[float | None]
    valid: list[bool]


class RewardRequest(BaseModel):
    """Body of ``POST /get_reward`` (OpenRLHF ``remote_rm_fn``: ``{"query", "prompts", "labels"}``)."""

    model_config = ConfigDict(extra="ignore")

    query: list[str]
    prompts: list[str] | None = None
    labels: list[Any] | None = None


class RewardResponse(BaseModel):
    """OpenRLHF reads ``rewards``; ``scores`` (used for dynamic filtering) equals ``rewards`` here.

    ``extra_logs`` holds one value per query for each key: ``valid`` (1.0/0.0) and ``raw_score`` (0.0
    where there is no valid code), which OpenRLHF can log.
    """

    rewards: list[float]
    scores: list[float]
    extra_logs: dict[str, list[float]] = Field(default_factory=dict)


class ErrorResponse(BaseModel):
    """Every 4xx/5xx body: ``error`` is one human-readable line; ``detail`` the per-field list (422)."""

    error: str
    detail: list[dict[str, Any]] | None = None
