"""verl adapter (layer L3): ``compute_score`` for verl's ``custom_reward_function``.

verl imports this file and calls a bare function, adding ``custom_reward_function.reward_kwargs`` to every
call, so the RM is configured there (see docs/serving.md)::

    custom_reward_function:
      path: <site-packages>/codescaler/integrations/verl.py
      name: compute_score            # NaiveRewardManager: one response per call
      # name: compute_score_batch    # with reward_model.reward_manager=batch: one call per batch
      reward_kwargs:
        model: /path/to/rm           # or: url: http://host:port of `codescaler serve` (one of the two)
        device: cuda:0               # optional, in-process only; also dtype, batch_size
        # return_dict: false         # a bare float, for reward managers that want one

Keyword arguments win; only when neither ``model`` nor ``url`` is passed are the environment variables
read: ``CODESCALER_RM`` or ``CODESCALER_RM_URL``, with ``CODESCALER_DEVICE`` / ``CODESCALER_BATCH_SIZE``.
One scorer per distinct configuration is created lazily, once per process (thread-safe). Other keyword
arguments verl passes (``sandbox_fusion_url``, ``concurrent_semaphore``, ...) are ignored.

RESULT: ``{"score": reward, "valid": bool, "raw_score": float}``. verl's reward managers read
``result["score"]`` as the reward and put every key into ``reward_extra_info``, which needs the same keys
on every row: so ``raw_score`` is NaN (not missing) when there is no valid code. ``score`` is the shaped
reward: 0.0 without valid code, > 0 with valid code. ``return_dict=False`` returns the float alone.

THE PROBLEM TEXT: verl passes only the decoded response (``solution_str``) and the dataset's
``reward_model.ground_truth`` and ``extra_info`` columns. The RM needs the problem statement, so it must be
in ``extra_info["question"]`` (or ``"problem"`` or ``"prompt"``; a string, or chat messages whose last
user turn is used); ``codescaler data NAME --format verl`` writes parquet files that have it. A missing
problem raises ``InputError``, since scoring code against an empty problem would silently train on noise.
``ground_truth`` is not used (the RM is execution-free); ``extra_info["language"]`` selects the
extraction language (default Python).
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Sequence
from typing import Any

from codescaler.errors import InputError
from codescaler.integrations import ScoresResponses, open_scorer
from codescaler.integrations.trl import problem_from_prompt
from codescaler.records import Score

PROBLEM_KEYS: tuple[str, ...] = ("question", "problem", "prompt")
ENV_MODEL = "CODESCALER_RM"
ENV_URL = "CODESCALER_RM_URL"

_lock = threading.Lock()
_injected: ScoresResponses | None = None
_scorers: dict[tuple[Any, ...], ScoresResponses] = {}


def _positive_int(value: Any, name: str) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = 0
    if number <= 0 or isinstance(value, bool):
        raise InputError(f"{name} must be a positive integer, got {value!r}", field=name,
                         fix=f"set reward_kwargs.{name} (or CODESCALER_BATCH_SIZE) to e.g. 16")
    return number


def _configuration(model: Any = None, url: Any = None, device: Any = None, dtype: Any = None,
                   batch_size: Any = None, **_ignored: Any) -> tuple[str | None, str | None, dict[str, Any]]:
    """(model, url, load options) from verl's keyword arguments, the environment as fallback."""
    model, url = model or None, url or None
    if model is None and url is None:
        model, url = os.environ.get(ENV_MODEL) or None, os.environ.get(ENV_URL) or None
        if model is None and url is None:
            raise InputError("no reward model configured: set custom_reward_function.reward_kwargs.model (an RM "
                             "checkpoint) or .url (http://host:port of `codescaler serve`), or the environment "
                             f"variables {ENV_MODEL} / {ENV_URL} of verl's reward workers", field="model")
        if model is not None and url is not None:
            raise InputError(f"both {ENV_MODEL} and {ENV_URL} are set", field=ENV_MODEL, fix="set only one of them")
    device = device or os.environ.get("CODESCALER_DEVICE") or None
    batch_size = batch_size if batch_size is not None else os.environ.get("CODESCALER_BATCH_SIZE") or None
    options: dict[str, Any] = {}
    if model is not None:
        if device is not None:
            options["device"] = str(device)
        if dtype is not None:
            options["dtype"] = str(dtype)
        if batch_size is not None:
            options["batch_size"] = _positive_int(batch_size, "batch_size")
    return (None if model is None else str(model)), (None if url is None else str(url)), options


def get_scorer(**kwargs: Any) -> ScoresResponses:
    """The process-wide scorer for this configuration (keyword arguments as ``compute_score`` takes them,
    else the environment), created on first use; a scorer given to ``set_scorer`` wins over both."""
    with _lock:
        if _injected is not None:
            return _injected
    model, url, options = _configuration(**kwargs)
    key = (model, url, tuple(sorted(options.items())))
    with _lock:
        if key not in _scorers:
            _scorers[key] = open_scorer(model=model, url=url, **options)
        return _scorers[key]


def set_scorer(scorer: ScoresResponses | None) -> None:
    """Use ``scorer`` for every later call (None: forget all scorers; configure from kwargs/env again)."""
    global _injected
    with _lock:
        _injected = scorer
        _scorers.clear()


def problem_from_extra_info(extra_info: Any, *, index: int = 0) -> tuple[str, str | None]:
    """(problem statement, language or None) from one ``extra_info``; see the module docstring."""
    if isinstance(extra_info, dict):
        for key in PROBLEM_KEYS:
            value = extra_info.get(key)
            if (isinstance(value, str) and value.strip()) or (isinstance(value, list | tuple) and len(value)):
                language = extra_info.get("language")
                return problem_from_prompt(list(value) if isinstance(value, tuple) else value, index=index), \
                    language if isinstance(language, str) else None
    raise InputError(
        f"extra_info of item {index} has no problem text (looked for {', '.join(PROBLEM_KEYS)})",
        field="extra_info", fix="add extra_info['question'] = <problem statement> to each row of the verl parquet "
        "(`codescaler data NAME --format verl` writes it)",
    )


def _result(score: Score, return_dict: bool) -> float | dict[str, Any]:
    reward = float(score.reward)
    if not return_dict:
        return reward
    raw = math.nan if score.raw_score is None else float(score.raw_score)
    return {"score": reward, "valid": bool(score.valid), "raw_score": raw}


def _score(problems: list[str], responses: list[str], languages: list[str | None],
           kwargs: dict[str, Any]) -> list[Score]:
    scorer = get_scorer(**kwargs)
    # An in-process Scorer is not thread-safe; verl may call from a thread pool.
    with _lock:
        return scorer.score(problems, responses, languages)


def compute_score(data_source: Any, solution_str: str, ground_truth: Any, extra_info: dict[str, Any] | None = None,
                  *, return_dict: bool = True, **kwargs: Any) -> float | dict[str, Any]:
    """Reward of one response (verl NaiveRewardManager contract); see the module docstring."""
    problem, language = problem_from_extra_info(extra_info)
    return _result(_score([problem], [solution_str], [language], kwargs)[0], return_dict)


def compute_score_batch(data_sources: Sequence[Any], solution_strs: Sequence[str], ground_truths: Sequence[Any],
                        extra_infos: Sequence[dict[str, Any] | None], *, return_dict: bool = True,
                        **kwargs: Any) -> list[float | dict[str, Any]]:
    """Results of a batch (verl BatchRewardManager contract), one model pass for all of them."""
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
    return [_result(s, return_dict) for s in _score(problems, list(solution_strs), languages, kwargs)]
