"""Tests for LoRA GRPO, the CPU presets and `codescaler rl`'s refusals (tiny models, on CPU)."""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from codescaler.cli import main
from codescaler.extract import extract_code
from codescaler.records import ExtractMode, Status
from codescaler.rl import PRESETS, RLSettings, policy_dtype, run_rl
from codescaler.rm_checkpoint import InputFormat, RMMetadata, write_metadata
from codescaler.testing import build_tiny_model

QWEN = Path("/work/main/.cache/codescaler/models/qwen2.5-coder-0.5b-instruct")

# Answers written in the shape Qwen2.5-Coder-0.5B-Instruct gives to the rl prompt on MBPP TRAIN problems
# (a sentence, one fenced block, sometimes a usage line and an explanation after the block; 52-154
# Qwen tokens up to the closing fence). Not sampled from the policy: no 0.5B run here. Only the
# text up to the closing fence must fit: strict extraction accepts a closed block with a cut-off tail.
RECORDED_ANSWERS = [
    # Mbpp/602
    "Here's a Python function that finds the first repeated character in a given string:\n\n```python\n"
    "def first_repeated_char(s):\n    seen = set()\n    for char in s:\n        if char in seen:\n"
    "            return char\n        seen.add(char)\n    return None\n\n"
    "# Test the function\nassert first_repeated_char(\"abcabc\") == \"a\"\n```\n\n"
    "This function uses a set to keep track of the characters it has seen so far.",
    # Mbpp/604
    "```python\ndef reverse_words(s):\n    # Split the string into words, reverse the list and join it back\n"
    "    return ' '.join(reversed(s.split()))\n\n# Test the function\n"
    "assert reverse_words(\"python program\") == \"program python\"\n```",
    # Mbpp/605
    "To check whether an integer is prime, test divisibility up to its square root:\n\n```python\n"
    "def prime_num(num):\n    if num <= 1:\n        return False\n    if num <= 3:\n        return True\n"
    "    if num % 2 == 0 or num % 3 == 0:\n        return False\n    i = 5\n    while i * i <= num:\n"
    "        if num % i == 0 or num % (i + 2) == 0:\n            return False\n        i += 6\n"
    "    return True\n\n# Test the function\nassert prime_num(13) == True\n```\n\n"
    "The loop only checks numbers of the form 6k ± 1.",
    # Mbpp/603
    "Here is a function that returns the ludic numbers up to n:\n\n```python\ndef get_ludic(n):\n"
    "    ludics = list(range(1, n + 1))\n    index = 1\n    while index != len(ludics):\n"
    "        first_ludic = ludics[index]\n        remove_index = index + first_ludic\n"
    "        while remove_index < len(ludics):\n            ludics.remove(ludics[remove_index])\n"
    "            remove_index = remove_index + first_ludic - 1\n        index += 1\n    return ludics\n\n"
    "# Example usage\nprint(get_ludic(10))  # Output: [1, 2, 3, 5, 7]\n```",
]


@pytest.fixture(scope="module")
def tiny_policy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("lora_policy"), arch="qwen2", kind="causal", seed=1)


@pytest.fixture(scope="module")
def tiny_rm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = build_tiny_model(tmp_path_factory.mktemp("lora_rm"), arch="qwen3", seed=5)
    write_metadata(folder, RMMetadata(input_format=InputFormat.CHAT_TEMPLATE, max_length=512, backbone="tiny-qwen3"))
    return folder


@pytest.fixture(autouse=True)
def _verdict_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CODESCALER_CACHE", str(tmp_path / "cache"))


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").split("\n") if line.strip()]


def _size(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def test_smoke_completion_budget_holds_recorded_fenced_answers() -> None:
    if not (QWEN / "tokenizer.json").is_file():
        pytest.skip("the Qwen2.5-Coder tokenizer is not prepared here")
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(QWEN))
    budget = PRESETS["smoke"]["max_completion_length"]
    assert 128 <= budget <= 192
    lengths = []
    for answer in RECORDED_ANSWERS:
        block_end = answer.index("```", answer.index("```") + 3) + 3
        assert extract_code(answer[:block_end], "python", ExtractMode.STRICT).valid
        lengths.append(len(tokenizer(answer[:block_end], add_special_tokens=False)["input_ids"]))
    assert max(lengths) <= budget, lengths
    assert max(lengths) > 12          # the old 12-token budget could never hold one of them


def test_cpu_presets_use_lora_and_full_fine_tuning_stays_for_gpus() -> None:
    assert PRESETS["smoke"]["lora"] and PRESETS["cpu"]["lora"] and not PRESETS["gpu"]["lora"]
    cpu = PRESETS["cpu"]
    # 4 prompts x 4 rollouts a step, generated together, optimised 4 at a time (16 at once ran out of memory)
    assert cpu["num_generations"] == 4 and cpu["per_device_train_batch_size"] * cpu["gradient_accumulation_steps"] == 16
    assert cpu["per_device_train_batch_size"] == 4
    assert cpu["eval_every"] > 0 and cpu["save_steps"] > 0
    assert PRESETS["smoke"]["save_steps"] is None        # no checkpoint unless --save-steps


def test_policy_dtype_is_bf16_only_for_lora_on_a_cpu_with_native_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    cpu = torch.device("cpu")
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
    assert policy_dtype(cpu, 500_000_000, lora=True) == torch.float32     # bf16 matmul is slower on AVX2
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX512")
    assert policy_dtype(cpu, 500_000_000, lora=True) == torch.bfloat16
    assert policy_dtype(cpu, 500_000_000, lora=False) == torch.float32    # full FT keeps fp32 master weights


def test_lora_grpo_saves_adapter_only_checkpoints_reloads_them_and_resumes_after_a_kill(
        tmp_path: Path, shared_data: Path, tiny_policy: Path, tiny_rm: Path) -> None:
    out = tmp_path / "run"
    settings = RLSettings(output=out, reward="rm", policy=str(tiny_policy), rm=str(tiny_rm), preset="cpu",
                          max_steps=2, eval_every=1, train_limit=6, eval_limit=1, data_dir=str(shared_data),
                          workers=2, lora_r=2, lora_alpha=4,
                          overrides={"save_steps": 1, "max_completion_length": 16, "eval_max_new_tokens": 16,
                                     "per_device_train_batch_size": 8, "gradient_accumulation_steps": 1})
    assert run_rl(settings)["global_step"] == 2
    rows = _rows(out / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2]
    assert all(math.isfinite(r["reward_mean"]) and math.isfinite(r["reward_std"]) for r in rows)
    assert [e["step"] for e in _rows(out / "eval.jsonl")] == [0, 1, 2]
    # every eval's greedy answers, one row per held-out problem, with the sandbox's verdict
    answers = _rows(out / "eval_answers.jsonl")
    assert [a["step"] for a in answers] == [0, 1, 2] and len({a["task_id"] for a in answers}) == 1
    assert all(a["status"] in {s.value for s in Status} and 0 < a["tokens"] <= 16
               and isinstance(a["response"], str) for a in answers), answers
    # Each step's wall time is split into rollouts, rewards and the rest (optimisation); the held-out
    # eval (its own seconds in eval.jsonl) is in none of them.
    for r in rows:
        assert r["generate_s"] > 0 and r["reward_s"] >= 0 and r["optimise_s"] >= 0, r  # garbage code: no RM pass
        assert r["generate_s"] + r["reward_s"] + r["optimise_s"] == pytest.approx(r["step_s"], abs=0.01), r
    assert all(e["seconds"] > 0 for e in _rows(out / "eval.jsonl"))
    model_bytes = (tiny_policy / "model.safetensors").stat().st_size
    for folder in (out / "checkpoint-1", out / "checkpoint-2", out / "final"):
        names = {f.name for f in folder.iterdir()}
        assert {"adapter_model.safetensors", "adapter_config.json"} <= names, names
        assert not names & {"model.safetensors", "pytorch_model.bin", "model.safetensors.index.json"}, names
        print(f"{folder.name}: {_size(folder)} bytes (tiny base model: {model_bytes} bytes)")
    # Adam keeps two moments per trainable parameter: adapter-sized, far below the full model's weights.
    assert (out / "checkpoint-2" / "optimizer.pt").stat().st_size < model_bytes / 2

    import torch
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(str(tiny_policy), dtype=torch.float32)
    reloaded = PeftModel.from_pretrained(base, str(out / "final"))
    saved = load_file(str(out / "final" / "adapter_model.safetensors"))
    params = dict(reloaded.named_parameters())
    # A garbage policy earns no reward, so GRPO has no gradient and lora_B stays at its zero init; lora_A
    # is random, so equal tensors show that the reloaded adapter is the saved one, not a fresh init.
    lora_a = [k for k in saved if "lora_A" in k]
    assert lora_a and all(saved[k].abs().sum() > 0 for k in lora_a)
    for key, value in saved.items():
        name = key.replace(".weight", ".default.weight")
        assert torch.equal(params[name].detach(), value), key

    # A run killed after writing step 2's row but before its checkpoint resumes from checkpoint-1's adapter
    # and keeps every row written up to that checkpoint unchanged.
    shutil.rmtree(out / "checkpoint-2")
    shutil.rmtree(out / "final")
    first_row = rows[0]
    again = run_rl(replace(settings, resume=True))
    assert again["global_step"] == 2 and again["checkpoint"].endswith("checkpoint-1")
    resumed = _rows(out / "metrics.jsonl")
    assert [r["step"] for r in resumed] == [1, 2] and resumed[0] == first_row
    assert [e["step"] for e in _rows(out / "eval.jsonl")] == [0, 1, 2]
    assert [a["step"] for a in _rows(out / "eval_answers.jsonl")] == [0, 1, 2]   # step 2's redone once

    # A fresh run of the same policy on the same held-out set (another reward, as in another arm of
    # benchmarks/rl_experiment.py) reuses the step-0 row found in its folder, and drops rows of other steps
    # or of another eval_key (another policy, problem set or decoding).
    step0 = _rows(out / "eval.jsonl")[0]
    assert step0["eval_key"]
    other = tmp_path / "other-arm"
    other.mkdir()
    stale = [{**step0, "step": 0, "eval_key": "another-policy", "pass_at_1": 0.5}, step0, {**step0, "step": 7}]
    (other / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in stale), encoding="utf-8")
    # (with a KL term to the starting policy and cut answers masked: TRL logs kl, the rows carry it)
    run_rl(replace(settings, output=other, reward="tests", max_steps=1,
                   overrides={**settings.overrides, "beta": 0.04, "mask_truncated_completions": True}))
    other_rows = _rows(other / "metrics.jsonl")
    assert [r["step"] for r in other_rows] == [1]
    assert math.isfinite(other_rows[0]["kl"]) and 0 <= other_rows[0]["truncated_rate"] <= 1, other_rows
    assert "kl" in rows[0] and rows[0]["kl"] is None    # beta 0: no reference pass, no kl
    evals = _rows(other / "eval.jsonl")
    assert [e["step"] for e in evals] == [0, 1] and evals[0] == step0  # reused as written, not recomputed
    assert evals[1]["eval_key"] == step0["eval_key"] and evals[1]["seconds"] > 0
    assert [a["step"] for a in _rows(other / "eval_answers.jsonl")] == [1]   # step 0's live with its first run


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(["rl", *argv])
    return code, capsys.readouterr().err.strip()


@pytest.fixture()
def no_model_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every refusal must come before a model or tokenizer is loaded."""
    import transformers

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a model was loaded before the input was checked")

    for cls in (transformers.AutoModelForCausalLM, transformers.AutoTokenizer,
                transformers.AutoModelForSequenceClassification):
        monkeypatch.setattr(cls, "from_pretrained", refuse)


@pytest.mark.usefixtures("no_model_loads")
@pytest.mark.parametrize(("extra", "expected"), [
    (["--policy", "/nonexistent/policy"], "--policy"),
    (["--policy", "."], "--policy"),                        # a folder, but no model in it
    (["--reward", "rm", "--rm", "/nonexistent/rm"], "--rm"),
    (["--batch-size", "6", "--num-generations", "4"], "--batch-size 8"),
    (["--num-generations", "1", "--batch-size", "4"], "--num-generations"),
    (["--max-steps", "0"], "--max-steps"),
])
def test_bad_flags_are_refused_in_one_line_with_exit_2_before_loading(
        tmp_path: Path, shared_data: Path, tiny_policy: Path, capsys: pytest.CaptureFixture[str],
        extra: list[str], expected: str) -> None:
    base = ["--output-dir", str(tmp_path / "run"), "--reward", "tests", "--policy", str(tiny_policy), "--preset",
            "smoke", "--data-dir", str(shared_data), "--eval-problems", "none"]
    code, err = _cli(capsys, *base, *extra)
    assert code == 2, err
    assert expected in err and "\n" not in err and "(" in err    # names the flag and says the fix


@pytest.mark.usefixtures("no_model_loads")
def test_a_problems_file_without_prompts_is_refused_before_loading(
        tmp_path: Path, tiny_policy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "problems.jsonl"
    bad.write_text(json.dumps({"task_id": "x/1", "language": "python", "entry_point": "f"}) + "\n", encoding="utf-8")
    code, err = _cli(capsys, "--output-dir", str(tmp_path / "run"), "--reward", "tests", "--policy", str(tiny_policy),
                     "--preset", "smoke", "--problems", str(bad), "--eval-problems", "none")
    assert code == 2 and "--problems" in err and "prompt" in err and "\n" not in err


@pytest.mark.usefixtures("no_model_loads")
def test_resuming_from_another_runs_folder_is_refused_before_loading(
        tmp_path: Path, shared_data: Path, tiny_policy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from codescaler.rl import write_run_record

    out = tmp_path / "run"
    other = RLSettings(output=out, reward="rm", policy=str(tiny_policy), preset="smoke", eval_problems=None,
                       data_dir=str(shared_data))
    write_run_record(other)
    (out / "checkpoint-1").mkdir()
    (out / "checkpoint-1" / "trainer_state.json").write_text('{"global_step": 1}', encoding="utf-8")
    code, err = _cli(capsys, "--output-dir", str(out), "--reward", "tests", "--policy", str(tiny_policy), "--preset",
                     "smoke", "--data-dir", str(shared_data), "--eval-problems", "none", "--resume")
    assert code == 2 and "--reward" in err and "'rm'" in err and "'tests'" in err and "\n" not in err


def test_full_flag_keeps_full_fine_tuning_with_full_checkpoints(tmp_path: Path, shared_data: Path,
                                                                tiny_policy: Path) -> None:
    out = tmp_path / "full"
    run_rl(RLSettings(output=out, reward="tests", policy=str(tiny_policy), preset="smoke", lora=False, max_steps=1,
                      train_limit=2, eval_problems=None, data_dir=str(shared_data), workers=2,
                      overrides={"save_steps": 1, "max_completion_length": 8, "num_generations": 2,
                                 "per_device_train_batch_size": 4, "gradient_accumulation_steps": 1}))
    names = {f.name for f in (out / "checkpoint-1").iterdir()}
    assert "model.safetensors" in names and "adapter_model.safetensors" not in names, names
    print(f"full checkpoint-1: {_size(out / 'checkpoint-1')} bytes")


def test_smoke_preset_trains_on_the_easiest_handful_of_train_problems(tmp_path: Path, shared_data: Path) -> None:
    from codescaler.rl_problems import select_problems as _problems
    from codescaler.rl_settings import resolve_settings as _resolve

    settings, _, own = _resolve(RLSettings(output=tmp_path, preset="smoke", eval_problems="mbpp-validation",
                                           eval_limit=5, data_dir=str(shared_data)))
    train, held_out = _problems(settings, settings.train_limit, own["easiest_first"])
    assert len(train) == 8 and len(held_out) == 5
    lengths = sorted(len(p.reference or "") for p in train)
    everything = sorted(len(p.reference or "") for p in _problems(replace(settings, train_limit=None), None,
                                                                    False)[0])
    assert lengths == everything[:8]                # the shortest reference solutions of MBPP TRAIN
    assert all(601 <= int(p.task_id.split("/")[-1]) <= 974 for p in train)


def test_max_completion_length_also_bounds_the_held_out_eval(tmp_path: Path) -> None:
    from codescaler.rl_settings import resolve_settings as _resolve

    own = _resolve(RLSettings(output=tmp_path, preset="smoke", overrides={"max_completion_length": 12}))[2]
    assert own["eval_max_new_tokens"] == 12
    assert _resolve(RLSettings(output=tmp_path, preset="cpu"))[2]["eval_max_new_tokens"] == 192


def test_presets_size_the_held_out_eval_and_the_flag_overrides_it(tmp_path: Path, shared_data: Path) -> None:
    from codescaler.rl_problems import select_problems as _problems
    from codescaler.rl_settings import resolve_settings as _resolve

    def held_out(preset: str, **kw: object) -> int:
        settings, _, own = _resolve(RLSettings(output=tmp_path, preset=preset, eval_problems="mbpp-validation",
                                               data_dir=str(shared_data), **kw))  # type: ignore[arg-type]
        return len(_problems(settings, 2, own["easiest_first"])[1])

    # smoke: no held-out eval unless asked (4 problems cost about a minute of greedy decoding on 2 cores)
    assert (held_out("smoke"), held_out("cpu"), held_out("gpu")) == (0, 32, 90)
    assert held_out("smoke", eval_limit=4) == 4
