"""Converters for MBPP, LeetCodeDataset, APPS-150 and HumanEvalPack into canonical records.

Each ``load_*`` reads one public file under the data folder and returns records; the field mapping of
each source is documented in ``docs/formats.md`` ("Public datasets"). Splits and EVAL-ONLY flags live in
:mod:`codescaler.data.sources`.
"""

from __future__ import annotations

import ast
import logging
import warnings
from pathlib import Path

from codescaler.data.artifacts import read_jsonl
from codescaler.data.locate import require_file
from codescaler.errors import InputError
from codescaler.records import Candidate, Language, Problem, Status, StdioCase, TestSuite, Verdict

logger = logging.getLogger(__name__)

MBPP_FILE = "MapCoder/data/MBPPEval/MBPP.jsonl"
APPS_FILE = "MapCoder/data/APPS/selected150.jsonl"
LEETCODE_FILES = {
    "leetcode-train": "LeetCodeDataset/data/LeetCodeDataset-v0.2.0-train.jsonl.gz",
    "leetcode-test": "LeetCodeDataset/data/LeetCodeDataset-v0.2.0-test.jsonl.gz",
    "leetcode-test-v0.3.1": "LeetCodeDataset/data/LeetCodeDataset-v0.3.1-test.jsonl.gz",
}
HUMANEVALPACK_LANGUAGES = {"python": Language.PYTHON, "js": Language.JAVASCRIPT, "java": Language.JAVA,
                           "go": Language.GO, "cpp": Language.CPP, "rust": Language.RUST}
APPS_IO_NOTE = "Read the input from standard input and print the answer to standard output."


def _field(row: dict, key: str, path: Path, line: int, kind: type = str) -> object:
    value = row.get(key)
    if not isinstance(value, kind):
        raise InputError(f"expected {kind.__name__}, got {type(value).__name__}", path=str(path), line=line,
                         field=key, fix="use the unmodified public file (see /work/shared/data/README.md)")
    return value


# --------------------------------------------------------------------------- MBPP


def called_function(asserts: list[str], defined: set[str]) -> str | None:
    """The first function called in the asserts that the reference defines (MBPP's entry point)."""
    for text in asserts:
        try:
            tree = ast.parse(text)
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in defined:
                return node.func.id
    return None


def asserts_as_check(asserts: list[str], entry_point: str, preamble: str = "") -> str:
    """``def check(candidate)`` that binds ``entry_point`` to the candidate, then runs the asserts.

    MBPP asserts call the function by name (and sometimes wrap it: ``set(f(x)) == ...``), so rebinding
    the module-level name is more robust than rewriting each call.
    """
    body = "\n".join(f"    {a.strip()}" for a in asserts)
    head = f"{preamble.rstrip()}\n\n" if preamble.strip() else ""
    return f"{head}def check(candidate):\n    globals()[{entry_point!r}] = candidate\n{body}\n"


def _defined_functions(code: str) -> set[str]:
    try:
        with warnings.catch_warnings():  # old MBPP code has invalid escapes ("\w"): not our concern
            warnings.simplefilter("ignore", SyntaxWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            tree = ast.parse(code)
    except SyntaxError:
        return set()
    return {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}


def load_mbpp(data_dir: Path) -> list[Problem]:
    """MBPP full (974): prompt = text + the first test; tests = all ``test_list`` asserts; reference = code."""
    path = require_file(data_dir, MBPP_FILE)
    problems = []
    for line, row in read_jsonl(path):
        asserts = [str(a) for a in _field(row, "test_list", path, line, list)]  # type: ignore[union-attr,attr-defined]
        code = str(_field(row, "code", path, line)).replace("\r\n", "\n")
        entry = called_function(asserts, _defined_functions(code))
        if entry is None:
            logger.warning("%s:%d: no function of the reference is called in test_list; skipped", path, line)
            continue
        text = str(_field(row, "text", path, line))
        setup_code = str(row.get("test_setup_code") or "")
        problems.append(Problem(
            task_id=f"Mbpp/{row['task_id']}", prompt=f"{text}\n{asserts[0]}", language=Language.PYTHON,
            tests=TestSuite(functional=asserts_as_check(asserts, entry, setup_code)), entry_point=entry,
            visible_tests=TestSuite(functional=asserts_as_check(asserts[:1], entry, setup_code)),
            reference=code, source="mbpp/full"))
    return problems


# --------------------------------------------------------------------------- LeetCodeDataset


def load_leetcode(data_dir: Path, name: str) -> list[Problem]:
    """LeetCodeDataset: prompt = ``query``; setup = ``prompt`` (imports, helper classes); reference = completion."""
    path = require_file(data_dir, LEETCODE_FILES[name])
    split = name.removeprefix("leetcode-")
    problems = []
    for line, row in read_jsonl(path):
        problems.append(Problem(
            task_id=str(_field(row, "task_id", path, line)), prompt=str(_field(row, "query", path, line)),
            language=Language.PYTHON, tests=TestSuite(functional=str(_field(row, "test", path, line))),
            entry_point=str(_field(row, "entry_point", path, line)),
            reference=str(_field(row, "completion", path, line)), setup=str(_field(row, "prompt", path, line)),
            source=f"leetcode/{split}"))
    return problems


# --------------------------------------------------------------------------- APPS-150


def _apps_text(value: object) -> str:
    # Call-based APPS rows keep outputs as a one-element list of values; stdio rows as a list of strings.
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    if isinstance(value, str):
        return value
    return str(value)


def load_apps150(data_dir: Path) -> list[Problem]:
    """MapCoder's 150 APPS problems as stdin/stdout problems (how MapCoder evaluates them).

    Rows with ``starter_code`` are call-based upstream, but their inputs are raw text (not Python
    literals), so they are run as programs too: the prompt shows the starter code and asks for a
    program that reads stdin; outputs are the printed value.
    """
    path = require_file(data_dir, APPS_FILE)
    problems: list[Problem] = []
    seen: dict[str, Problem] = {}
    repeats = 0
    for line, row in read_jsonl(path):
        cases_raw = _field(row, "test_list", path, line, list)
        samples_raw = row.get("sample_io") or []
        cases = tuple(StdioCase(input=_with_newline(str(c["input"])), output=_apps_text(c["output"]))
                      for c in cases_raw)  # type: ignore[union-attr,attr-defined]
        samples = tuple(StdioCase(input=_with_newline(str(c["input"])), output=_apps_text(c["output"]))
                        for c in samples_raw)
        prompt = str(_field(row, "description", path, line))
        starter = str(row.get("starter_code") or "").strip()
        if starter:
            prompt += f"\n\nStarter code:\n{starter}"
        prompt += f"\n\n{APPS_IO_NOTE}"
        problem = Problem(task_id=f"APPS/{row['name']}", prompt=prompt, language=Language.PYTHON,
                          tests=TestSuite(stdio=cases), visible_tests=TestSuite(stdio=samples) if samples else None,
                          source="apps/selected150")
        earlier = seen.get(problem.task_id)
        if earlier is not None:
            # The upstream file repeats some rows verbatim; a repeat with other content is a real conflict.
            if earlier != problem:
                raise InputError(f"two different problems share the name {row['name']!r}", path=str(path),
                                 line=line, field="name", fix="report the file; it is not the published one")
            repeats += 1
            continue
        seen[problem.task_id] = problem
        problems.append(problem)
    if repeats:
        logger.info("apps-150: %d verbatim repeated rows skipped (%d distinct problems)", repeats, len(problems))
    return problems


def _with_newline(text: str) -> str:
    return text if text.endswith("\n") else text + "\n"


# --------------------------------------------------------------------------- HumanEvalPack


def _pack_tests(language: Language, test: str) -> str:
    if language is Language.PYTHON:
        # Drop the trailing "check(name)" call: the harness calls check() with the guarded entry point.
        lines = test.rstrip().split("\n")
        if lines and lines[-1].startswith("check("):
            lines = lines[:-1]
        return "\n".join(lines).strip("\n") + "\n"
    return test


def load_humanevalpack(data_dir: Path, lang: str) -> tuple[list[Problem], list[Candidate], list[Verdict]]:
    """HumanEvalPack in one language: problems (prompt = ``instruction``) and two labelled candidates each.

    Candidates ``canonical`` (prompt + canonical_solution, labelled PASSED) and ``buggy`` (prompt +
    buggy_solution, labelled FAILED), as RewardBench's hep-* subsets use them. Labels are the dataset's.
    """
    language = HUMANEVALPACK_LANGUAGES[lang]
    path = require_file(data_dir, f"octopack/evaluation/create/humaneval-x/data/{lang}/data/humanevalpack.jsonl")
    problems, candidates, verdicts = [], [], []
    for line, row in read_jsonl(path):
        task_id = str(_field(row, "task_id", path, line))
        code_prompt = str(_field(row, "prompt", path, line))
        reference = code_prompt + str(_field(row, "canonical_solution", path, line))
        buggy = code_prompt + str(_field(row, "buggy_solution", path, line))
        problems.append(Problem(
            task_id=task_id, prompt=str(_field(row, "instruction", path, line)), language=language,
            tests=TestSuite(functional=_pack_tests(language, str(_field(row, "test", path, line)))),
            entry_point=str(_field(row, "entry_point", path, line)), reference=reference,
            source=f"humanevalpack-{lang}/test"))
        candidates += [Candidate(task_id, "canonical", code=reference), Candidate(task_id, "buggy", code=buggy)]
        verdicts += [Verdict(task_id, "canonical", Status.PASSED, detail="dataset label: canonical solution"),
                     Verdict(task_id, "buggy", Status.FAILED,
                             detail=f"dataset label: buggy solution ({row.get('bug_type', 'bug')})")]
    return problems, candidates, verdicts
