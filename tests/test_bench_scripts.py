"""The held-out benchmark script (benchmarks/rm_heldout.py) as a user runs it: a tiny RM on the first items of
real HumanEvalPack and RM-Bench, one JSON per (scorer, set), reused by a rerun without loading the scorer."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(out: Path, rm: Path, shared_data: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "rm_heldout.py"), "--scorers", f"rm:{rm}",
         "--sets", "hep-python", "rm-bench", "--limit", "3", "--output-dir", str(out)],
        capture_output=True, text=True, timeout=600, env={**os.environ, "CODESCALER_DATA": str(shared_data)})


def test_rm_heldout_writes_one_result_per_set_and_a_rerun_reuses_them(tmp_path: Path, tiny_rm: Path,
                                                                      shared_data: Path) -> None:
    first = _run(tmp_path, tiny_rm, shared_data)
    assert first.returncode == 0, first.stderr[-2000:]
    files = sorted(p.name for p in tmp_path.glob("rm_*.json"))
    assert len(files) == 2 and all(".first3" in f for f in files), files
    hep = json.loads(next(tmp_path.glob("rm_*hep-python*.json")).read_text())
    assert hep["limit"] == 3 and 0.0 <= hep["accuracy"] <= 1.0 and hep["seconds"] >= 0
    bench = json.loads(next(tmp_path.glob("rm_*rm-bench*.json")).read_text())
    assert {"easy", "normal", "hard", "average"} <= set(bench)
    assert (tmp_path / "table.md").read_text().count("|") > 4
    # A rerun reads every result back: nothing is scored, so nothing is printed per set and files are unchanged.
    before = {p.name: p.read_bytes() for p in tmp_path.glob("rm_*.json")}
    again = _run(tmp_path, tiny_rm, shared_data)
    assert again.returncode == 0, again.stderr[-2000:]
    assert " on hep-python:" not in again.stdout and " on rm-bench:" not in again.stdout
    assert {p.name: p.read_bytes() for p in tmp_path.glob("rm_*.json")} == before


def test_rm_stack_score_file_resumes_and_ignores_a_torn_last_line(tmp_path):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from rm_stack import ScoreFile

    store = ScoreFile(tmp_path / "scores.jsonl")
    items = [("p", "a"), ("p", "b"), ("p", "a")]
    assert store.missing(items) == [("p", "a"), ("p", "b")]
    store.add([("p", "a")], [1.5])
    with open(tmp_path / "scores.jsonl", "a", encoding="utf-8") as handle:
        handle.write('{"k": "torn')                       # a run killed mid-write
    again = ScoreFile(tmp_path / "scores.jsonl")
    assert again.missing(items) == [("p", "b")] and again.get(["p"], ["a"]) == [1.5]
    again.add([("p", "b")], [-2.0])
    assert ScoreFile(tmp_path / "scores.jsonl").get(["p", "p"], ["a", "b"]) == [1.5, -2.0]


def test_without_problem_rows_joined_from_two_caches_equal_the_extractors_own(tmp_path):
    """rm_features.py --without-problem reads the four no-problem columns from a second, likelihood-only
    cache of the codes under an empty problem: the joined rows must be what a spec with
    ``without_problem`` computes, in its column order, so that a head fitted on them ships and scores."""
    from dataclasses import replace

    import numpy as np

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from codescaler.feature_cache import FeatureCache
    from codescaler.features import FeatureExtractor, FeatureSpec, load_backbone
    from codescaler.testing import build_tiny_model
    from rm_features_eval import WithoutProblemRows, sub_spec

    folder = build_tiny_model(tmp_path / "lm", arch="qwen2", kind="causal", seed=3, num_layers=3)
    model, tok, sha = load_backbone(str(folder), dtype="float32")
    spec = FeatureSpec(backbone=str(folder), backbone_sha256=sha, hidden_size=32, max_length=256, layers=(1, 3))
    prompts = ["Add two numbers.", "Add two numbers.", "Reverse a string."]
    codes = ["def add(a, b):\n    return a + b\n", "def add(a, b):\n    return a - b\n",
             "def rev(s):\n    return s[::-1]\n"]
    main = FeatureCache(tmp_path / "cache", spec)
    main.fill(FeatureExtractor(model, tok, spec), prompts, codes)
    alone_spec = replace(spec, layers=(), pooling=(), facts=False)
    alone = FeatureCache(tmp_path / "cache", alone_spec)
    alone.fill(FeatureExtractor(model, tok, alone_spec), [""] * 3, codes)
    joined = WithoutProblemRows(main, alone)
    full = replace(spec, without_problem=True)
    assert joined.spec == full
    np.testing.assert_allclose(joined.get(prompts, codes), FeatureExtractor(model, tok, full).compute(prompts, codes),
                               atol=1e-4, rtol=1e-4)
    assert sub_spec(full, full.names()) == full
