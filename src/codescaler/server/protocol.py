"""Wire models of the reward server (layer L3): what /score and /get_reward accept and return.

Two request formats:

- ``POST /score`` (native): ``{"items": [{"prompt", "response", "language"?}, ...]}`` ->
  ``{"rewards", "raw_scores", "valid"}``, one entry per item, in order. ``prompt`` is the problem
  statement (plain text, no chat template); ``response`` the raw policy answer (code is extracted from it).
- ``POST /get_reward`` (OpenRLHF's remote reward model): ``{"query": [...], "prompts": [...]?,
  "labels": [...]?}`` where each query is the policy's prompt + response in the POLICY's chat template;
  returns ``{"rewards", "scores", "extra_logs"}``. Extra keys some OpenRLHF forks send (``metadata``,
  ``templates``...) are ignored.

Validation errors become HTTP 422 naming the field (``items.3.response``). Text is checked at this edge:
a string holding a lone surrogate (JSON ``"\\ud800"`` without its pair; not Unicode text, and the
tokenizer cannot take it) is refused with 422 naming its field, instead of failing inside the model batch
it would share with other clients. Limits on sizes are checked by the app (HTTP 413), because they depend
on the server's settings. ``decode_body`` turns a raw body into a request model (it runs off the event
loop, see ``app``).
"""

from __future__ import annotations

import json
from typing import Annotated, Any, TypeVar

from codescaler.extras import MissingExtra

try:
    from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator
except ModuleNotFoundError as err:  # installed without the [server] extra: one line naming it
    raise MissingExtra("server", err.name or "pydantic") from err

from codescaler.records import Language


def _unicode_text(value: str) -> str:
    if not value.isascii():  # O(1) for ASCII strings; the encode below is one linear pass otherwise
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as err:
            raise ValueError(
                f"text has a lone surrogate (U+{ord(value[err.start]):04X}) at character {err.start}; send "
                "valid Unicode (a \\ud800-\\udfff escape must be one half of a surrogate pair)") from None
    return value


Text = Annotated[str, AfterValidator(_unicode_text)]
"""A string that is valid Unicode text (encodable as UTF-8)."""


class ScoreItem(BaseModel):
    """One (problem statement, policy response) to score; ``language`` None means Python."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    prompt: Text
    response: Text
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

    query: list[Text]
    prompts: list[Text] | None = None
    labels: list[Any] | None = None   # ground truth; ignored (the RM is execution-free), so not checked


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


class BodyInvalid(Exception):
    """A body that is not JSON or does not fit the request model; ``errors`` as in ``ErrorResponse.detail``."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        self.errors = errors
        super().__init__(errors[0]["message"] if errors else "invalid request")


Model = TypeVar("Model", bound=BaseModel)


def decode_body(model: type[Model], body: bytes) -> Model:
    """Parse a JSON body (UTF-8, -16 or -32) into ``model``; raises ``BodyInvalid`` naming the field.

    Time and memory are linear in ``len(body)``: the caller bounds the body's size first."""
    try:
        data = json.loads(body)
    except RecursionError:
        raise BodyInvalid([{"field": "body", "message": "JSON nested too deeply", "type": "json_invalid"}]) from None
    except ValueError as err:  # JSONDecodeError, UnicodeDecodeError, an integer over the digit limit
        raise BodyInvalid([{"field": "body", "message": f"Invalid JSON: {err}", "type": "json_invalid"}]) from None
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise BodyInvalid([{"field": ".".join(str(p) for p in e["loc"]) or "body", "message": e["msg"],
                            "type": e["type"]} for e in err.errors(include_url=False)]) from None
