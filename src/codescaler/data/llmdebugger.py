"""LLMDebugger (LDB) inputs: problems with visible ``given_tests`` and labelled seed solutions per model.

``input_data/<set>/test/tests.jsonl`` gives the problems with ``given_tests`` (HumanEval 164, MBPP 500, TransCoder 560);
``input_data/<set>/seed/<model>/seed.jsonl`` one seed ``solution`` per problem with ``is_solved``.
candidate_id = ``seed/<model>``. The debugging runs under ``results/ldb`` are not converted.
"""

from __future__ import annotations

import ast
import logging
from pathlib import Path

from codescaler.data.artifacts import read_jsonl
from codescaler.data.benchmarks import asserts_as_check
from codescaler.data.locate import require_file
from codescaler.errors import InputError
from codescaler.records import Candidate, Language, Problem, Status, TestSuite, Verdict

logger = logging.getLogger(__name__)

LLMDEBUGGER_SETS = ("humaneval", "mbpp", "transcoder")
# LDB runs every program after an import header; seed solutions rely on it (TransCoder ones use `math`
# without importing it), so it becomes the problems' setup.
IMPORT_SETUP = "from typing import *\nimport math\nimport re\nimport heapq\nimport itertools\nimport typing\nfrom heapq import *\n"


def _tests(source: str) -> str:
    # Keep check() only; a trailing "check(name)" call would run the tests twice.
    lines = source.rstrip().split("\n")
    while lines and lines[-1].startswith("check("):
        lines.pop()
    return "\n".join(lines).strip("\n") + "\n"


def complete_program(problem: Problem, code: str) -> str:
    """Some seeds (Reflexion's) are function bodies only: prefix the prompt when the entry point is not defined."""
    entry = (problem.entry_point or "").split("(")[0].split(".")[-1]
    if entry and f"def {entry}" not in code:
        return problem.prompt + code
    return code


def load_llmdebugger_problems(data_dir: Path, name: str) -> list[Problem]:
    path = require_file(data_dir, f"LLMDebugger/input_data/{name}/test/tests.jsonl")
    problems = []
    for line, row in read_jsonl(path):
        entry = str(row.get("entry_point") or "")
        if not entry or not isinstance(row.get("test"), str):
            raise InputError("missing entry_point or test", path=str(path), line=line, field="test",
                             fix="use the unmodified LLMDebugger file")
        try:
            ast.parse(row["test"])
        except (SyntaxError, ValueError) as err:  # a few TransCoder tests are Python 2 (literals such as
            # 010); null bytes are a ValueError on Python 3.10 (a SyntaxError on the 3.11.7 here)
            why = err.msg if isinstance(err, SyntaxError) else str(err)
            logger.warning("%s:%d: %s tests do not parse (%s); problem skipped", path, line, row["task_id"], why)
            continue
        solution = str(row.get("canonical_solution") or "")
        reference = solution if f"def {entry}" in solution else str(row["prompt"]) + solution
        given = [str(t) for t in row.get("given_tests") or [] if str(t).strip()]
        problems.append(Problem(
            task_id=str(row["task_id"]), prompt=str(row["prompt"]), language=Language.PYTHON,
            tests=TestSuite(functional=_tests(row["test"])), entry_point=entry,
            visible_tests=TestSuite(functional=asserts_as_check(given, entry)) if given else None,
            reference=reference or None, setup=IMPORT_SETUP, source=f"llmdebugger-{name}/{'test' if name == 'humaneval' else 'train'}"))
    return problems


def load_llmdebugger_candidates(data_dir: Path, name: str, problems: list[Problem]
                                ) -> tuple[list[Candidate], list[Verdict]]:
    """Seed solutions of every model, labelled from ``is_solved``."""
    files = sorted((data_dir / "LLMDebugger" / "input_data" / name / "seed").glob("*/seed.jsonl"))
    if not files:
        raise InputError(f"no LLMDebugger seed files for {name} under {str(data_dir)!r}",
                         fix="pass --data-dir DIR or set CODESCALER_DATA=DIR to the public data folder")
    by_id = {p.task_id: p for p in problems}
    candidates, verdicts, skipped = [], [], 0
    for path in files:
        cid = f"seed/{path.parent.name}"
        for _, row in read_jsonl(path):
            task_id, code = str(row.get("task_id")), row.get("solution")
            if task_id not in by_id or not isinstance(code, str) or not code.strip():
                skipped += 1
                continue
            code = complete_program(by_id[task_id], code)
            candidates.append(Candidate(task_id=task_id, candidate_id=cid, code=code))
            verdicts.append(Verdict(task_id=task_id, candidate_id=cid,
                                    status=Status.PASSED if row.get("is_solved") is True else Status.FAILED,
                                    detail=f"dataset label: is_solved={row.get('is_solved')}"))
    if skipped:
        logger.info("llmdebugger-%s: %d seed rows without code or problem skipped", name, skipped)
    return candidates, verdicts
