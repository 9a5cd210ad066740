"""Tests for codescaler.mutate: AST mutants of real reference solutions."""

from __future__ import annotations

import ast
import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from codescaler.mutate import MutationKind, mutant_ids, mutate_program
from codescaler.pairs import normalize_code

BINARY_SEARCH = '''\
from typing import List


def lower_bound(nums: List[int], target: int) -> int:
    """First index whose value is >= target."""
    lo, hi = 0, len(nums)
    for _ in range(64):
        if lo >= hi:
            break
        mid = (lo + hi) // 2
        if nums[mid] < target:
            lo = mid + 1
        else:
            hi = mid
    return lo
'''

RUNNING_MAX = '''\
def running_max(values, start=0):
    best = None
    out = []
    for i in range(start, len(values)):
        v = values[i]
        if best is None or v > best:
            best = v
        out.append(best)
    return out
'''


def _leetcode_references(shared_data: Path, n: int) -> list[str]:
    path = shared_data / "LeetCodeDataset" / "data" / "LeetCodeDataset-v0.2.0-train.jsonl.gz"
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        rows = fh.read().split("\n")
    return [json.loads(r)["completion"] for r in rows[:n] if r.strip()]


def _mbpp_references(shared_data: Path, n: int) -> list[str]:
    path = shared_data / "MapCoder" / "data" / "MBPPEval" / "MBPP.jsonl"
    rows = path.read_text(encoding="utf-8").split("\n")
    return [json.loads(r)["code"] for r in rows[:n] if r.strip()]


def _check_mutants(code: str, seed: int = 0, max_mutants: int = 12) -> None:
    mutants = mutate_program(code, seed=seed, max_mutants=max_mutants)
    keys = {normalize_code(code, strip_docstrings=False)}
    for m in mutants:
        ast.parse(m.code)
        key = normalize_code(m.code, strip_docstrings=False)
        assert key not in keys, m.description
        keys.add(key)
    assert len(mutants) <= max_mutants


def test_mutants_of_real_leetcode_references_parse_and_are_all_distinct(shared_data: Path):
    refs = _leetcode_references(shared_data, 60)
    assert len(refs) == 60
    for code in refs:
        _check_mutants(code)


def test_mutants_of_real_mbpp_references_parse_and_are_all_distinct(shared_data: Path):
    refs = _mbpp_references(shared_data, 60)  # tabs, \r\n, top-level statements
    made = 0
    for code in refs:
        _check_mutants(code, seed=5)
        made += len(mutate_program(code, seed=5, max_mutants=12))
    assert made > 60 * 5


def test_a_handful_of_mutants_covers_many_kinds():
    mutants = mutate_program(BINARY_SEARCH, seed=0, max_mutants=8)
    assert len(mutants) == 8
    assert len({m.kind for m in mutants}) == 8


@pytest.mark.parametrize(
    ("kind", "expected_fragment"),
    [
        (MutationKind.COMPARE, "nums[mid] <= target"),
        (MutationKind.RANGE_OFF_BY_ONE, "range(65)"),
        (MutationKind.INDEX_OFF_BY_ONE, "nums[mid + 1]"),
        (MutationKind.NEGATE, "if not lo >= hi"),
        (MutationKind.ARITH, "(lo - hi) // 2"),
        (MutationKind.WRONG_RETURN, "return hi"),
        (MutationKind.DROP_ELSE, None),
    ],
)
def test_each_operator_produces_its_textbook_bug(kind, expected_fragment):
    mutants = mutate_program(BINARY_SEARCH, seed=1, max_mutants=100, kinds=[kind])
    assert mutants and all(m.kind is kind for m in mutants)
    if expected_fragment is not None:
        assert any(expected_fragment in m.code for m in mutants), [m.code for m in mutants]
    else:
        assert all("else" not in m.code for m in mutants)


def test_constants_booleans_boolops_and_swapped_arguments():
    code = "def f(a, b):\n    if a and b:\n        return pow(a, 2)\n    return False\n"
    by_kind = {k: [m.code for m in mutate_program(code, max_mutants=50, kinds=[k])] for k in MutationKind}
    assert any("a or b" in c for c in by_kind[MutationKind.BOOLOP])
    assert any("return True" in c for c in by_kind[MutationKind.BOOL_CONSTANT])
    assert any("pow(2, a)" in c for c in by_kind[MutationKind.SWAP_ARGS])
    assert {c.split("pow(a, ")[1][0] for c in by_kind[MutationKind.CONSTANT]} == {"1", "3"}


def test_type_annotations_and_docstrings_are_never_mutated():
    for m in mutate_program(BINARY_SEARCH, seed=2, max_mutants=200):
        assert "List[int]" in m.code and "-> int" in m.code, m.description
        assert "First index whose value is >= target." in m.code


def test_dropped_statement_leaves_a_valid_body():
    code = "def f(x):\n    if x:\n        x += 1\n    return x\n"
    mutants = mutate_program(code, max_mutants=20, kinds=["drop"])
    assert any("if x:\n        pass" in m.code for m in mutants)
    assert all(m.description.endswith("-> (removed)") for m in mutants)


def test_mutation_is_deterministic_given_the_seed_and_varies_with_it():
    first = mutate_program(BINARY_SEARCH, seed=11, max_mutants=6)
    assert first == mutate_program(BINARY_SEARCH, seed=11, max_mutants=6)
    others = {tuple(m.code for m in mutate_program(BINARY_SEARCH, seed=s, max_mutants=6)) for s in range(5)}
    assert len(others) > 1


def test_most_mutants_of_a_simple_function_change_its_behaviour():
    """Executes mutants of our OWN trusted snippet (no loops that a mutant could make infinite)."""
    inputs = [([3, 1, 4, 1, 5, 9, 2, 6], 0), ([3, 1, 4, 1, 5, 9, 2, 6], 2), ([], 0), ([-2, -7], 1), ([5], 0)]

    def outputs(code: str) -> list[object]:
        namespace: dict[str, object] = {}
        exec(compile(code, "<mutant>", "exec"), namespace)  # noqa: S102 - our own snippet
        results: list[object] = []
        for values, start in inputs:
            try:
                results.append(namespace["running_max"](list(values), start))  # type: ignore[operator]
            except Exception as err:  # a crash is a behaviour change too
                results.append(type(err).__name__)
        return results

    expected = outputs(RUNNING_MAX)
    mutants = mutate_program(RUNNING_MAX, seed=0, max_mutants=40)
    assert len(mutants) >= 15
    killed = sum(outputs(m.code) != expected for m in mutants)
    assert killed / len(mutants) >= 0.7


def test_program_without_sites_gives_no_mutants_and_bad_input_raises():
    assert mutate_program("import os\n", max_mutants=5) == []
    with pytest.raises(ValueError, match="does not parse"):
        mutate_program("def f(:\n", max_mutants=5)
    with pytest.raises(ValueError, match="RecursionError"):  # too deep for ast.parse: an error, not a crash
        mutate_program("1" + "+1" * 200_000, max_mutants=5)
    with pytest.raises(ValueError):
        mutate_program("x = 1\n", kinds=["teleport"])


def test_candidate_ids_name_task_index_and_kind():
    mutants = mutate_program(BINARY_SEARCH, seed=0, max_mutants=3)
    ids = mutant_ids("leetcode/35", mutants)
    assert ids == [f"leetcode/35/mut-{k}-{m.kind.value}" for k, m in enumerate(mutants)]
    assert len(set(ids)) == 3


def test_arguments_of_symmetric_builtins_are_not_swapped():
    code = "def f(a, b):\n    return max(a, b) - divmod(a, b)[0]\n"
    swaps = [m.code for m in mutate_program(code, max_mutants=20, kinds=["swap_args"])]
    assert swaps == ["def f(a, b):\n    return max(a, b) - divmod(b, a)[0]"]


def _leetcode_problems(shared_data: Path, task_ids: list[str]):
    from codescaler.records import Problem, TestSuite

    path = shared_data / "LeetCodeDataset" / "data" / "LeetCodeDataset-v0.2.0-train.jsonl.gz"
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        rows = [json.loads(r) for r in fh.read().split("\n") if r.strip()]
    wanted = [r for r in rows if r["task_id"] in task_ids]
    return [Problem(task_id=r["task_id"], prompt=r["query"], tests=TestSuite(functional=r["test"]),
                    entry_point=r["entry_point"], reference=r["completion"], setup=r["prompt"],
                    source="leetcode/train") for r in wanted]


def _run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "codescaler", *args], capture_output=True, text=True,
                          timeout=300, check=False, env={**os.environ, **(env or {})})


def test_cli_writes_reference_and_mutants_as_candidates(shared_data: Path, tmp_path: Path):
    from codescaler import data
    from codescaler.records import Problem

    problems = _leetcode_problems(shared_data, ["two-sum", "add-two-numbers", "palindrome-number"])
    assert len(problems) == 3
    no_ref = Problem(task_id="no-ref", prompt="Print hello.")
    data.write_problems(tmp_path / "problems.jsonl", [*problems, no_ref])
    out = tmp_path / "mutants.jsonl"
    proc = _run_cli("mutate", "--problems", str(tmp_path / "problems.jsonl"), "--output", str(out),
                    "--per-problem", "4", "--seed", "3")
    assert proc.returncode == 0, proc.stderr
    cands = list(data.read_candidates(out))
    ids = [c.candidate_id for c in cands]
    assert len(cands) == 3 * 5 and "two-sum/reference" in ids
    assert all(c.code for c in cands) and not any(c.task_id == "no-ref" for c in cands)
    manifest = json.loads((tmp_path / "mutants.jsonl.manifest.json").read_text(encoding="utf-8"))
    assert manifest["totals"]["with_reference"] == 3 and manifest["totals"]["mutants"] == 12
    assert set(manifest["mutants"]) == {i for i in ids if "/mut-" in i}
    assert {c.mutation for c in cands if "/mut-" in c.candidate_id} <= {k.value for k in MutationKind}
    assert all((c.mutation is None) == c.candidate_id.endswith("/reference") for c in cands)


def test_cli_execute_labels_mutants_and_reports_the_kill_rate(shared_data: Path, tmp_path: Path):
    from codescaler import data
    from codescaler.mutate import canonical_code
    from codescaler.records import Status

    problems = _leetcode_problems(shared_data, ["two-sum", "longest-common-prefix"])
    data.write_problems(tmp_path / "problems.jsonl", problems)
    out, verdicts = tmp_path / "mutants.jsonl", tmp_path / "verdicts.jsonl"
    proc = _run_cli("mutate", "--problems", str(tmp_path / "problems.jsonl"), "--output", str(out),
                    "--per-problem", "3", "--execute", "--verdicts", str(verdicts), "--timeout", "5",
                    "--workers", "2", env={"CODESCALER_CACHE": str(tmp_path / "cache")})
    assert proc.returncode == 0, proc.stderr
    got = {v.candidate_id: v for v in data.read_verdicts(verdicts)}
    assert len(got) == 8
    assert got["two-sum/reference"].status is Status.PASSED
    reference = next(c for c in data.read_candidates(out) if c.candidate_id == "two-sum/reference")
    assert reference.code == canonical_code(problems[0].reference or "")
    execution = json.loads((tmp_path / "mutants.jsonl.manifest.json").read_text(encoding="utf-8"))["execution"]
    assert execution["references_passed"] == 2 and execution["mutants_counted"] == 6
    killed = sum(v.status is not Status.PASSED for k, v in got.items() if "/mut-" in k)
    assert execution["mutants_killed"] == killed


def test_kill_summary_reads_the_kind_field_and_the_ids_of_files_written_before_it():
    from codescaler.mutate import kill_summary
    from codescaler.records import Candidate, Status, Verdict

    candidates = [
        Candidate("a", "a/reference", code="x = 1"),
        Candidate("a", "a/m0", code="x = 2", mutation="compare"),     # the field, whatever the id
        Candidate("a", "a/mut-1-arith", code="x = 3"),                 # an old file: the kind is in the id
        Candidate("a", "a/extra", code="x = 4"),                       # neither: ignored
        Candidate("b", "b/reference", code="y = 1"),
        Candidate("b", "b/mut-0-compare", code="y = 2"),               # its reference fails: not counted
    ]
    verdicts = [Verdict("a", "a/reference", Status.PASSED), Verdict("a", "a/m0", Status.FAILED),
                Verdict("a", "a/mut-1-arith", Status.PASSED), Verdict("a", "a/extra", Status.FAILED),
                Verdict("b", "b/reference", Status.FAILED), Verdict("b", "b/mut-0-compare", Status.FAILED)]
    summary = kill_summary(verdicts, candidates)
    assert (summary["references"], summary["references_passed"]) == (2, 1)
    assert (summary["mutants_counted"], summary["mutants_killed"]) == (2, 1)
    assert summary["kill_rate_by_kind"] == {"arith": {"killed": 0, "total": 1, "rate": 0.0},
                                            "compare": {"killed": 1, "total": 1, "rate": 1.0}}


def test_a_candidate_mutation_survives_the_jsonl_round_trip(tmp_path: Path):
    from codescaler import data
    from codescaler.records import Candidate

    cands = [Candidate("t", "t/1", code="x = 1", mutation="range"), Candidate("t", "t/2", response="hi")]
    data.write_candidates(tmp_path / "c.jsonl", cands)
    assert data.read_candidates(tmp_path / "c.jsonl") == cands


def test_cli_refuses_problems_without_any_reference(tmp_path: Path):
    from codescaler import data
    from codescaler.records import Problem

    data.write_problems(tmp_path / "problems.jsonl", [Problem(task_id="a", prompt="Print hello.")])
    proc = _run_cli("mutate", "--problems", str(tmp_path / "problems.jsonl"), "--output", str(tmp_path / "m.jsonl"))
    assert proc.returncode == 2 and "has a reference" in proc.stderr


def test_reference_and_mutants_share_one_formatting():
    from codescaler.mutate import canonical_code

    original = "def f(x):  # comment\n    return x+1 if x>0 else 'neg'\n"
    canonical = canonical_code(original)
    assert canonical == "def f(x):\n    return x + 1 if x > 0 else 'neg'"
    for m in mutate_program(original, max_mutants=10):
        # every mutant differs from the canonical reference on exactly the mutated line(s), not in style
        assert "#" not in m.code and "x+1" not in m.code
    with pytest.raises(ValueError):
        canonical_code("def (:")


@pytest.mark.parametrize(("settings", "flag"), [
    ({"per_problem": 0}, "--per-problem"), ({"limit": 0}, "--limit"), ({"kinds": ("compare", "teleport")}, "--kinds"),
])
def test_mutate_settings_name_the_bad_setting_by_its_flag(settings: dict, flag: str):
    from codescaler.errors import InputError
    from codescaler.mutate import MutateSettings

    with pytest.raises(InputError) as err:
        MutateSettings(**settings).validate()
    assert err.value.field == flag


def test_mutate_problems_keeps_the_reference_first_and_skips_problems_without_one():
    from codescaler.mutate import MutateSettings, mutate_problems
    from codescaler.records import Problem

    problems = [Problem("none", "p"), Problem("max", "p", reference=RUNNING_MAX), Problem("bad", "p", reference="def f(:")]
    made = mutate_problems(problems, MutateSettings(per_problem=3, seed=1))
    assert [c.candidate_id for c in made.candidates][0] == "max/reference"
    assert len(made.candidates) == 4 and made.with_reference == 2 and made.unparsable == ["bad"]
    assert set(made.descriptions) == {c.candidate_id for c in made.candidates[1:]}
