"""The shipped default reward model (src/codescaler/assets/default_rm) and the script that ships it."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from codescaler.scorer import Scorer, default_rm_path

ROOT = Path(__file__).resolve().parents[1]
SHIP = ROOT / "scripts" / "ship_default_rm.py"

PROBLEM = "Write a Python function `add(a, b)` that returns the sum of a and b."


def test_ship_script_refuses_unfinished_runs_and_path_bases(tmp_path: Path) -> None:
    empty = tmp_path / "run"
    empty.mkdir()
    done = subprocess.run([sys.executable, str(SHIP), str(empty), "--target", str(tmp_path / "out")],
                          capture_output=True, text=True)
    assert done.returncode == 2 and "not a finished" in done.stderr
    (empty / "adapter_config.json").write_text("{}", encoding="utf-8")
    (empty / "codescaler.json").write_text(json.dumps({"base_model": "/abs/path/model"}), encoding="utf-8")
    done = subprocess.run([sys.executable, str(SHIP), str(empty), "--target", str(tmp_path / "out")],
                          capture_output=True, text=True)
    assert done.returncode == 2 and "builds offline" in done.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(not (default_rm_path() / "adapter_config.json").is_file(), reason="no default RM shipped")
def test_default_rm_loads_offline_scores_and_floors_invalid_code() -> None:
    meta = json.loads((default_rm_path() / "codescaler.json").read_text(encoding="utf-8"))
    assert meta["lora"] is True and "/" not in meta["base_model"]      # rebuilt by the set-up, not a path
    assert "heldout" in meta["manifest"] and meta["manifest"]["reproduce"].startswith("codescaler train")
    assert not any("humaneval" in str(v).lower() for v in meta["manifest"]["data"].values())
    scorer = Scorer.load("default")
    good = "```python\ndef add(a, b):\n    return a + b\n```"
    broken = "```python\ndef add(a, b)\n    return a +\n```"
    results = scorer.score([PROBLEM, PROBLEM, PROBLEM], [good, broken, "I cannot help with that."])
    assert results[0].valid and math.isfinite(results[0].raw_score) and results[0].reward > 0
    assert [r.valid for r in results[1:]] == [False, False]
    assert [r.reward for r in results[1:]] == [0.0, 0.0] and results[1].raw_score is None
