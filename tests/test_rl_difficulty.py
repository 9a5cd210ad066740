"""benchmarks/rl_difficulty.py as a user runs it: a tiny policy samples real MBPP TRAIN problems through
`codescaler sample`, the sandbox runs them, the selection keeps problems by passing rollouts, and a
committed selection.json rebuilds the same problems file without sampling."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "rl_difficulty.py"


@pytest.fixture(scope="module")
def tiny_policy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from codescaler.testing import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("policy"), arch="qwen2", kind="causal", seed=1)


def _run(*args: str, data: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "CODESCALER_DATA": str(data)})


def test_selection_keeps_problems_by_passing_rollouts_in_problem_order(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("rl_difficulty", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    verdicts = tmp_path / "verdicts.jsonl"
    rows = [("a", "passed"), ("a", "failed"), ("b", "failed"), ("b", "crashed"), ("c", "passed"), ("c", "passed")]
    verdicts.write_text("".join(json.dumps({"task_id": t, "candidate_id": str(i), "status": s}) + "\n"
                                for i, (t, s) in enumerate(rows)))
    counts = module.pass_counts(verdicts)
    assert counts == Counter({"a": 1, "b": 0, "c": 2})
    assert module.select(counts, ["c", "b", "a", "unsampled"], 1, 1) == ["a"]
    assert module.select(counts, ["c", "b", "a"], 0, 2) == ["c", "b", "a"]


def test_a_tiny_policy_on_real_mbpp_problems_is_sampled_executed_and_selected(tmp_path: Path, tiny_policy: Path,
                                                                             shared_data: Path) -> None:
    out = tmp_path / "filter"
    done = _run("--out", str(out), "--policy", str(tiny_policy), "--limit", "2", "--n", "2",
                "--max-new-tokens", "8", "--min-passed", "0", "--max-passed", "0", data=shared_data)
    assert done.returncode == 0, done.stderr[-2000:]
    selection = json.loads((out / "selection.json").read_text())
    assert selection["pass_counts"] == {"Mbpp/601": 0, "Mbpp/602": 0}     # 8 random tokens pass nothing
    assert selection["selected"] == ["Mbpp/601", "Mbpp/602"] and selection["passed_histogram"] == {"0": 2}
    assert len((out / "verdicts.jsonl").read_text().splitlines()) == 4
    problems = [json.loads(line) for line in (out / "problems.jsonl").read_text().splitlines()]
    assert [p["task_id"] for p in problems] == ["Mbpp/601", "Mbpp/602"] and all(p["tests"] for p in problems)

    again = _run("--out", str(tmp_path / "rebuilt"), "--from-selection", str(out / "selection.json"),
                 data=shared_data)
    assert again.returncode == 0, again.stderr[-2000:]
    assert (tmp_path / "rebuilt" / "problems.jsonl").read_bytes() == (out / "problems.jsonl").read_bytes()
    assert not (tmp_path / "rebuilt" / "candidates.jsonl").exists()          # nothing was sampled

    (tmp_path / "bad.json").write_text(json.dumps({"selected": ["Mbpp/2"]}))  # a test-split id: not mbpp-train
    bad = _run("--out", str(tmp_path / "bad"), "--from-selection", str(tmp_path / "bad.json"), data=shared_data)
    assert bad.returncode != 0 and "selected ids are not in 'mbpp-train'" in bad.stderr
