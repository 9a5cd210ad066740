"""codescaler.data: canonical JSONL formats, the data-folder lookup, and the public dataset converters."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from codescaler import data
from codescaler.data.humaneval import docstring_examples, truncate_at_stop
from codescaler.errors import InputError
from codescaler.records import Candidate, Problem, Status, StdioCase, TestSuite, Verdict

GOOD = {"task_id": "t1", "prompt": "Add two numbers.", "language": "python", "entry_point": "add",
        "tests": "def check(candidate):\n    assert candidate(1, 2) == 3\n"}


def _write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_problems_round_trip_through_gzip_with_u2028_inside_a_prompt(tmp_path: Path):
    problems = [
        Problem("a", "line\u2028separator", tests=TestSuite(functional="def check(c): pass"), entry_point="f",
                visible_tests=TestSuite(functional="def check(c): pass"), reference="def f(): pass",
                setup="import math", source="x/train"),
        Problem("b", "Echo.", tests=TestSuite(stdio=(StdioCase("1\n", "1\n"),)),
                visible_tests=TestSuite(stdio=(StdioCase("2\n", "2\n"),))),
    ]
    data.write_problems(tmp_path / "p.jsonl.gz", problems)
    assert data.read_problems(tmp_path / "p.jsonl.gz") == problems
    data.write_jsonl(tmp_path / "p.jsonl", problems)
    assert len((tmp_path / "p.jsonl").read_text(encoding="utf-8").split("\n")) == 3


def test_malformed_json_line_names_path_and_line(tmp_path: Path):
    path = _write_lines(tmp_path / "p.jsonl", [json.dumps(GOOD), "", '{"task_id": "t2", "prompt": '])
    with pytest.raises(InputError, match=r"p\.jsonl:3: not valid JSON"):
        data.read_problems(path)


@pytest.mark.parametrize(("change", "field", "needle"), [
    ({"task_id": None}, "task_id", "missing"),
    ({"prompt": None}, "prompt", "missing"),
    ({"language": "cobol"}, "language", "unknown language 'cobol'"),
    ({"entry_point": None}, "entry_point", "need an entry point"),
    ({"tests": None}, "tests", "has no tests"),
    ({"stdio": [{"input": "1"}]}, "stdio", "case 0"),
])
def test_invalid_problem_rows_raise_input_error_naming_line_and_field(tmp_path: Path, change, field, needle):
    row = {k: v for k, v in {**GOOD, **change}.items() if v is not None}
    path = _write_lines(tmp_path / "p.jsonl", [json.dumps({**GOOD, "task_id": "ok"}), json.dumps(row)])
    with pytest.raises(InputError) as err:
        data.read_problems(path)
    assert err.value.line == 2 and err.value.field == field and needle in str(err.value) and err.value.fix


def test_duplicate_task_id_is_rejected(tmp_path: Path):
    path = _write_lines(tmp_path / "p.jsonl", [json.dumps(GOOD), json.dumps(GOOD)])
    with pytest.raises(InputError, match=r"p\.jsonl:2: field 'task_id': duplicate task_id 't1' \(first on line 1\)"):
        data.read_problems(path)


def test_candidates_need_response_or_code(tmp_path: Path):
    path = _write_lines(tmp_path / "c.jsonl", ['{"task_id": "t", "candidate_id": 3, "code": "x=1"}',
                                               '{"task_id": "t", "candidate_id": "4"}'])
    with pytest.raises(InputError, match=r"c\.jsonl:2: field 'response': neither"):
        data.read_candidates(path)


def test_verdicts_skip_a_torn_tail_but_not_a_torn_middle_line(tmp_path: Path):
    ok = json.dumps(data.verdict_to_json(Verdict("t", "1", Status.PASSED, 3, 3, 0.25, "")))
    torn = tmp_path / "v.jsonl"
    torn.write_text(ok + "\n" + ok[:20], encoding="utf-8")
    assert [v.status for v in data.read_verdicts(torn)] == [Status.PASSED]
    with pytest.raises(InputError, match=r"v\.jsonl:2"):
        data.read_verdicts(torn, tolerate_torn_tail=False)
    middle = tmp_path / "m.jsonl"
    middle.write_text(ok[:20] + "\n" + ok + "\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"m\.jsonl:1"):
        data.read_verdicts(middle)


def test_unknown_verdict_status_lists_the_accepted_ones():
    with pytest.raises(InputError, match="unknown status 'ok'.*passed, failed"):
        data.verdict_from_json({"task_id": "t", "candidate_id": "1", "status": "ok"})


def test_atomic_write_keeps_the_old_file_when_serialisation_fails(tmp_path: Path):
    path = tmp_path / "c.jsonl"
    data.write_candidates(path, [Candidate("t", "0", code="old")])
    before = path.read_bytes()

    def rows():
        yield Candidate("t", "1", code="new")
        yield {"bad": object()}  # not JSON-serialisable

    with pytest.raises(TypeError):
        data.write_jsonl(path, rows())
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["c.jsonl"]


def test_append_jsonl_writes_one_flushed_line(tmp_path: Path):
    path = tmp_path / "v.jsonl"
    with open(path, "a", encoding="utf-8") as fh:
        data.append_jsonl(fh, Verdict("t", "1", Status.TIMEOUT))
        assert data.read_verdicts(path)[0].status is Status.TIMEOUT


def test_locate_data_dir_prefers_flag_then_env_and_names_both_when_missing(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("CODESCALER_DATA", str(tmp_path))
    assert data.locate_data_dir(None) == tmp_path
    assert data.locate_data_dir(str(tmp_path / ".")) == tmp_path / "."
    with pytest.raises(InputError, match="--data-dir.*CODESCALER_DATA"):
        data.locate_data_dir(str(tmp_path / "missing"))
    monkeypatch.setenv("CODESCALER_DATA", str(tmp_path / "nope"))
    with pytest.raises(InputError, match="from CODESCALER_DATA"):
        data.locate_data_dir(None)


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read anything")
def test_unreadable_data_dir_is_an_input_error(tmp_path: Path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0)
    try:
        with pytest.raises(InputError, match="not readable"):
            data.locate_data_dir(str(locked))
    finally:
        locked.chmod(0o700)


def test_docstring_examples_cover_the_common_humaneval_forms():
    prompt = ('def f(x):\n    """\n    >>> f(1)\n    2\n    f([3]) ➞ [4]\n    f("a") should return "b".\n'
              '    f(2) => true\n    f(5) ==> ("x")\n    >>> f(7) == 8\n    """\n')
    assert docstring_examples(prompt, "f") == [("1", "2"), ("[3]", "[4]"), ("'a'", '"b"'), ("7", "8")]


def test_humaneval_has_164_problems_and_visible_tests_from_docstrings():
    problems = data.load_dataset_problems("humaneval")
    by_id = {p.task_id: p for p in problems}
    assert len(problems) == 164 and all(p.entry_point and p.reference and p.tests.functional for p in problems)
    assert sum(p.visible_tests is not None for p in problems) == 133
    vis = by_id["HumanEval/72"].visible_tests
    assert vis is not None and "assert candidate([3, 2, 3], 9) == True" in str(vis.functional)
    assert "abs(candidate(3.5) - 0.5) <= 1e-6" in str(by_id["HumanEval/2"].visible_tests.functional)  # type: ignore[union-attr]


def test_visible_tests_pass_the_canonical_solutions(tmp_path: Path):
    problems = [p for p in data.load_dataset_problems("humaneval") if p.visible_tests]
    script = ("import json,sys\nbad=[]\nfor p in json.load(sys.stdin):\n ns={}\n"
              " try:\n  exec(p['reference'], ns); exec(p['visible'], ns); ns['check'](ns[p['entry']])\n"
              " except Exception as e: bad.append(p['id'])\nprint(json.dumps(bad))\n")
    job = [{"id": p.task_id, "reference": p.reference, "visible": p.visible_tests.functional,  # type: ignore[union-attr]
            "entry": p.entry_point} for p in problems]
    out = subprocess.run([sys.executable, "-I", "-c", script], input=json.dumps(job), capture_output=True,
                         text=True, timeout=120, check=True)
    # HumanEval's own docstrings are wrong for median (47) and sort_array (116); everything else agrees.
    assert json.loads(out.stdout) == ["HumanEval/47", "HumanEval/116"]


def test_stop_sequences_cut_at_the_first_one():
    assert truncate_at_stop("    return 1\n\ndef g():\n#x", ["\n#", "\ndef"]) == "    return 1\n"


@pytest.mark.slow  # parses tens of thousands of samples (yaml); about a minute on a loaded box
def test_public_dataset_counts(shared_data: Path):
    counts = {name: len(data.load_dataset_problems(name, shared_data)) for name in
              ["mbpp", "leetcode-train", "leetcode-test", "leetcode-test-v0.3.1", "apps-150", "humanevalpack-python",
               "humanevalpack-rust", "codex-humaneval-cpp"]}
    assert counts == {"mbpp": 974, "leetcode-train": 1890, "leetcode-test": 200, "leetcode-test-v0.3.1": 228,
                      "apps-150": 128, "humanevalpack-python": 164, "humanevalpack-rust": 164,
                      "codex-humaneval-cpp": 161}


@pytest.mark.slow  # parses tens of thousands of samples (yaml); about a minute on a loaded box
def test_codex_python_samples_and_labels_match_the_published_counts(shared_data: Path):
    cands, labels = data.load_dataset_candidates("codex-humaneval-python", shared_data)
    assert labels is not None and len(cands) == len(labels) == 32200
    assert sum(v.status is Status.PASSED for v in labels) == 13554
    problem = data.load_dataset_problems("codex-humaneval-python", shared_data)[0]
    assert "test_check" not in str(problem.tests.functional) and problem.entry_point == "has_close_elements"
    assert all("\ndef " not in c.code.split('"""')[-1] for c in cands[:200] if c.code)


def test_mbpp_tests_bind_the_function_name_and_show_one_visible_test(shared_data: Path):
    first = data.load_dataset_problems("mbpp", shared_data)[0]
    assert first.task_id == "Mbpp/1" and first.entry_point == "min_cost"
    assert "globals()['min_cost'] = candidate" in str(first.tests.functional)
    assert str(first.visible_tests.functional).count("assert") == 1  # type: ignore[union-attr]


def test_leetcode_and_apps_fields(shared_data: Path):
    two_sum = data.load_dataset_problems("leetcode-train", shared_data)[0]
    assert two_sum.entry_point == "Solution().twoSum" and "from typing import" in two_sum.setup
    assert two_sum.reference and two_sum.prompt.startswith("Given an array")
    apps = data.load_dataset_problems("apps-150", shared_data)
    assert all(p.tests.stdio and p.reference is None for p in apps)


def test_humanevalpack_candidates_are_labelled_canonical_pass_buggy_fail(shared_data: Path):
    cands, labels = data.load_dataset_candidates("humanevalpack-go", shared_data)
    assert len(cands) == 328 and labels is not None
    assert {(v.candidate_id, v.status) for v in labels} == {("canonical", Status.PASSED), ("buggy", Status.FAILED)}


@pytest.mark.slow  # parses tens of thousands of samples (yaml); about a minute on a loaded box
def test_codegen_samples_and_generated_tests(shared_data: Path):
    cands, labels = data.load_dataset_candidates("codegen16b-humaneval", shared_data)
    assert len(cands) == 16400 and labels is None
    tests = data.load_generated_tests(shared_data)
    assert len(tests) == 164 and all(t.startswith("assert ") for t in tests["HumanEval/0"])


def test_unknown_dataset_name_lists_the_known_ones():
    with pytest.raises(InputError, match="unknown dataset 'humaneva'.*humaneval"):
        data.load_dataset_problems("humaneva")


def test_hub_loading_offline_points_to_the_local_copy(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(InputError, match="offline.*--data-dir.*CODESCALER_DATA"):
        data.load_from_hub("humaneval")


def test_small_evalplus_check_source_compares_floats_with_tolerance(tmp_path: Path):
    from codescaler.data.evalplus import build_check, run_reference

    code = "def half(x):\n    return x / 3\n"
    outputs = run_reference(code, "half", [[1], [3], ["s"]], timeout=30)
    assert outputs[1] == "1.0" and outputs[2] is None
    source, kept, dropped = build_check([[1], [3], ["s"]], outputs, 0)
    assert (kept, dropped) == (2, 1)
    ns: dict = {}
    exec(source, ns)
    ns["check"](lambda x: round(x / 3, 9))
    with pytest.raises(AssertionError):
        ns["check"](lambda x: x / 2)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "codescaler", "data", *args], capture_output=True, text=True,
                          timeout=120, check=False)


def test_cli_lists_datasets_with_eval_only_flags():
    proc = _cli("--list")
    assert proc.returncode == 0
    lines = {line.split()[0]: line for line in proc.stdout.split("\n") if line.strip()}
    assert "EVAL-ONLY" in lines["humaneval"] and "TRAIN" in lines["mbpp"] and "EVAL-ONLY" in lines["leetcode-test"]


def test_cli_converts_humaneval_with_a_manifest(tmp_path: Path):
    proc = _cli("humaneval", "--output-dir", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert len(data.read_problems(tmp_path / "problems.jsonl")) == 164
    manifest = json.loads((tmp_path / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["eval_only"] is True and manifest["counts"]["with_visible_tests"] == 133
    assert len(manifest["inputs"][0]["sha256"]) == 64


def test_cli_bad_data_dir_exits_2_naming_the_flag(tmp_path: Path):
    proc = _cli("mbpp", "--output-dir", str(tmp_path), "--data-dir", str(tmp_path / "none"))
    assert proc.returncode == 2 and "--data-dir" in proc.stderr and "Traceback" not in proc.stderr


def test_evalplus_outputs_are_computed_once_then_read_from_the_cache(tmp_path: Path, monkeypatch):
    from codescaler.data import evalplus

    rows = [{"task_id": "HumanEval/0", "prompt": "def inc(x):\n", "entry_point": "inc", "atol": 0,
             "canonical_solution": "    return x + 1\n", "base_input": [[1], [2.5]], "plus_input": [["s"]]},
            {"task_id": "HumanEval/1", "prompt": "import collections\ndef count(xs):\n", "entry_point": "count",
             "atol": 0, "canonical_solution": "    return collections.Counter(xs)\n",
             "base_input": [[[1, 1, 2]]], "plus_input": {}}]
    target = tmp_path / "data" / "humanevalplus_release" / "HumanEvalPlus.jsonl.gz"
    target.parent.mkdir(parents=True)
    with gzip.open(target, "wt", encoding="utf-8") as fh:
        fh.write("\n".join(json.dumps(r) for r in rows) + "\n")
    first = evalplus.load_evalplus(tmp_path / "data", "humaneval-plus", tmp_path / "cache")
    assert [evalplus.parse_case_literals(str(p.tests.functional)) for p in first] == [2, 1]

    def no_run(*args, **kwargs):
        raise AssertionError("expected outputs should come from the cache")

    monkeypatch.setattr(evalplus, "run_reference", no_run)
    assert evalplus.load_evalplus(tmp_path / "data", "humaneval-plus", tmp_path / "cache") == first
    ns: dict = {}
    exec(str(first[1].tests.functional), ns)
    ns["check"](lambda xs: {1: 2, 2: 1})


@pytest.mark.slow  # runs every MBPP+ / HumanEval+ reference once (minutes), then uses the cache
@pytest.mark.parametrize(("name", "least"), [("mbpp-plus", 375), ("humaneval-plus", 164)])
def test_evalplus_sets_compute_expected_outputs(shared_data: Path, name: str, least: int):
    from codescaler.data.evalplus import parse_case_literals

    problems = data.load_dataset_problems(name, shared_data)
    assert least <= len(problems) <= {"mbpp-plus": 378, "humaneval-plus": 164}[name]
    assert all(parse_case_literals(str(p.tests.functional)) > 0 and p.reference for p in problems)


def test_a_file_given_as_data_dir_is_rejected_naming_the_env_var(tmp_path: Path):
    not_a_dir = tmp_path / "data.txt"
    not_a_dir.write_text("x", encoding="utf-8")
    with pytest.raises(InputError, match="not a directory.*CODESCALER_DATA"):
        data.locate_data_dir(str(not_a_dir))


def test_mapcoder_results_join_their_problems_with_is_solved_labels(shared_data: Path):
    cands, labels = data.load_dataset_candidates("mapcoder-apps", shared_data)
    problems = {p.task_id for p in data.load_dataset_problems("mapcoder-apps", shared_data)}
    assert labels is not None and len(cands) == len(labels) == 1479 and {c.task_id for c in cands} <= problems
    assert sum(v.status is Status.PASSED for v in labels) == 172
    assert len({c.candidate_id.split("#")[0] for c in cands}) == 10 and "GPT4/GPT4-Turbo-CoT-APPS-Python3-0-1" in {c.candidate_id for c in cands}


def test_llmdebugger_seeds_that_are_function_bodies_get_the_prompt_prefixed(shared_data: Path):
    problems = {p.task_id: p for p in data.load_dataset_problems("llmdebugger-humaneval", shared_data)}
    cands, labels = data.load_dataset_candidates("llmdebugger-humaneval", shared_data)
    assert len(problems) == 164 and labels is not None and len(cands) == len(labels) == 806
    reflexion = [c for c in cands if c.candidate_id == "seed/reflexion"]
    assert reflexion and all(f"def {problems[c.task_id].entry_point}" in str(c.code) for c in reflexion)
    assert all(p.visible_tests is not None and "import math" in p.setup for p in problems.values())


def test_llmdebugger_transcoder_skips_problems_whose_tests_are_python2(shared_data: Path):
    problems = data.load_dataset_problems("llmdebugger-transcoder", shared_data)
    assert len(problems) == 548 and "TransCoder/271" not in {p.task_id for p in problems}


def test_cli_format_verl_writes_a_parquet_with_verls_columns_that_compute_score_reads(tmp_path: Path):
    import pandas as pd

    from codescaler.integrations.verl import problem_from_extra_info

    proc = _cli("humaneval", "--output-dir", str(tmp_path), "--format", "verl")
    assert proc.returncode == 0, proc.stderr
    frame = pd.read_parquet(tmp_path / "humaneval.parquet")
    assert len(frame) == 164
    assert {"data_source", "prompt", "ability", "reward_model", "extra_info"} <= set(frame.columns)
    row = frame.iloc[3]
    problem = data.load_dataset_problems("humaneval")[3]
    messages = list(row["prompt"])
    assert [m["role"] for m in messages] == ["user"] and problem.prompt.strip() in messages[0]["content"]
    assert "```python" in messages[0]["content"]  # the instruction `codescaler sample` gives the policy
    assert row["data_source"] == "codescaler/humaneval" and row["ability"] == "code"
    assert row["reward_model"]["style"] == "model" and json.loads(row["reward_model"]["ground_truth"])
    info = dict(row["extra_info"])
    assert info["question"] == problem.prompt and info["index"] == 3 and info["split"] == "test"
    assert info["task_id"] == problem.task_id and info["language"] == "python"
    # verl hands extra_info to compute_score as it was read: the problem must come out of it.
    assert problem_from_extra_info(info) == (problem.prompt, "python")
    manifest = json.loads((tmp_path / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["outputs"] == ["humaneval.parquet"] and manifest["format"] == "verl"


def test_cli_unknown_format_exits_2():
    proc = _cli("humaneval", "--output-dir", "x", "--format", "arrow")
    assert proc.returncode == 2 and "--format" in proc.stderr and "Traceback" not in proc.stderr
