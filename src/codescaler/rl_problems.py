"""What a GRPO run trains and evaluates on: problem sets, the run's selection, TRL's dataset (layer L3).

``load_problem_set`` reads a JSONL path, the official MBPP train/validation ids, or a ``codescaler
data`` dataset (eval-only datasets are refused for training); ``select_problems`` picks a run's training
and held-out problems; ``build_dataset`` makes TRL's conversational dataset with the chat prompt of
``codescaler sample``. Training problems may lack hidden tests when the reward is ``rm`` alone
(``check_tests`` refuses them for ``tests`` and ``rm+tests``); held-out problems always need tests.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from codescaler.errors import InputError
from codescaler.records import Language, Problem
from codescaler.rl_settings import RLSettings
from codescaler.sampling import SamplingConfig, build_messages

# The official MBPP split by task id (Austin et al. 2021): 1-10 few-shot prompts, 11-510 test,
# 511-600 validation, 601-974 train. All of MBPP is allowed for training here (data/README.md); the
# validation ids are kept out of the default training set so they can serve as the held-out set.
_MBPP_SPLITS = {"mbpp-train": range(601, 975), "mbpp-validation": range(511, 601)}


def load_problem_set(spec: str, data_dir: str | None, *, for_training: bool,
                     require_tests: bool = True) -> list[Problem]:
    """Problems from a JSONL path, ``mbpp-train``/``mbpp-validation`` or a ``codescaler data`` name.

    Raises ``InputError`` for an eval-only dataset (HumanEval-derived, LeetCode test) used for training.
    ``require_tests=False`` accepts JSONL rows without hidden tests (training with ``--reward rm`` alone).
    """
    from codescaler.data import read_problems
    from codescaler.data.sources import dataset_info, load_dataset_problems

    if spec in _MBPP_SPLITS:
        ids = _MBPP_SPLITS[spec]
        return [p for p in load_dataset_problems("mbpp", data_dir) if int(p.task_id.split("/")[-1]) in ids]
    path = Path(spec)
    if path.suffix in (".jsonl", ".gz") or path.exists():
        if not path.is_file():
            raise InputError(f"problems file {spec} does not exist", path=spec,
                             fix="pass a problems JSONL or a dataset name (codescaler data --list)")
        return read_problems(path, require_tests=require_tests)
    info = dataset_info(spec)
    if for_training and info.eval_only:
        raise InputError(f"dataset {spec!r} is evaluation-only and must never be trained on", field="problems",
                         fix="train on mbpp-train, mbpp, leetcode-train, apps-150 or mbpp-plus")
    return load_dataset_problems(spec, data_dir)


def build_dataset(problems: Sequence[Problem], sampling: SamplingConfig) -> Any:
    """TRL conversational dataset: ``prompt`` (chat messages), ``task_id``, ``language`` per problem."""
    from datasets import Dataset

    return Dataset.from_list([{"prompt": build_messages(p, sampling), "task_id": p.task_id,
                               "language": Language.parse(p.language).value} for p in problems])


def check_tests(train: Sequence[Problem], reward: str, spec: str) -> None:
    """``InputError`` (one line naming ``--problems``, the field and the fix) when ``reward`` executes hidden
    tests and some training problems have none; the ``rm`` reward needs no tests."""
    if "tests" not in reward.split("+"):
        return
    missing = [p.task_id for p in train if p.tests.is_empty]
    if missing:
        raise InputError(f"--problems: field 'tests' is empty in {len(missing)} of {len(train)} training problems "
                         f"of {spec!r} (e.g. {missing[0]!r}), and --reward {reward} runs the hidden tests",
                         fix="use --reward rm, which needs no tests, or give each problem 'tests' or 'stdio'")


def select_problems(s: RLSettings, limit: int | None, easiest_first: bool) -> tuple[list[Problem], list[Problem]]:
    """(training, held-out) problems of a resolved run: the first ``limit`` training problems (shortest
    reference first with ``easiest_first``), the first ``eval_limit`` held-out ones; ``InputError`` naming
    the flag when a set is unreadable or empty, or when the two overlap."""
    try:  # test-less problems are read here and refused below only when the reward runs tests
        train = load_problem_set(s.problems, s.data_dir, for_training=True, require_tests=False)
    except InputError as err:
        raise InputError(f"--problems: {err.render()}") from err
    if easiest_first:  # shortest reference solution first: problems a small policy can solve
        train = sorted(train, key=lambda p: len(p.reference) if p.reference else 10**9)
    train = train[:limit]
    if not train:
        raise InputError(f"--problems: no training problems in {s.problems!r}", fix="pass a non-empty problems file")
    check_tests(train, s.reward, s.problems)
    held_out = (load_problem_set(s.eval_problems, s.data_dir, for_training=False)[:s.eval_limit]
                if s.eval_problems else [])
    overlap = {p.task_id for p in train} & {p.task_id for p in held_out}
    if overlap:
        raise InputError(f"{len(overlap)} held-out problems are also training problems (e.g. {min(overlap)})",
                         field="eval_problems", fix="use disjoint training and held-out sets")
    return train, held_out
