"""verl adapter (layer L3): ``compute_score`` for verl's ``custom_reward_function``.

verl imports a file and calls a bare function, so configuration comes from the environment:
``CODESCALER_RM`` (a checkpoint path, short name or hub id, loaded in-process) or ``CODESCALER_RM_URL``
(a running ``codescaler serve``; preferred with many reward workers: one model, batched). Optional:
``CODESCALER_DEVICE`` (e.g. ``cuda:0``, ``cpu``) and ``CODESCALER_BATCH_SIZE`` for in-process loading.
The scorer is created lazily, once per process, on the first call (thread-safe).

    custom_reward_function:
      path: <site-packages>/codescaler/integrations/verl.py
      name: compute_score            # NaiveRewardManager: one response per call
      # name: compute_score_batch    # with reward_model.reward_manager=batch: one call per batch

THE PROBLEM TEXT: verl passes only the decoded response (``solution_str``) and the dataset's
``reward_model.ground_truth`` and ``extra_info`` columns. The RM needs the problem statement, so put it in
``extra_info`` when preparing the parquet: ``extra_info["question"]`` (or ``"problem"`` or ``"prompt"``; a
string, or chat messages whose last user turn is used). A missing problem raises ``InputError``, since
scoring code against an empty problem would silently train on noise. ``ground_truth`` is not used (the RM
is execution-free); ``extra_info["language"]`` selects the extraction language (default Python).
Returns the shaped reward: 0.0 without valid code, > 0 with valid code.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from typing import Any

from codescaler.errors import InputError
from codescaler.integrations import ScoresResponses, open_scorer
from codescaler.integrations.trl import problem_from_prompt

PROBLEM_KEYS: tuple[str, ...] = ("question", "problem", "prompt")
ENV_MODEL = "CODESCALER_RM"
ENV_URL = "CODESCALER_RM_URL"

_lock = threading.Lock()
_scorer: ScoresResponses | None = None


def get_scorer() -> ScoresResponses:
    """The process-wide scorer, created from the environment on first use."""
    global _scorer
    with _lock:
        if _scorer is None:
            model, url = os.environ.get(ENV_MODEL) or None, os.environ.get(ENV_URL) or None
            if model is None and url is None:
                raise InputError(f"set {ENV_MODEL} (an RM checkpoint) or {ENV_URL} (http://host:port of "
                                 "`codescaler serve`) in the environment of verl's reward workers",
                                 field=ENV_MODEL)
            if model is not None and url is not None:
                raise InputError(f"both {ENV_MODEL} and {ENV_URL} are set", field=ENV_MODEL,
                                 fix="set only one of them")
            kwargs: dict[str, Any] = {}
            if model is not None:
                if os.environ.get("CODESCALER_DEVICE"):
                    kwargs["device"] = os.environ["CODESCALER_DEVICE"]
                if os.environ.get("CODESCALER_BATCH_SIZE"):
                    kwargs["batch_size"] = int(os.environ["CODESCALER_BATCH_SIZE"])
            _scorer = open_scorer(model=model, url=url, **kwargs)
        return _scorer


def set_scorer(scorer: ScoresResponses | None) -> None:
    """Use ``scorer`` for later calls (None: reload from the environment on next use)."""
    global _scorer
    with _lock:
        _scorer = scorer


def problem_from_extra_info(extra_info: Any, *, index: int = 0) -> tuple[str, str | None]:
    """(problem statement, language or None) from one ``extra_info``; see the module docstring."""
    if isinstance(extra_info, dict):
        for key in PROBLEM_KEYS:
            value = extra_info.get(key)
            if (isinstance(value, str) and value.strip()) or (isinstance(value, list) and value):
                language = extra_info.get("language")
                return problem_from_prompt(value, index=index), language if isinstance(language, str) else None
    raise InputError(
        f"extra_info of item {index} has no problem text (looked for {', '.join(PROBLEM_KEYS)})",
        field="extra_info", fix="add extra_info['question'] = <problem statement> to each row of the verl parquet",
    )


def _score(problems: list[str], responses: list[str], languages: list[str | None]) -> list[float]:
    scorer = get_scorer()
    # An in-process Scorer is not thread-safe; verl may call from a thread pool.
    with _lock:
        scores = scorer.score(problems, responses, languages)
    return [float(s.reward) for s in scores]


def compute_score(data_source: Any, solution_str: str, ground_truth: Any, extra_info: dict[str, Any] | None = None,
                  **kwargs: Any) -> float:
    """Reward of one response (verl NaiveRewardManager contract). Extra keyword arguments are ignored."""
    problem, language = problem_from_extra_info(extra_info)
    return _score([problem], [solution_str], [language])[0]


def compute_score_batch(data_sources: Sequence[Any], solution_strs: Sequence[str], ground_truths: Sequence[Any],
                        extra_infos: Sequence[dict[str, Any] | None], **kwargs: Any) -> list[float]:
    """Rewards of a batch (verl BatchRewardManager contract), one model pass for all of them."""
    if not (len(solution_strs) == len(extra_infos) == len(data_sources) == len(ground_truths)):
        raise InputError(f"batch lengths differ: {len(data_sources)} data_sources, {len(solution_strs)} "
                         f"solution_strs, {len(ground_truths)} ground_truths, {len(extra_infos)} extra_infos",
                         field="solution_strs")
    problems: list[str] = []
    languages: list[str | None] = []
    for i, info in enumerate(extra_infos):
        problem, language = problem_from_extra_info(info, index=i)
        problems.append(problem)
        languages.append(language)
    return _score(problems, list(solution_strs), languages)
