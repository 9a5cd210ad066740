"""The reward functions of a GRPO run, as TRL ``reward_funcs`` entries (layer L3).

``tests``: ``TestsReward``, 1.0 when the extracted program passes the problem's hidden tests, else 0.0;
``rm``: ``integrations.trl.CodeScalerReward``; ``rm+tests``: both (TRL sums them with weight 1).
Strict extraction everywhere. ``reward_functions`` builds the list for a reward name.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from codescaler.errors import InputError
from codescaler.executor import ExecuteOptions
from codescaler.records import ExtractMode, Problem, Status
from codescaler.rl_metrics import run_tests


class TestsReward:
    """TRL reward function: 1.0 when the completion's code passes the hidden tests, else 0.0.

    Needs the ``task_id`` dataset column to find each completion's problem. Logs
    ``tests/valid_fraction`` and ``tests/pass_rate`` through TRL's ``log_metric``.
    """

    __name__ = "tests"
    __test__ = False  # not a pytest test class despite the name

    def __init__(self, problems: Sequence[Problem], options: ExecuteOptions | None = None) -> None:
        self.problems = {p.task_id: p for p in problems}
        self.options = replace(options or ExecuteOptions(), extract_mode=ExtractMode.STRICT)

    def __call__(self, prompts: Sequence[Any], completions: Sequence[Any], **kwargs: Any) -> list[float]:
        from codescaler.integrations.trl import response_from_completion

        task_ids = kwargs.get("task_id")
        if not isinstance(task_ids, list) or len(task_ids) != len(completions):
            raise InputError("the tests reward needs a task_id column with one id per completion", field="task_id",
                             fix="build the dataset with codescaler.rl.build_dataset")
        unknown = [t for t in task_ids if t not in self.problems]
        if unknown:
            raise InputError(f"task_id {unknown[0]!r} is not among the reward's problems", field="task_id")
        responses = [response_from_completion(c, index=i) for i, c in enumerate(completions)]
        statuses = run_tests([self.problems[t] for t in task_ids], responses, self.options)
        log_metric = kwargs.get("log_metric")
        if callable(log_metric) and statuses:
            log_metric("tests/valid_fraction", sum(s != Status.NO_CODE for s in statuses) / len(statuses))
            log_metric("tests/pass_rate", sum(s == Status.PASSED for s in statuses) / len(statuses))
        return [1.0 if s == Status.PASSED else 0.0 for s in statuses]


def reward_functions(reward: str, rm: str, problems: Sequence[Problem], options: ExecuteOptions,
                     device: str) -> list[Any]:
    """The TRL reward functions of ``reward`` (``rm``, ``tests`` or ``rm+tests``), in that order; the RM
    ``rm`` is loaded on ``device``, the tests run on ``problems`` with ``options``."""
    from codescaler.integrations.trl import CodeScalerReward

    funcs: list[Any] = []
    if "rm" in reward.split("+"):
        funcs.append(CodeScalerReward(model=rm, device=device, extract_mode=ExtractMode.STRICT))
    if "tests" in reward.split("+"):
        funcs.append(TestsReward(problems, options))
    return funcs
