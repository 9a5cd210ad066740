"""Framework adapters (layer L3): thin shells around ONE scorer, in-process or behind the server.

- ``codescaler.integrations.trl``: ``CodeScalerReward``, a ``reward_funcs`` entry for TRL's GRPOTrainer.
- ``codescaler.integrations.verl``: ``compute_score`` / ``compute_score_batch`` for verl's
  ``custom_reward_function``.
- ``codescaler.integrations.openrlhf``: query splitting behind ``POST /get_reward`` for OpenRLHF's
  ``--remote_rm_url``.

``open_scorer`` is the one place that turns ``model=`` / ``url=`` into something with
``score(prompts, responses, languages) -> list[Score]``. Nothing is loaded at import time.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from codescaler.errors import InputError
from codescaler.records import Score


class ScoresResponses(Protocol):
    """What the adapters need: a ``codescaler.scorer.Scorer`` or a ``RemoteScorer``."""

    def score(self, prompts: Sequence[str], responses: Sequence[str],
              languages: Sequence[str | None] | None = None) -> list[Score]: ...

    @property
    def info(self) -> dict[str, Any]: ...


def open_scorer(model: str | None = None, url: str | None = None, **load_kwargs: Any) -> ScoresResponses:
    """A Scorer loaded from ``model`` (path, short name, hub id, ``"default"``) or a client of the
    server at ``url``; exactly one of them. ``load_kwargs`` go to ``Scorer.load`` (device, dtype,
    batch_size...). Raises ``InputError`` when both or neither are given."""
    if (model is None) == (url is None):
        raise InputError("pass exactly one of model= (load the RM in this process) or url= (use a running "
                         "`codescaler serve`)", field="model/url")
    if url is not None:
        from codescaler.integrations.client import RemoteScorer

        return RemoteScorer(url)
    from codescaler.scorer import Scorer

    return Scorer.load(str(model), **load_kwargs)
