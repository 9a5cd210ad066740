"""TRL adapter (layer L3): the CodeScaler RM as a ``reward_funcs`` entry of ``trl.GRPOTrainer``.

    from codescaler.integrations.trl import CodeScalerReward
    reward = CodeScalerReward(model="path/to/rm")            # or url="http://127.0.0.1:8000"
    trainer = GRPOTrainer(model=policy, reward_funcs=[reward], args=config, train_dataset=ds)

Contract (TRL 1.16 ``GRPOTrainer._calculate_rewards``): called as ``reward(prompts=..., completions=...,
completion_ids=..., **columns)`` with one entry per completion (each prompt repeated per generation);
returns one float per completion. Both dataset styles are handled:
- conversational: ``prompts[i]`` is a list of ``{"role", "content"}`` messages; the problem is the LAST
  user message; ``completions[i]`` is a list of assistant messages whose contents are joined. Content
  may be a string or a list of ``{"type": "text", "text"}`` parts.
- standard: ``prompts[i]`` and ``completions[i]`` are strings; the prompt is the problem statement.
A ``language`` dataset column (one per row) is used for extraction; default Python.
Rewards are the validity-preserving shaped rewards: 0.0 when the completion has no valid code, > 0 when it
has (never None). When TRL passes ``log_metric``, the fraction of completions with valid code is logged
as ``codescaler/valid_fraction``. ``__name__`` is ``"codescaler"`` (TRL names its reward columns after it).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from codescaler.errors import InputError
from codescaler.integrations import ScoresResponses, open_scorer

logger = logging.getLogger(__name__)


def message_text(content: Any) -> str:
    """Text of a chat message's ``content``: a string, or a list of parts (``{"type": "text", ...}``)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, dict) and isinstance(part.get("text"), str):
                parts.append(part["text"])
        return "".join(parts)
    raise InputError(f"message content must be a string or a list of parts, got {type(content).__name__}",
                     field="content")


def problem_from_prompt(prompt: Any, *, index: int = 0) -> str:
    """The problem statement of one TRL prompt (a string, or messages: the last user turn)."""
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, list):
        users = [m for m in prompt if isinstance(m, dict) and m.get("role") == "user"]
        if users:
            return message_text(users[-1].get("content"))
        raise InputError(f"conversational prompt {index} has no user message", field=f"prompts[{index}]",
                         fix="put the problem statement in a {'role': 'user'} message")
    raise InputError(f"prompt {index} must be a string or a list of messages, got {type(prompt).__name__}",
                     field=f"prompts[{index}]")


def response_from_completion(completion: Any, *, index: int = 0) -> str:
    """The response text of one TRL completion (a string, or assistant messages joined)."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list):
        return "".join(message_text(m.get("content")) for m in completion
                       if isinstance(m, dict) and m.get("role", "assistant") == "assistant")
    raise InputError(f"completion {index} must be a string or a list of messages, got "
                     f"{type(completion).__name__}", field=f"completions[{index}]")


class CodeScalerReward:
    """Callable reward for ``GRPOTrainer(reward_funcs=[...])``; see the module docstring.

    Give ``model`` (loaded once, in this process; ``load_kwargs`` go to ``Scorer.load``), ``url`` (a
    running ``codescaler serve``) or a ready ``scorer``.
    """

    __name__ = "codescaler"

    def __init__(self, model: str | None = None, *, url: str | None = None,
                 scorer: ScoresResponses | None = None, **load_kwargs: Any) -> None:
        if scorer is not None:
            if model is not None or url is not None:
                raise InputError("pass scorer= alone, without model= or url=", field="scorer")
            self.scorer = scorer
        else:
            self.scorer = open_scorer(model=model, url=url, **load_kwargs)

    def __call__(self, prompts: Sequence[Any], completions: Sequence[Any], **kwargs: Any) -> list[float | None]:
        if len(prompts) != len(completions):
            raise InputError(f"{len(prompts)} prompts but {len(completions)} completions",
                             fix="TRL passes one prompt per completion")
        problems = [problem_from_prompt(p, index=i) for i, p in enumerate(prompts)]
        responses = [response_from_completion(c, index=i) for i, c in enumerate(completions)]
        languages = kwargs.get("language")
        if not (isinstance(languages, list) and len(languages) == len(prompts)):
            languages = None
        scores = self.scorer.score(problems, responses, languages)
        log_metric = kwargs.get("log_metric")
        if callable(log_metric) and scores:
            log_metric("codescaler/valid_fraction", sum(s.valid for s in scores) / len(scores))
        return [float(s.reward) for s in scores]
