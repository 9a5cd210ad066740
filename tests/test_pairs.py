"""Tests for codescaler.pairs: the pairing rules, curation options, determinism and errors."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from codescaler.errors import InputError
from codescaler.pairs import PairRule, PairSettings, build_pairs, normalize_code, shown_text
from codescaler.records import Candidate, ExtractMode, Language, Problem, Status, Verdict

GOOD = [
    "def add(a, b):\n    return a + b\n",
    "def add(a, b):\n    total = a + b\n    return total\n",
    "def add(a, b):\n    return sum([a, b])\n",
    "def add(a, b):\n    result = a\n    result += b\n    return result\n",
    "def add(a, b):\n    return b + a\n",
    "def add(a, b):\n    import operator\n    return operator.add(a, b)\n",
]
BAD = [
    "def add(a, b):\n    return a - b\n",
    "def add(a, b):\n    return a * b\n",
    "def add(a, b):\n    return a\n",
    "def add(a, b):\n    return str(a) + str(b)\n",
    "def add(a, b):\n    while True:\n        pass\n",
    "def add(a, b):\n    raise NotImplementedError\n",
]
BAD_STATUS = [Status.FAILED, Status.FAILED, Status.FAILED, Status.FAILED, Status.TIMEOUT, Status.CRASHED]


def _problem(task_id: str = "add") -> Problem:
    return Problem(task_id=task_id, prompt=f"Write `add(a, b)` for task {task_id}.", entry_point="add")


def _labelled(task_id: str, good: list[str], bad: list[str], statuses: list[Status] | None = None):
    cands, verdicts = [], []
    for i, code in enumerate(good):
        cid = f"{task_id}/g{i}"
        cands.append(Candidate(task_id, cid, code=code))
        verdicts.append(Verdict(task_id, cid, Status.PASSED, 3, 3))
    for i, code in enumerate(bad):
        cid = f"{task_id}/b{i}"
        cands.append(Candidate(task_id, cid, code=code))
        status = (statuses or BAD_STATUS)[i % len(statuses or BAD_STATUS)]
        verdicts.append(Verdict(task_id, cid, status, 1, 3))
    return cands, verdicts


def test_codescaler_rule_pairs_every_passing_with_every_failing_program_without_a_cap():
    cands, verdicts = _labelled("add", GOOD[:2], BAD[:3])
    result = build_pairs([_problem()], cands, verdicts, PairSettings(max_pairs_per_problem=None))
    got = {(p.chosen_id, p.rejected_id) for p in result.pairs}
    assert got == {(f"add/g{i}", f"add/b{j}") for i in range(2) for j in range(3)}
    pair = result.pairs[0]
    assert pair.prompt == _problem().prompt
    assert pair.chosen.startswith("```python\n") and pair.chosen.endswith("\n```")
    assert pair.margin == pytest.approx(1 - 1 / 3, abs=1e-6)
    assert result.manifest["totals"]["pairs"] == 6
    assert result.manifest["per_problem"]["add"]["eligible_pairs"] == 6


def test_pair_carries_the_raw_response_when_the_candidate_has_one():
    response = "Here you go:\n\n```python\ndef add(a, b):\n    return a + b\n```\nDone."
    cand = Candidate("add", "r1", response=response, code="def add(a, b):\n    return a + b\n")
    assert shown_text(cand, Language.PYTHON) == response
    cands, verdicts = _labelled("add", [], BAD[:1])
    result = build_pairs([_problem()], [cand, *cands], [Verdict("add", "r1", Status.PASSED, 3, 3), *verdicts])
    assert result.pairs[0].chosen == response


def test_normalisation_ignores_comments_formatting_and_docstrings():
    a = 'def f(x):\n    """Square it."""\n    # why not\n    return x*x   # square\n'
    b = "def f( x ):\n\n    return (x * x)\n"
    assert normalize_code(a) == normalize_code(b)
    assert normalize_code(a, strip_docstrings=False) != normalize_code(b, strip_docstrings=False)
    assert normalize_code("def broken(:\n   pass   \n\n") == "def broken(:\npass"


def test_dedup_keeps_one_of_the_programs_that_differ_only_in_comments():
    variants = [GOOD[0], GOOD[0].replace("return", "# add them\n    return"), "def add(a,b): return a+b\n"]
    cands, verdicts = _labelled("add", variants, BAD[:2])
    opts = PairSettings(max_pairs_per_problem=None)
    assert len(build_pairs([_problem()], cands, verdicts, opts).pairs) == 2
    no_dedup = PairSettings(max_pairs_per_problem=None, dedup=False)
    assert len(build_pairs([_problem()], cands, verdicts, no_dedup).pairs) == 6


def test_a_program_labelled_both_passing_and_failing_is_never_paired_with_itself():
    # a flaky program: one run passed, a reformatted copy timed out
    cands, verdicts = _labelled("add", [GOOD[0]], ["def add(a, b):  # flaky\n    return a + b\n"],
                                [Status.TIMEOUT])
    result = build_pairs([_problem()], cands, verdicts, PairSettings(dedup=False))
    assert result.pairs == []
    assert "no problem has both" in result.manifest["empty_reason"]


def test_cap_uses_every_candidate_as_evenly_as_possible():
    cands, verdicts = _labelled("add", GOOD, BAD)
    result = build_pairs([_problem()], cands, verdicts, PairSettings(max_pairs_per_problem=6, seed=3))
    assert len(result.pairs) == 6
    assert Counter(p.chosen_id for p in result.pairs) == Counter({f"add/g{i}": 1 for i in range(6)})
    assert Counter(p.rejected_id for p in result.pairs) == Counter({f"add/b{i}": 1 for i in range(6)})
    result = build_pairs([_problem()], cands, verdicts, PairSettings(max_pairs_per_problem=9, seed=3))
    uses = Counter(p.chosen_id for p in result.pairs) + Counter(p.rejected_id for p in result.pairs)
    assert max(uses.values()) - min(uses.values()) <= 1


def test_selection_is_deterministic_given_the_seed_and_varies_with_it():
    cands, verdicts = _labelled("add", GOOD, BAD)
    picks = {}
    for seed in range(6):
        runs = [build_pairs([_problem()], cands, verdicts, PairSettings(max_pairs_per_problem=5, seed=seed))
                for _ in range(2)]
        assert runs[0].pairs == runs[1].pairs
        picks[seed] = tuple((p.chosen_id, p.rejected_id) for p in runs[0].pairs)
    assert len(set(picks.values())) > 1


def test_responses_without_code_are_rejected_only_when_invalid_rejections_are_allowed():
    cands, verdicts = _labelled("add", GOOD[:1], [])
    cands.append(Candidate("add", "add/empty", code=None, response="I cannot solve this."))
    verdicts.append(Verdict("add", "add/empty", Status.NO_CODE))
    opts = PairSettings(include_invalid_rejected=True)
    result = build_pairs([_problem()], cands, verdicts, opts)
    assert [(p.chosen_id, p.rejected_id) for p in result.pairs] == [("add/g0", "add/empty")]
    assert result.pairs[0].rejected == "I cannot solve this."
    opts = PairSettings(include_invalid_rejected=False)
    assert build_pairs([_problem()], cands, verdicts, opts).pairs == []


def test_harness_errors_label_nothing_and_are_counted():
    cands, verdicts = _labelled("add", GOOD[:1], BAD[:1])
    verdicts[1] = Verdict("add", "add/b0", Status.ERROR, detail="bwrap failed")
    result = build_pairs([_problem()], cands, verdicts)
    assert result.pairs == []
    assert result.manifest["totals"]["harness_errors"] == 1


def test_pass_rate_rule_needs_a_good_enough_chosen_and_a_wide_enough_gap():
    codes = [GOOD[0], GOOD[1], BAD[0], BAD[1], BAD[2]]
    rates = [(5, 5), (4, 5), (2, 5), (3, 5), (0, 5)]  # 1.0, 0.8, 0.4, 0.6, 0.0
    cands = [Candidate("add", f"c{i}", code=c) for i, c in enumerate(codes)]
    verdicts = [Verdict("add", f"c{i}", Status.PASSED if p == t else Status.FAILED, p, t)
                for i, (p, t) in enumerate(rates)]
    opts = PairSettings(rule=PairRule.PASS_RATE, max_pairs_per_problem=None)
    got = {(p.chosen_id, p.rejected_id): p.margin for p in build_pairs([_problem()], cands, verdicts, opts).pairs}
    assert got == {("c0", "c2"): 0.6, ("c0", "c3"): 0.4, ("c0", "c4"): 1.0, ("c1", "c2"): 0.4, ("c1", "c4"): 0.8}


def test_length_balance_makes_longer_and_shorter_rejections_equally_common():
    long_bad = ["def add(a, b):\n    " + "x = 0\n    " * (5 + i) + "return a - b\n" for i in range(4)]
    problems, cands, verdicts = [], [], []
    for t in range(5):
        task = f"t{t}"
        problems.append(_problem(task))
        bad = long_bad if t < 4 else ["def add(a, b):\n    return 0\n"]
        c, v = _labelled(task, GOOD[:3], bad)
        cands += c
        verdicts += v
    plain = build_pairs(problems, cands, verdicts, PairSettings(max_pairs_per_problem=None))
    assert plain.manifest["length_balance"]["before"]["fraction_rejected_longer"] == pytest.approx(48 / 51, abs=1e-4)
    balanced = build_pairs(problems, cands, verdicts, PairSettings(max_pairs_per_problem=None, length_balance=True))
    stats = balanced.manifest["length_balance"]["after"]
    assert stats["rejected_longer"] == stats["rejected_shorter"] == 3
    assert stats["fraction_rejected_longer"] == 0.5
    # drops come from the problems holding the most longer-rejected pairs: the 3 left are spread out
    kept = [balanced.manifest["per_problem"][f"t{t}"]["pairs"] for t in range(5)]
    assert max(kept[:4]) == 1 and kept[4] == 3


def test_cross_problem_negatives_take_the_requested_share_and_come_from_other_problems():
    problems, cands, verdicts = [], [], []
    for t in range(4):
        problems.append(_problem(f"t{t}"))
        c, v = _labelled(f"t{t}", [GOOD[t]], BAD[:3])
        cands += c
        verdicts += v
    result = build_pairs(problems, cands, verdicts, PairSettings(cross_problem_fraction=0.25, seed=1))
    cross = [p for p in result.pairs if not p.rejected_id.startswith(p.task_id + "/")]
    assert len(result.pairs) == 16 and len(cross) == 4
    for p in cross:
        assert p.rejected_id.endswith("/g0") and p.margin == 1.0
    assert result.manifest["totals"]["cross_problem_pairs"] == 4


def test_chosen_and_rejected_texts_are_never_identical_on_real_mbpp_solutions(shared_data: Path):
    """Real GPT-4/ChatGPT MBPP solutions with their is_solved labels (MapCoder final results)."""
    problems: dict[str, Problem] = {}
    cands: list[Candidate] = []
    verdicts: list[Verdict] = []
    for path in sorted((shared_data / "MapCoder" / "final-results").glob("*/MBPP/*.jsonl")):
        for line in path.read_text(encoding="utf-8").split("\n"):
            if not line.strip():
                continue
            row = json.loads(line)
            code = row.get("solution") or (row.get("source_codes") or [""])[-1]
            if not code.strip():
                continue
            task = row["name"]
            problems.setdefault(task, Problem(task_id=task, prompt=row["prompt"], entry_point=row["entry_point"]))
            cid = f"{task}/{path.stem}"
            if any(c.candidate_id == cid for c in cands[-12:]):
                continue
            cands.append(Candidate(task, cid, code=code))
            verdicts.append(Verdict(task, cid, Status.PASSED if row["is_solved"] else Status.FAILED))
    assert len(problems) > 300
    result = build_pairs(problems.values(), cands, verdicts, PairSettings(max_pairs_per_problem=4, seed=0))
    assert 50 < len(result.pairs) <= 4 * len(problems)
    for p in result.pairs:
        assert p.chosen != p.rejected
        assert normalize_code(p.chosen.strip("`\npython")) != normalize_code(p.rejected.strip("`\npython"))


def test_verdict_for_an_unknown_candidate_is_an_input_error_naming_the_file():
    cands, verdicts = _labelled("add", GOOD[:1], BAD[:1])
    verdicts.append(Verdict("add", "add/ghost", Status.PASSED))
    with pytest.raises(InputError) as info:
        build_pairs([_problem()], cands, verdicts, paths={"verdicts": "v.jsonl"})
    assert "v.jsonl" in str(info.value) and "add/ghost" in str(info.value)


@pytest.mark.parametrize("which", ["problems", "candidates", "verdicts"])
def test_empty_inputs_are_input_errors(which):
    cands, verdicts = _labelled("add", GOOD[:1], BAD[:1])
    args = {"problems": [_problem()], "candidates": cands, "verdicts": verdicts}
    args[which] = []
    with pytest.raises(InputError, match=f"no {which}"):
        build_pairs(args["problems"], args["candidates"], args["verdicts"])


def test_duplicate_candidates_and_unknown_tasks_are_input_errors():
    cands, verdicts = _labelled("add", GOOD[:1], BAD[:1])
    with pytest.raises(InputError, match="duplicate candidate_id"):
        build_pairs([_problem()], cands + cands[:1], verdicts)
    with pytest.raises(InputError, match="unknown task_id 'other'"):
        build_pairs([_problem()], [*cands, Candidate("other", "x", code="pass")], verdicts)
    with pytest.raises(InputError, match="min_gap"):
        build_pairs([_problem()], cands, verdicts, PairSettings(min_gap=0.0))


def test_responses_are_extracted_strictly_so_a_two_block_answer_cannot_be_chosen():
    one_block = "Sure.\n```python\ndef add(a, b):\n    return a + b\n```\n"
    two_blocks = one_block + "Or shorter:\n```python\nadd = lambda a, b: a + b\n```\n"
    wrong = "```python\ndef add(a, b):\n    return a - b\n```"
    cands = [Candidate("add", "one", response=one_block), Candidate("add", "two", response=two_blocks),
             Candidate("add", "bad", response=wrong)]
    verdicts = [Verdict("add", "one", Status.PASSED, 3, 3), Verdict("add", "two", Status.PASSED, 3, 3),
                Verdict("add", "bad", Status.FAILED, 0, 3)]
    result = build_pairs([_problem()], cands, verdicts)
    assert [(p.chosen_id, p.rejected_id) for p in result.pairs] == [("one", "bad")]
    # lenient mode reads the first block of "two": the same program as "one", so dedup keeps one of them
    lenient = PairSettings(extract_mode=ExtractMode.LENIENT)
    assert {p.chosen_id for p in build_pairs([_problem()], cands, verdicts, lenient).pairs} == {"one"}
    lenient = PairSettings(extract_mode=ExtractMode.LENIENT, dedup=False)
    assert {p.chosen_id for p in build_pairs([_problem()], cands, verdicts, lenient).pairs} == {"one", "two"}


def _run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "codescaler", *args], capture_output=True, text=True,
                          timeout=120, check=False)


def _write_inputs(tmp_path: Path, problems, cands, verdicts) -> list[str]:
    from codescaler import data

    paths = [tmp_path / "problems.jsonl", tmp_path / "candidates.jsonl", tmp_path / "verdicts.jsonl"]
    data.write_problems(paths[0], problems)
    data.write_candidates(paths[1], cands)
    data.write_verdicts(paths[2], verdicts)
    return ["--problems", str(paths[0]), "--candidates", str(paths[1]), "--verdicts", str(paths[2])]


def test_cli_writes_pairs_and_a_manifest_with_input_hashes(tmp_path: Path):
    problems = [_problem("t0"), _problem("t1")]
    c0, v0 = _labelled("t0", GOOD[:3], BAD[:3])
    c1, v1 = _labelled("t1", GOOD[3:], BAD[3:])
    inputs = _write_inputs(tmp_path, problems, c0 + c1, v0 + v1)
    out = tmp_path / "pairs.jsonl"
    proc = _run_cli("pairs", *inputs, "--output", str(out), "--max-pairs-per-problem", "4", "--seed", "7")
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").split("\n") if line]
    assert len(rows) == 8
    assert set(rows[0]) >= {"task_id", "prompt", "chosen", "rejected", "chosen_id", "rejected_id", "margin"}
    manifest = json.loads((tmp_path / "pairs.jsonl.manifest.json").read_text(encoding="utf-8"))
    assert manifest["rule"] == "codescaler" and manifest["seed"] == 7
    assert manifest["options"]["max_pairs_per_problem"] == 4
    assert set(manifest["input_hashes"]) == {"problems", "candidates", "verdicts"}
    assert manifest["totals"]["pairs"] == 8 and manifest["per_problem"]["t1"]["pairs"] == 4
    again = tmp_path / "again.jsonl"
    _run_cli("pairs", *inputs, "--output", str(again), "--max-pairs-per-problem", "4", "--seed", "7")
    assert again.read_bytes() == out.read_bytes()


def test_cli_explains_why_no_pairs_were_formed(tmp_path: Path):
    cands, verdicts = _labelled("add", GOOD[:3], [])
    inputs = _write_inputs(tmp_path, [_problem()], cands, verdicts)
    proc = _run_cli("pairs", *inputs, "--output", str(tmp_path / "p.jsonl"))
    assert proc.returncode == 2
    assert "no pairs formed" in proc.stderr and "1 problems with only positives" in proc.stderr
    assert not (tmp_path / "p.jsonl").exists()


def test_cli_rejects_verdicts_of_unknown_candidates_naming_the_file(tmp_path: Path):
    cands, verdicts = _labelled("add", GOOD[:1], BAD[:1])
    inputs = _write_inputs(tmp_path, [_problem()], cands[:1], verdicts)
    proc = _run_cli("pairs", *inputs, "--output", str(tmp_path / "p.jsonl"))
    assert proc.returncode == 2
    assert "verdicts.jsonl" in proc.stderr and "add/b0" in proc.stderr and "Traceback" not in proc.stderr


def test_cli_pairs_a_candidate_too_deeply_nested_to_parse_without_a_traceback(tmp_path: Path):
    deep = "1" + "+1" * 200_000  # ast.parse raises RecursionError on it (not SyntaxError)
    cands, verdicts = _labelled("add", GOOD[:1], BAD[:1])
    cands.append(Candidate("add", "add/deep", code=deep))
    verdicts.append(Verdict("add", "add/deep", Status.FAILED, 0, 3))
    inputs = _write_inputs(tmp_path, [_problem()], cands, verdicts)
    out = tmp_path / "p.jsonl"
    proc = _run_cli("pairs", *inputs, "--output", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").split("\n") if line]
    assert {r["rejected_id"] for r in rows} == {"add/b0", "add/deep"}


def test_pairs_written_to_a_file_read_back_as_the_same_records_through_the_one_reader(tmp_path: Path):
    from dataclasses import replace

    from codescaler import data
    from codescaler.bench.pairwise import read_eval_pairs
    from codescaler.training import read_pairs as read_training_pairs

    cands, verdicts = _labelled("add", GOOD[:2], BAD[:2])
    cpp = Problem(task_id="cpp/add", prompt="Write add in C++.", language=Language.CPP)
    cands.append(Candidate("cpp/add", "c0", code="int add(int a, int b) { return a + b; }"))
    cands.append(Candidate("cpp/add", "c1", code="int add(int a, int b) { return a - b; }"))
    verdicts += [Verdict("cpp/add", "c0", Status.PASSED, 1, 1), Verdict("cpp/add", "c1", Status.FAILED, 0, 1)]
    pairs = build_pairs([_problem(), cpp], cands, verdicts).pairs
    path = tmp_path / "pairs.jsonl"
    data.write_pairs(path, pairs)
    back = data.read_pairs(path)
    assert [replace(p, line=None) for p in back] == pairs
    assert back[-1].language is Language.CPP and back[-1].group == "cpp/add"
    assert {p.group for p in read_eval_pairs(path)} == {"python", "cpp"}
    examples, _ = read_training_pairs(path)  # the code, extracted per the pair's language
    assert examples[-1].is_code and examples[-1].chosen_code == "int add(int a, int b) { return a + b; }"
    with pytest.raises(ValueError, match="extract the code first"):
        _ = back[0].chosen_code


def test_every_pair_reader_refuses_a_pair_of_one_text_naming_the_line(tmp_path: Path):
    from codescaler.bench.pairwise import read_eval_pairs
    from codescaler.training import read_pairs as read_training_pairs

    path = tmp_path / "pairs.jsonl"
    row = {"prompt": "p", "chosen": "```python\nx = 1\n```", "rejected": "```python\nx = 2\n```"}
    path.write_text(json.dumps(row) + "\n" + json.dumps({**row, "rejected": row["chosen"]}) + "\n", encoding="utf-8")
    for reader in (read_eval_pairs, read_training_pairs):
        with pytest.raises(InputError) as err:
            reader(path)
        assert (err.value.line, err.value.field) == (2, "rejected")


def test_progress_counts_every_candidate_once_and_changes_no_pair():
    problems = [_problem(f"t{k}") for k in range(14)]
    cands, verdicts = [], []
    for p in problems:  # 14 problems x 12 candidates = 168: two full steps of 64 and a remainder of 40
        c, v = _labelled(p.task_id, GOOD, BAD)
        cands += c
        verdicts += v
    steps: list[int] = []
    with_bar = build_pairs(problems, cands, verdicts, progress=steps.append)
    assert sum(steps) == len(cands) == 168 and steps == [64, 64, 40]
    assert with_bar.pairs == build_pairs(problems, cands, verdicts).pairs
