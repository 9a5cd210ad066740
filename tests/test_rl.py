"""Tests for codescaler.rl and `codescaler rl`: real GRPOTrainer runs on tiny models, on CPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from codescaler.errors import InputError
from codescaler.executor import ExecuteOptions
from codescaler.records import Language, Problem, TestSuite
from codescaler.rl import RLSettings, TestsReward, load_problem_set, run_rl
from codescaler.rm_checkpoint import InputFormat, RMMetadata, write_metadata
from codescaler.testing import build_tiny_model

ROW_FIELDS = {"step", "reward_mean", "reward_std", "valid_rate", "pass_rate", "response_length_mean", "wall_s"}


@pytest.fixture(scope="module")
def tiny_policy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("rl_policy"), arch="qwen2", kind="causal", seed=1)


@pytest.fixture(scope="module")
def tiny_rm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = build_tiny_model(tmp_path_factory.mktemp("rl_rm"), arch="qwen3", seed=5)
    write_metadata(folder, RMMetadata(input_format=InputFormat.CHAT_TEMPLATE, max_length=512, backbone="tiny-qwen3"))
    return folder


@pytest.fixture(autouse=True)
def _verdict_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CODESCALER_CACHE", str(tmp_path / "cache"))


def _settings(tmp: Path, shared_data: Path, policy: Path, **kw: object) -> RLSettings:
    # Short completions: a tiny random policy writes no code at any length, and each token costs CPU.
    base: dict = dict(output=tmp / "run", policy=str(policy), preset="smoke", max_steps=2, train_limit=6,
                      eval_limit=3, data_dir=str(shared_data), workers=2,
                      overrides={"max_completion_length": 12, "eval_max_new_tokens": 12})
    base.update(kw)
    return RLSettings(**base)


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").split("\n") if line.strip()]


def test_rm_reward_run_writes_one_metrics_row_per_step_and_evals(tmp_path: Path, shared_data: Path,
                                                                  tiny_policy: Path, tiny_rm: Path) -> None:
    result = run_rl(_settings(tmp_path, shared_data, tiny_policy, reward="rm", rm=str(tiny_rm)))
    assert result["global_step"] == 2
    rows = _rows(tmp_path / "run" / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2]
    for row in rows:
        assert row.keys() >= ROW_FIELDS
        assert 0.0 <= row["valid_rate"] <= 1.0
        assert row["reward_mean"] >= 0.0          # shaped RM rewards are never negative
        assert row["pass_rate"] is None           # the rm reward does not execute
        assert row["response_length_mean"] > 0
        assert 0.0 <= row["groups_zero_std"] <= 1.0
        assert row["grad_norm"] >= 0.0 and row["learning_rate"] > 0.0
    evals = _rows(tmp_path / "run" / "eval.jsonl")
    assert [e["step"] for e in evals] == [0, 2]
    assert all(e["n"] == 3 and 0.0 <= e["pass_at_1"] <= 1.0 for e in evals)
    assert all(len(e["passed"]) == round(e["pass_at_1"] * e["n"]) for e in evals)
    # every completion of every step, with what the reward paid it: the mean is the step's reward_mean
    rollouts = _rows(tmp_path / "run" / "rollouts.jsonl")
    assert sorted({r["step"] for r in rollouts}) == [1, 2] and len(rollouts) % 2 == 0
    for row in rows:
        mine = [r for r in rollouts if r["step"] == row["step"]]
        assert len(mine) == len(rollouts) // 2
        assert all(isinstance(r["task_id"], str) and isinstance(r["completion"], str) for r in mine)
        assert all(list(r["rewards"]) == ["codescaler"] for r in mine)
        assert sum(r["rewards"]["codescaler"] for r in mine) / len(mine) == pytest.approx(row["reward_mean"], rel=1e-4)
    assert not list((tmp_path / "run").glob("checkpoint-*"))     # the smoke preset saves none unless asked
    assert (tmp_path / "run" / "final" / "adapter_model.safetensors").is_file()


def test_tests_reward_run_gives_zero_rewards_for_a_garbage_policy_and_resumes(
        tmp_path: Path, shared_data: Path, tiny_policy: Path) -> None:
    asked = {"max_completion_length": 12, "eval_max_new_tokens": 12, "save_steps": 1}
    first = run_rl(_settings(tmp_path, shared_data, tiny_policy, reward="tests", max_steps=1, eval_problems=None,
                             overrides=asked))
    assert first["global_step"] == 1
    again = run_rl(_settings(tmp_path, shared_data, tiny_policy, reward="tests", max_steps=2, eval_problems=None,
                             resume=True, overrides=asked))
    assert again["global_step"] == 2 and again["checkpoint"].endswith("checkpoint-1")
    rows = _rows(tmp_path / "run" / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2]
    for row in rows:
        assert row.keys() >= ROW_FIELDS
        assert row["reward_mean"] == 0.0 and row["pass_rate"] == 0.0
        assert 0.0 <= row["valid_rate"] <= 1.0
    rollouts = _rows(tmp_path / "run" / "rollouts.jsonl")      # step 1's rows kept once across the resume
    steps = [r["step"] for r in rollouts]
    assert steps == sorted(steps) and set(steps) == {1, 2} and steps.count(1) == steps.count(2)
    assert all(r["rewards"] == {"tests": 0.0} for r in rollouts)


def test_a_finished_run_is_not_overwritten_without_resume(tmp_path: Path, shared_data: Path,
                                                          tiny_policy: Path) -> None:
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "metrics.jsonl").write_text('{"step": 1}\n', encoding="utf-8")
    with pytest.raises(InputError, match="--resume"):
        run_rl(_settings(tmp_path, shared_data, tiny_policy, reward="tests"))


def test_resume_without_a_checkpoint_is_an_input_error(tmp_path: Path, shared_data: Path, tiny_policy: Path) -> None:
    with pytest.raises(InputError, match="no checkpoint"):
        run_rl(_settings(tmp_path, shared_data, tiny_policy, reward="tests", resume=True))


def test_default_rm_missing_tells_to_pass_rm(tmp_path: Path, shared_data: Path, tiny_policy: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from codescaler import scorer

    # a build without the shipped RM (this one has it): the folder it would live in is empty
    monkeypatch.setattr(scorer, "default_rm_path", lambda name="default": tmp_path / "no-default-rm")
    with pytest.raises(InputError) as err:
        run_rl(_settings(tmp_path, shared_data, tiny_policy, reward="rm+tests"))
    assert "--rm" in str(err.value)


def test_training_on_eval_only_data_is_refused(shared_data: Path) -> None:
    for name in ("humaneval", "leetcode-test"):
        with pytest.raises(InputError, match="evaluation-only"):
            load_problem_set(name, str(shared_data), for_training=True)


def test_mbpp_train_and_validation_splits_are_disjoint(shared_data: Path) -> None:
    train = load_problem_set("mbpp-train", str(shared_data), for_training=True)
    held = load_problem_set("mbpp-validation", str(shared_data), for_training=False)
    assert len(held) >= 80 and len(train) >= 350
    assert not {p.task_id for p in train} & {p.task_id for p in held}


def test_tests_reward_pays_only_for_passing_strictly_extracted_code(tmp_path: Path) -> None:
    problem = Problem(task_id="t/add", prompt="Write add(a, b).", language=Language.PYTHON,
                      tests=TestSuite(functional="def check(candidate):\n    assert candidate(2, 3) == 5\n"),
                      entry_point="add")
    reward = TestsReward([problem], ExecuteOptions(workers=2, cache_dir=tmp_path / "c"))
    good = "Here:\n```python\ndef add(a, b):\n    return a + b\n```\n"
    wrong = "```python\ndef add(a, b):\n    return a - b\n```"
    two_blocks = good + "\n```python\nprint(1)\n```"
    logged: dict[str, float] = {}
    rewards = reward(prompts=["p"] * 4, completions=[[{"role": "assistant", "content": good}], wrong,
                                                     two_blocks, "def add(a, b): return a + b"],
                     task_id=["t/add"] * 4, log_metric=logged.__setitem__)
    assert rewards == [1.0, 0.0, 0.0, 0.0]
    assert logged == {"tests/valid_fraction": 0.5, "tests/pass_rate": 0.25}


@pytest.mark.slow
def test_cli_smoke_run_via_subprocess(tmp_path: Path, shared_data: Path, tiny_policy: Path, tiny_rm: Path) -> None:
    env = {**os.environ, "CODESCALER_CACHE": str(tmp_path / "cache")}
    cmd = [sys.executable, "-m", "codescaler", "rl", "--reward", "rm+tests", "--policy", str(tiny_policy),
           "--rm", str(tiny_rm), "--preset", "smoke", "--max-steps", "1", "--limit", "4", "--max-completion-length", "12",
           "--eval-problems", "none", "--data-dir", str(shared_data), "--output-dir", str(tmp_path / "cli")]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().split("\n")[-1])["global_step"] == 1
    row = _rows(tmp_path / "cli" / "metrics.jsonl")[0]
    assert ROW_FIELDS | {"reward_codescaler", "reward_tests"} <= row.keys()


def test_cli_refuses_training_on_humaneval_with_exit_code_2(tmp_path: Path, shared_data: Path) -> None:
    cmd = [sys.executable, "-m", "codescaler", "rl", "--reward", "tests", "--problems", "humaneval",
           "--data-dir", str(shared_data), "--output-dir", str(tmp_path / "bad")]
    bad = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "evaluation-only" in bad.stderr


@pytest.mark.slow
def test_gpu_experiment_script_smoke_form_writes_summaries_and_curves_for_every_arm(tmp_path: Path,
                                                                                    shared_data: Path) -> None:
    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "SMOKE": "1", "OUT": str(tmp_path / "exp"), "CODESCALER_DATA": str(shared_data),
           "PYTHON": sys.executable}
    done = subprocess.run([str(repo / "scripts" / "gpu_rl_experiment.sh")], capture_output=True, text=True,
                          env=env, timeout=1500)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((tmp_path / "exp" / "summary.json").read_text(encoding="utf-8"))
    results = summary["results"]
    assert [r["arm"] for r in results] == ["tests", "rm", "rm+tests", "rm-no-tests"]
    assert [r["reward"] for r in results] == ["tests", "rm", "rm+tests", "rm"]
    for r in results:
        assert r["exit_code"] == 0 and r["steps"] == 2, r
        assert r["pass_at_1_before"] is not None and r["pass_at_1_after"] is not None
        assert r["valid_before"] is not None and r["valid_after"] is not None
        for key in ("train_reward_first", "train_reward_last", "train_valid_first", "train_valid_last",
                    "length_first", "length_last", "generate_s_mean", "reward_s_mean", "optimise_s_mean", "wall_s"):
            assert isinstance(r[key], float), (r["arm"], key)
        # LoRA GRPO (smoke preset): the adapter moved exactly when some step had a gradient (12-token
        # completions of a random policy hold no code, so every reward is the floor: usually none did)
        rows = _rows(Path(r["run_dir"]) / "metrics.jsonl")
        if any(row.get("grad_norm") for row in rows):
            assert r["adapter"]["lora_b_max"] > 0 and 0 < r["adapter"]["delta_rel"] < 1, r["adapter"]
        else:
            assert r["adapter"] == {"lora_b_max": 0.0, "delta_rel": 0.0}, r["adapter"]
    # the step-0 held-out eval ran once: the other arms reused the first arm's row (same policy at step 0)
    first = _rows(tmp_path / "exp" / "tests" / "eval.jsonl")[0]
    for name in ("rm", "rm_tests", "rm-no-tests"):
        row = _rows(tmp_path / "exp" / name / "eval.jsonl")[0]
        assert row["step"] == 0 and row["shared_from"] == "tests" and row["seconds"] == first["seconds"], name
    assert done.stdout.count("step-0 held-out row offered from tests") == 3
    no_tests = results[-1]
    assert no_tests["problems"].endswith("no_tests_problems.jsonl")
    from codescaler.data import read_problems

    stripped = read_problems(no_tests["problems"], require_tests=False)
    assert len(stripped) > 1000 and all(p.tests.is_empty for p in stripped)
    assert _rows(tmp_path / "exp" / "rm-no-tests" / "metrics.jsonl")[0]["pass_rate"] is None   # nothing executed
    # every arm with tests has its training rollouts executed after the run (the rm arm's too); the
    # no-tests arm's problems have none; held-out problems gained and lost are a paired count
    for r in results[:3]:
        assert r["train_pass_by_step"] == {"1": 0.0, "2": 0.0}, r["arm"]      # 12 tokens hold no code
        assert r["heldout_gained"] == [] and r["heldout_lost"] == [], r["arm"]
        assert (Path(r["run_dir"]) / "rollout_pass.json").is_file()
    assert no_tests["train_pass_by_step"] is None and no_tests["train_pass_visits"] is None
    png = tmp_path / "exp" / "curves.png"
    assert summary["curves"] == "curves.png" and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = (tmp_path / "exp" / "summary.md").read_text(encoding="utf-8")
    assert ("| arm | reward | problems | steps | held-out pass@1 step 0 -> end | held-out gained / lost | "
            "held-out valid step 0 -> end | train rollouts passing, first -> last visit (problems) | "
            "train reward first -> last | train valid first -> last | completion tokens first -> last | "
            "groups without signal (mean) | policy moved: norm(dW) / norm(W) | s/step generate | s/step reward | "
            "s/step optimise | wall s | exit |") in table
    assert "| tests | tests | mbpp-train | 2 |" in table and "| rm-no-tests | rm | no_tests_problems.jsonl | 2 |" in table
    # a re-run finds every arm finished and only rewrites the summaries
    again = subprocess.run([str(repo / "scripts" / "gpu_rl_experiment.sh")], capture_output=True, text=True,
                           env=env, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("not run again") == 4


def _no_test_problems(tmp: Path) -> Path:
    path = tmp / "no_tests.jsonl"
    path.write_text(json.dumps({"task_id": "t/add", "prompt": "Write add(a, b)."}) + "\n", encoding="utf-8")
    return path


def test_the_rm_reward_trains_on_problems_without_tests(tmp_path: Path) -> None:
    from codescaler.rl_problems import select_problems

    settings = RLSettings(output=tmp_path / "run", reward="rm", problems=str(_no_test_problems(tmp_path)),
                          eval_problems=None)
    train, held_out = select_problems(settings, None, False)
    assert [p.task_id for p in train] == ["t/add"] and train[0].tests.is_empty and held_out == []


@pytest.mark.parametrize("reward", ["tests", "rm+tests"])
def test_a_tests_reward_on_problems_without_tests_is_refused_in_one_line(tmp_path: Path, tiny_policy: Path,
                                                                         tiny_rm: Path, reward: str) -> None:
    cmd = [sys.executable, "-m", "codescaler", "rl", "--reward", reward, "--policy", str(tiny_policy),
           "--rm", str(tiny_rm), "--problems", str(_no_test_problems(tmp_path)), "--eval-problems", "none",
           "--preset", "smoke", "--output-dir", str(tmp_path / "run")]
    bad = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2, bad.stderr[-2000:]
    line = bad.stderr.strip()
    assert "\n" not in line and "Traceback" not in line
    assert "--problems: field 'tests' is empty in 1 of 1 training problems" in line
    assert f"--reward {reward} runs the hidden tests" in line and "use --reward rm" in line
    assert not (tmp_path / "run" / "run.json").exists()       # refused before the run started


@pytest.mark.parametrize("flags,expected", [
    ([], {"use_vllm": False}),
    (["--vllm-server", "http://10.0.0.5:8000/"],
     {"use_vllm": True, "vllm_mode": "server", "vllm_server_base_url": "http://10.0.0.5:8000"}),
    (["--vllm-colocate"], {"use_vllm": True, "vllm_mode": "colocate"}),
])
def test_vllm_flags_set_trls_grpo_config_fields(tmp_path: Path, flags: list[str], expected: dict) -> None:
    from codescaler.cli import build_parser
    from codescaler.rl import grpo_config
    from codescaler.rl_settings import resolve_settings as _resolve

    args = build_parser().parse_args(["rl", "--output-dir", str(tmp_path / "run"), "--preset", "cpu", *flags])
    settings = RLSettings(output=args.output_dir, preset=args.preset, vllm=args.vllm_server)
    resolved, preset, _ = _resolve(settings)
    config = grpo_config(resolved, preset)
    assert {key: getattr(config, key) for key in expected} == expected
    assert config.num_generations == 4 and config.temperature == 0.6   # the preset still applies


@pytest.mark.parametrize(("kw", "message"), [
    ({"max_steps": 0}, "--max-steps must be >= 1, got 0 (pass a positive number)"),
    ({"overrides": {"per_device_train_batch_size": 0}}, "--batch-size must be >= 1, got 0"),
    ({"train_limit": 0}, "--limit must be >= 1, got 0"),
    ({"preset": "tpu"}, "--preset: unknown preset 'tpu' (use one of: gpu, smoke, cpu)"),
    ({"reward": "exec"}, "--reward: unknown reward 'exec'"),
    ({"eval_every": -1}, "--eval-every must be >= 0, got -1"),
    ({"vllm": "localhost:8000"}, "field 'vllm': --vllm-server: expected an http(s) URL"),
    ({"overrides": {"gradient_accumulation_steps": 0}}, "--grad-accum must be >= 1, got 0"),
    ({"overrides": {"lr_scheduler_type": "warmup_stable"}},
     "--lr-scheduler: unknown schedule 'warmup_stable' (use one of: linear, constant"),
    ({"overrides": {"beta": -0.1}}, "--beta must be >= 0, got -0.1"),
    ({"overrides": {"beta": float("nan")}}, "--beta must be >= 0, got nan"),
])
def test_rl_settings_validate_names_the_flag_and_the_fix_in_one_line(tmp_path: Path, kw: dict, message: str) -> None:
    with pytest.raises(InputError) as err:
        RLSettings(output=tmp_path, **kw).validate()
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_check_settings_refuses_the_rollout_groups_and_lora_rank_the_preset_makes_bad(tmp_path: Path) -> None:
    from codescaler.rl_settings import check_settings, resolve_settings

    def check(settings: RLSettings) -> None:
        resolved, preset, own = resolve_settings(settings)
        check_settings(resolved, {**preset, **own})

    check(RLSettings(output=tmp_path, preset="gpu", lora_r=0))  # full fine-tuning: no adapter, lora_r unused
    with pytest.raises(InputError, match="--lora-r 0 / --lora-alpha 32 must be >= 1"):
        check(RLSettings(output=tmp_path, preset="smoke", lora_r=0))  # the smoke preset trains LoRA adapters
    with pytest.raises(InputError, match="--batch-size 6 is not a multiple of --num-generations 4"):
        check(RLSettings(output=tmp_path, preset="smoke", overrides={"per_device_train_batch_size": 6}))


def test_lr_schedule_and_accumulation_flags_reach_trls_config_and_the_experiment_passes_them_on(tmp_path: Path) -> None:
    import importlib.util

    from codescaler.cli import build_parser
    from codescaler.rl import grpo_config
    from codescaler.rl_settings import resolve_settings as _resolve

    flags = ["--lr", "2e-4", "--lr-scheduler", "constant", "--grad-accum", "2"]
    args = build_parser().parse_args(["rl", "--output-dir", str(tmp_path / "run"), "--preset", "cpu", *flags])
    overrides = {"learning_rate": args.lr, "lr_scheduler_type": args.lr_scheduler,
                 "gradient_accumulation_steps": args.grad_accum}
    settings = RLSettings(output=args.output_dir, preset="cpu", overrides=overrides)
    settings.validate()
    config = grpo_config(*_resolve(settings)[:2])
    assert (config.learning_rate, config.lr_scheduler_type.value, config.gradient_accumulation_steps) == (2e-4, "constant", 2)
    assert config.generation_batch_size == 8       # 2 prompts x 4 rollouts a step, optimised 4 at a time
    assert (config.beta, config.mask_truncated_completions) == (0.0, False)   # the presets': no KL, cut answers count

    spec = importlib.util.spec_from_file_location("rl_experiment", Path(__file__).parents[1] / "benchmarks" / "rl_experiment.py")
    experiment = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(experiment)
    eargs = experiment.parse_args(["--out", str(tmp_path / "x"), "--preset", "cpu", "--eval-every", "0", *flags])
    cmd = experiment.command({"arm": "rm", "reward": "rm", "problems": "mbpp-train"}, eargs, "p", "r", tmp_path / "x" / "rm")
    assert " ".join(cmd).endswith("--lr 0.0002 --lr-scheduler constant --grad-accum 2 --eval-every 0")
    assert "--batch-size" not in cmd        # not given: the preset's
    assert "--beta" not in cmd and "--mask-truncated" not in cmd


def test_kl_and_truncation_flags_reach_trls_config_and_the_experiment_passes_them_on(tmp_path: Path) -> None:
    import importlib.util

    from codescaler.cli import build_parser
    from codescaler.rl import grpo_config
    from codescaler.rl_settings import resolve_settings as _resolve

    args = build_parser().parse_args(["rl", "--output-dir", str(tmp_path / "run"), "--preset", "cpu",
                                      "--beta", "0.04", "--mask-truncated"])
    assert (args.beta, args.mask_truncated) == (0.04, True)
    settings = RLSettings(output=args.output_dir, preset="cpu",
                          overrides={"beta": args.beta, "mask_truncated_completions": args.mask_truncated})
    settings.validate()
    config = grpo_config(*_resolve(settings)[:2])
    assert (config.beta, config.mask_truncated_completions) == (0.04, True)

    spec = importlib.util.spec_from_file_location("rl_experiment", Path(__file__).parents[1] / "benchmarks" / "rl_experiment.py")
    experiment = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(experiment)
    eargs = experiment.parse_args(["--out", str(tmp_path / "x"), "--preset", "cpu", "--beta", "0.04", "--mask-truncated"])
    cmd = experiment.command({"arm": "rm", "reward": "rm", "problems": "mbpp-train"}, eargs, "p", "r", tmp_path / "x" / "rm")
    assert " ".join(cmd).endswith("--beta 0.04 --mask-truncated")   # a switch passes as the flag alone
    again = build_parser().parse_args(["rl", *cmd[cmd.index("--output-dir"):]])
    assert (again.beta, again.mask_truncated) == (0.04, True)       # and the arm's command line parses back


def test_a_vllm_server_that_is_not_a_url_is_refused_before_any_model_loads(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="--vllm-server: expected an http"):
        run_rl(RLSettings(output=tmp_path / "run", policy=str(tmp_path / "nothing"), vllm="localhost:8000"))


def test_metric_rows_are_kept_by_step_and_eval_key_and_a_torn_tail_is_repaired(tmp_path: Path) -> None:
    from codescaler.rl_metrics import keep_reusable_eval, truncate_rows

    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text("".join(json.dumps({"step": s}) + "\n" for s in (1, 2, 3)) + '{"step": 4, "rew')
    truncate_rows(metrics, 2)              # a resume from checkpoint-2: later rows are redone, the torn one goes
    assert metrics.read_text() == '{"step": 1}\n{"step": 2}\n'
    before = metrics.stat().st_mtime_ns
    truncate_rows(metrics, 5)              # nothing to drop: the file is left as it is
    assert metrics.stat().st_mtime_ns == before
    truncate_rows(tmp_path / "absent.jsonl", 1)
    assert not (tmp_path / "absent.jsonl").exists()

    evals = tmp_path / "eval.jsonl"
    rows = [{"step": 0, "pass_at_1": 0.5, "eval_key": "other"}, {"step": 0, "pass_at_1": 0.25, "eval_key": "mine"},
            {"step": 5, "pass_at_1": 0.75, "eval_key": "mine"}]
    evals.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert keep_reusable_eval(evals, "mine") == rows[1]
    assert [json.loads(line) for line in evals.read_text().splitlines()] == [rows[1]]
    assert keep_reusable_eval(evals, "new policy") is None and evals.read_text() == ""
    assert keep_reusable_eval(tmp_path / "none.jsonl", "mine") is None


def test_adapter_movement_measures_how_far_a_lora_adapter_moved_the_policy(tmp_path: Path, tiny_policy: Path) -> None:
    import importlib.util

    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    spec = importlib.util.spec_from_file_location("rl_experiment", Path(__file__).parents[1] / "benchmarks" / "rl_experiment.py")
    experiment = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(experiment)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_policy),
                           LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    model.save_pretrained(tmp_path / "fresh")           # B = 0: the policy has not moved
    assert experiment.adapter_movement(tmp_path / "fresh", str(tiny_policy)) == {"lora_b_max": 0.0, "delta_rel": 0.0}
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.fill_(0.01)
    model.save_pretrained(tmp_path / "moved")
    moved = experiment.adapter_movement(tmp_path / "moved", str(tiny_policy))
    assert moved["lora_b_max"] == pytest.approx(0.01) and 0 < moved["delta_rel"] < 1
    assert experiment.adapter_movement(tmp_path / "absent", str(tiny_policy)) is None   # full fine-tuning: none


def test_rollout_passes_execute_every_arms_training_rollouts_by_step_and_by_visit(tmp_path: Path,
                                                                                  shared_data: Path) -> None:
    import importlib.util

    from codescaler.rl_problems import load_problem_set

    spec = importlib.util.spec_from_file_location("rl_experiment", Path(__file__).parents[1] / "benchmarks" / "rl_experiment.py")
    experiment = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(experiment)
    a, b = load_problem_set("mbpp-train", str(shared_data), for_training=True)[1:3]   # 601: its reference fails
    right = [f"```python\n{p.reference}\n```" for p in (a, b)]
    cut = f"```python\n{b.reference}\n"      # no closing fence: lenient extraction would run it, strict does not
    rows = [(1, a.task_id, right[0]), (1, a.task_id, "```python\ndef nope(): pass\n```"), (1, b.task_id, cut),
            (2, a.task_id, right[0]), (2, a.task_id, right[0]), (3, b.task_id, right[1])]
    run = tmp_path / "arm"
    run.mkdir()
    (run / "rollouts.jsonl").write_text("".join(json.dumps({"step": s, "task_id": t, "completion": c,
                                                            "rewards": {"codescaler": 1.0}}) + "\n"
                                                for s, t, c in rows), encoding="utf-8")
    passes = experiment.rollout_passes(run, "mbpp-train", str(shared_data))   # whatever the arm's reward was
    assert [ok for _, _, ok in passes] == [True, False, False, True, True, True]
    assert experiment.pass_by_step(passes) == {1: pytest.approx(1 / 3, abs=1e-4), 2: 1.0, 3: 1.0}
    # a: 1/2 at its first visit, 2/2 at its last; b: 0/1 -> 1/1 (the same problems on both sides)
    assert experiment.pass_first_last_visit(passes) == {"problems": 2, "first": 0.25, "last": 1.0}
    assert experiment.pass_first_last_visit(passes[:3]) is None          # nothing shown twice yet
    assert experiment.rollout_passes(run, "mbpp-train", str(shared_data)) == passes   # read back from the cache
    assert json.loads((run / "rollout_pass.json").read_text())["rollouts"].startswith("strict:")
    no_tests = tmp_path / "no_tests.jsonl"
    no_tests.write_text(json.dumps({"task_id": a.task_id, "prompt": a.prompt}) + "\n", encoding="utf-8")
    assert experiment.rollout_passes(run, str(no_tests)) is None    # problems without tests: nothing to run
    assert experiment.rollout_passes(tmp_path / "empty", "mbpp-train", str(shared_data)) is None
    assert experiment.pass_by_step(None) is None and experiment.pass_first_last_visit(None) is None
