"""MapCoder's published results: one labelled solution per problem per model x prompting strategy.

``final-results/<Model>/<DS>/<strategy>.jsonl`` rows carry the solution (``solution``, or the last of
``source_codes``) and ``is_solved``. They are joined to the problems of the same benchmark: APPS-150,
MultiPL-E MBPP (MapCoder's ``mbpp-py.jsonl``, 397), HumanEval, and xCodeEval (106 Codeforces problems whose
only tests are the statement's sample I/O). candidate_id = ``<Model>/<file stem>``.
"""

from __future__ import annotations

import logging
from pathlib import Path

from codescaler.data.artifacts import read_jsonl
from codescaler.data.benchmarks import load_apps150
from codescaler.data.humaneval import load_humaneval
from codescaler.data.llmdebugger import complete_program
from codescaler.data.locate import require_file
from codescaler.errors import InputError
from codescaler.records import Candidate, Language, Problem, Status, StdioCase, TestSuite, Verdict

logger = logging.getLogger(__name__)

MAPCODER_SETS = {"apps": "APPS", "mbpp": "MBPP", "humaneval": "HumanEval", "xcodeeval": "xCodeEval"}


def _mbpp_py(data_dir: Path) -> list[Problem]:
    path = require_file(data_dir, "MapCoder/data/MBPPEval/mbpp-py.jsonl")
    problems = []
    for _, row in read_jsonl(path):
        tests = str(row["test"]).split("\ndef test_check():")[0].rstrip() + "\n"
        problems.append(Problem(task_id=str(row["name"]), prompt=str(row["prompt"]), language=Language.PYTHON,
                                tests=TestSuite(functional=tests), entry_point=str(row["entry_point"]),
                                source="mapcoder-mbpp/multipl-e"))
    return problems


def _xcodeeval(data_dir: Path) -> list[Problem]:
    path = require_file(data_dir, "MapCoder/data/xCodeEval/prog_syn_val.jsonl")
    problems = []
    for _, row in read_jsonl(path):
        cases = tuple(StdioCase(input=i if i.endswith("\n") else i + "\n", output=o)
                      for i, o in zip(row["sample_inputs"], row["sample_outputs"], strict=True))
        prompt = (f"{row['description']}\n\nInput\n{row['input_spec']}\n\nOutput\n{row['output_spec']}\n\n"
                  "Read the input from standard input and print the answer to standard output.")
        problems.append(Problem(task_id=str(row["src_uid"]), prompt=prompt, language=Language.PYTHON,
                                tests=TestSuite(stdio=cases), visible_tests=TestSuite(stdio=cases),
                                source="mapcoder-xcodeeval/val"))
    return problems


def load_mapcoder_problems(data_dir: Path, name: str) -> list[Problem]:
    if name == "apps":
        return load_apps150(data_dir)
    if name == "humaneval":
        return load_humaneval()
    if name == "mbpp":
        return _mbpp_py(data_dir)
    return _xcodeeval(data_dir)


def _key(name: str, row: dict) -> str:
    if name == "apps":
        return f"APPS/{row['name']}"
    if name == "mbpp":
        return str(row["name"])
    if name == "xcodeeval":
        return str(row["src_uid"])
    return str(row["task_id"])


def load_mapcoder_candidates(data_dir: Path, name: str, problems: list[Problem]
                             ) -> tuple[list[Candidate], list[Verdict]]:
    """Every model x strategy solution for the benchmark, labelled from ``is_solved``."""
    folder_name = MAPCODER_SETS[name]
    files = sorted((data_dir / "MapCoder" / "final-results").glob(f"*/{folder_name}/*.jsonl"))
    if not files:
        raise InputError(f"no MapCoder result files for {folder_name} under {str(data_dir)!r}",
                         fix="pass --data-dir DIR or set CODESCALER_DATA=DIR to the public data folder")
    by_id = {p.task_id: p for p in problems}
    known = set(by_id)
    candidates, verdicts, skipped, repeats = [], [], 0, 0
    seen: dict[tuple[str, str], str] = {}
    for path in files:
        model = path.parent.parent.name
        cid = f"{model}/{path.stem}"
        for _, row in read_jsonl(path):
            task_id = _key(name, row)
            code = row.get("solution")
            if not isinstance(code, str):
                codes = row.get("source_codes") or []
                code = codes[-1] if codes and isinstance(codes[-1], str) else None
            if task_id not in known or not code or not code.strip():
                skipped += 1
                continue
            # A problem repeated in the upstream file (APPS-150) has one result row per copy: the same
            # solution again is skipped, a different one is kept as "<cid>#<k>".
            program = complete_program(by_id[task_id], code)
            k, row_cid = 1, cid
            while (task_id, row_cid) in seen and seen[(task_id, row_cid)] != program:
                k += 1
                row_cid = f"{cid}#{k}"
            if (task_id, row_cid) in seen:
                repeats += 1
                continue
            seen[(task_id, row_cid)] = program
            candidates.append(Candidate(task_id=task_id, candidate_id=row_cid, code=program))
            solved = row.get("is_solved") is True
            verdicts.append(Verdict(task_id=task_id, candidate_id=row_cid,
                                    status=Status.PASSED if solved else Status.FAILED,
                                    detail=f"dataset label: is_solved={row.get('is_solved')}"))
    if skipped or repeats:
        logger.info("mapcoder-%s: %d rows without code or without a matching problem and %d repeated rows "
                    "skipped", name, skipped, repeats)
    return candidates, verdicts
