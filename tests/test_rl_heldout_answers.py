"""benchmarks/rl_heldout_answers.py as a user runs it on a finished experiment folder: the base policy and
each arm's final LoRA adapter answer real MBPP validation problems by the in-run eval's code path, one
row per (model, problem), and a rerun evaluates nothing again."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_policy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from codescaler.testing import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("policy"), arch="qwen2", kind="causal", seed=1)


def _run(out: Path, policy: Path, data: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """The script as a user runs it: 2 held-out problems, 8 new tokens, and ``extra`` flags."""
    return subprocess.run([sys.executable, str(ROOT / "benchmarks" / "rl_heldout_answers.py"), "--out", str(out),
                           "--policy", str(policy), "--eval-limit", "2", "--max-new-tokens", "8", *extra],
                          capture_output=True, text=True, timeout=600, env={**os.environ, "CODESCALER_DATA": str(data)})


def _fresh_adapter(policy: Path, folder: Path) -> None:
    """A new LoRA adapter of ``policy`` (B = 0: the base policy's function) saved in ``folder``."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = get_peft_model(AutoModelForCausalLM.from_pretrained(policy),
                           LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"]))
    model.save_pretrained(folder)


def test_base_and_every_arms_adapter_answer_the_held_out_problems_once(tmp_path: Path, tiny_policy: Path,
                                                                       shared_data: Path) -> None:
    out = tmp_path / "exp"
    _fresh_adapter(tiny_policy, out / "tests" / "final")
    (out / "rm").mkdir()                          # an arm without a final adapter (still running) is skipped
    done = _run(out, tiny_policy, shared_data)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [json.loads(line) for line in (out / "heldout_answers.jsonl").read_text().splitlines()]
    assert [(r["model"], r["task_id"]) for r in rows] == [("base", "Mbpp/511"), ("base", "Mbpp/512"),
                                                          ("tests", "Mbpp/511"), ("tests", "Mbpp/512")]
    assert all(r["status"] == "no_code" and 0 < r["tokens"] <= 8 for r in rows)   # 8 random tokens: no block
    # a fresh LoRA adapter (B = 0) changes nothing: the same greedy answers as the base policy
    assert [r["response"] for r in rows[:2]] == [r["response"] for r in rows[2:]]
    assert "tests: 0 of 2 passed\n" in done.stdout and "gained [], lost []" in done.stdout
    before = (out / "heldout_answers.jsonl").read_bytes()
    again = _run(out, tiny_policy, shared_data)
    assert again.returncode == 0 and "0 of 2 passed\n" not in again.stdout      # no model evaluated again
    assert (out / "heldout_answers.jsonl").read_bytes() == before

    # an earlier checkpoint answers under its own name, beside the final adapters
    _fresh_adapter(tiny_policy, out / "tests" / "checkpoint-2")
    mid = _run(out, tiny_policy, shared_data, "--checkpoint", "checkpoint-2", "--models", "tests@checkpoint-2")
    assert mid.returncode == 0, mid.stderr[-2000:]
    rows = [json.loads(line) for line in (out / "heldout_answers.jsonl").read_text().splitlines()]
    assert [r["model"] for r in rows] == ["base"] * 2 + ["tests"] * 2 + ["tests@checkpoint-2"] * 2
    assert "tests@checkpoint-2: 0 of 2 passed\n" in mid.stdout


def _load_script():
    import importlib.util

    spec = importlib.util.spec_from_file_location("rl_heldout_answers", ROOT / "benchmarks" / "rl_heldout_answers.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_sign_test_and_paired_change_by_hand() -> None:
    script = _load_script()
    assert script.sign_test(0, 6) == pytest.approx(2 / 64)
    assert script.sign_test(2, 9) == pytest.approx(2 * (1 + 11 + 55) / 2048)   # 0.065
    assert script.sign_test(3, 3) == 1.0 and script.sign_test(0, 0) == 1.0
    change = script.paired_change({"a": 1, "b": 4, "c": 2, "d": 0}, {"a": 3, "b": 4, "c": 1, "e": 4})
    assert (change["problems"], change["rose"], change["fell"]) == (3, 1, 1)   # d and e: measured by one side
    assert change["mean"] == pytest.approx(1 / 3)
    assert change["se"] == pytest.approx((((2 - 1 / 3) ** 2 + (1 / 3) ** 2 + (4 / 3) ** 2) / 2 / 3) ** 0.5)


def test_sampled_answers_k_a_problem_are_seeded_and_compared_per_problem(tmp_path: Path, tiny_policy: Path,
                                                                         shared_data: Path) -> None:
    out = tmp_path / "exp"
    _fresh_adapter(tiny_policy, out / "tests" / "final")
    done = _run(out, tiny_policy, shared_data, "--samples", "3", "--batch-size", "2")
    assert done.returncode == 0, done.stderr[-2000:]
    assert not (out / "heldout_answers.jsonl").exists()           # greedy answers live in their own file
    rows = [json.loads(line) for line in (out / "heldout_samples.jsonl").read_text().splitlines()]
    assert [(r["model"], r["task_id"], r["sample"]) for r in rows[:6]] == [
        ("base", t, k) for t in ("Mbpp/511", "Mbpp/512") for k in range(3)]
    assert [r["model"] for r in rows[6:]] == ["tests"] * 6
    assert len({r["response"] for r in rows[:3]}) > 1               # sampled: a problem's draws differ
    # the same seed and a fresh adapter (B = 0, the same function): the same draws as the base policy
    assert [r["response"] for r in rows[:6]] == [r["response"] for r in rows[6:]]
    assert ("tests: 0 of 6 answers passed (0.000; seeds [0]); per problem vs base: 0 rose, 0 fell, "
            "pass rate +0.000 +- 0.000, sign test p = 1.00") in done.stdout
    assert all(r["seed"] == 0 for r in rows)

    # another seed adds K more answers a problem for the models asked, beside seed 0's
    more = _run(out, tiny_policy, shared_data, "--samples", "3", "--batch-size", "2", "--seed", "1", "--models", "base")
    assert more.returncode == 0, more.stderr[-2000:]
    rows = [json.loads(line) for line in (out / "heldout_samples.jsonl").read_text().splitlines()]
    assert [(r["model"], r["seed"]) for r in rows[12:]] == [("base", 1)] * 6 and len(rows) == 18
    assert [r["response"] for r in rows[12:]] != [r["response"] for r in rows[:6]]   # other draws
    assert "base: 0 of 12 answers passed (0.000; seeds [0, 1])" in more.stdout
    assert "tests: 0 of 6 answers passed (0.000; seeds [0])" in more.stdout
    bad = _run(out, tiny_policy, shared_data, "--samples", "3", "--models", "rm")
    assert bad.returncode == 2 and "--models: no model 'rm'" in bad.stderr
