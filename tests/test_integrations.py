"""Tests for codescaler.integrations: the TRL reward callable (incl. a real GRPOTrainer run) and verl's functions."""

from __future__ import annotations

import inspect
import math
from pathlib import Path

import pytest

from codescaler.errors import InputError
from codescaler.integrations import open_scorer
from codescaler.integrations import verl as verl_adapter
from codescaler.integrations.trl import CodeScalerReward
from codescaler.models import build_tiny_model
from codescaler.rm_checkpoint import InputFormat, RMMetadata, write_metadata
from codescaler.scorer import Scorer
from codescaler.shaping import shape_group

PROBLEM = ("Write a function `two_sum(nums: list[int], target: int) -> list[int]` returning the indices of the "
           "two numbers that add up to target.\n>>> two_sum([2, 7, 11, 15], 9)\n[0, 1]")
GOOD = ("Use a hash map from value to index.\n\n```python\ndef two_sum(nums, target):\n    seen = {}\n"
        "    for i, x in enumerate(nums):\n        if target - x in seen:\n            return [seen[target - x], i]\n"
        "        seen[x] = i\n    return []\n```\n")
GOOD_BRUTE = ("```python\ndef two_sum(nums, target):\n    for i in range(len(nums)):\n"
              "        for j in range(i + 1, len(nums)):\n            if nums[i] + nums[j] == target:\n"
              "                return [i, j]\n```")
NO_CODE = "The answer is [0, 1] because 2 + 7 = 9."
TRUNCATED = "```python\ndef two_sum(nums, target):\n    seen = {}\n    for i, x in enumerate(nu"
TWO_BLOCKS = "```python\ndef two_sum(a, t):\n    pass\n```\nor\n```python\ndef two_sum(a, t):\n    return []\n```"
EMPTY = ""


@pytest.fixture(scope="module")
def tiny_rm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = build_tiny_model(tmp_path_factory.mktemp("integ_rm"), arch="qwen3", seed=5)
    write_metadata(folder, RMMetadata(input_format=InputFormat.CHAT_TEMPLATE, max_length=512, backbone="tiny-qwen3"))
    return folder


@pytest.fixture(scope="module")
def scorer(tiny_rm: Path) -> Scorer:
    return Scorer.load(str(tiny_rm), device="cpu")


# --------------------------------------------------------------------------------------------------
# TRL


def test_trl_reward_handles_plain_and_conversational_completions_alike(scorer: Scorer) -> None:
    reward = CodeScalerReward(scorer=scorer)
    responses = [GOOD, NO_CODE, GOOD_BRUTE, TRUNCATED]
    plain = reward(prompts=[PROBLEM] * 4, completions=responses, completion_ids=[[1]] * 4)
    chat_prompt = [{"role": "system", "content": "You are a careful programmer."},
                   {"role": "user", "content": PROBLEM}]
    conversational = reward(
        prompts=[chat_prompt] * 4,
        completions=[[{"role": "assistant", "content": r}] for r in responses],
        completion_ids=[[1]] * 4, trainer_state=None,
    )
    # Content given as a list of text parts (multimodal-style messages) reads the same.
    parts = reward(prompts=[[{"role": "user", "content": [{"type": "text", "text": PROBLEM}]}]],
                   completions=[[{"role": "assistant", "content": [{"type": "text", "text": GOOD}]}]])
    assert plain == pytest.approx(conversational, abs=1e-6)
    assert parts[0] == pytest.approx(plain[0], abs=1e-6)
    assert plain[1] == 0.0 and plain[3] == 0.0
    assert plain[0] > 0 and plain[2] > 0 and plain[0] != plain[2]
    assert all(isinstance(r, float) for r in plain)


def test_trl_reward_is_named_and_logs_the_valid_fraction(scorer: Scorer) -> None:
    from trl.trainer.utils import get_callable_name

    reward = CodeScalerReward(scorer=scorer)
    assert get_callable_name(reward) == "codescaler"
    logged: list[tuple[str, float]] = []
    reward(prompts=[PROBLEM] * 4, completions=[GOOD, NO_CODE, EMPTY, GOOD_BRUTE],
           log_metric=lambda name, value: logged.append((name, value)))
    assert logged == [("codescaler/valid_fraction", 0.5)]


def test_trl_reward_uses_a_language_column_for_extraction(scorer: Scorer) -> None:
    reward = CodeScalerReward(scorer=scorer)
    cpp = "```cpp\n#include <vector>\nstd::vector<int> two_sum(std::vector<int>& a, int t) { return {}; }\n```"
    as_cpp = reward(prompts=[PROBLEM], completions=[cpp], language=["cpp"])
    as_python = reward(prompts=[PROBLEM], completions=[cpp])
    assert as_cpp[0] > 0 and as_python[0] == 0.0  # C++ is not valid Python


def test_validity_is_preserved_inside_a_grpo_group(scorer: Scorer) -> None:
    reward = CodeScalerReward(scorer=scorer)
    group = [GOOD, NO_CODE, GOOD_BRUTE, TRUNCATED, TWO_BLOCKS, EMPTY, GOOD, "```python\nprint(1)\n```"]
    rewards = reward(prompts=[PROBLEM] * len(group), completions=group)
    valid = [True, False, True, False, False, False, True, True]
    assert [r for r, v in zip(rewards, valid, strict=True) if not v] == [0.0] * 4
    assert min(r for r, v in zip(rewards, valid, strict=True) if v) > 0
    # GRPO normalises within the group: the ordering valid > invalid must survive it.
    scores = scorer.score([PROBLEM] * len(group), group)
    advantages = shape_group([s.raw_score for s in scores], [s.valid for s in scores], normalize=True)
    assert min(a for a, v in zip(advantages, valid, strict=True) if v) > max(
        a for a, v in zip(advantages, valid, strict=True) if not v)


def test_trl_reward_rejects_mismatched_inputs_and_conflicting_sources(scorer: Scorer, tiny_rm: Path) -> None:
    reward = CodeScalerReward(scorer=scorer)
    with pytest.raises(InputError, match="2 prompts but 1 completions"):
        reward(prompts=[PROBLEM, PROBLEM], completions=[GOOD])
    with pytest.raises(InputError, match="no user message"):
        reward(prompts=[[{"role": "system", "content": "x"}]], completions=[GOOD])
    with pytest.raises(InputError, match="exactly one"):
        open_scorer(model=str(tiny_rm), url="http://127.0.0.1:1")
    with pytest.raises(InputError, match="scorer= alone"):
        CodeScalerReward(str(tiny_rm), scorer=scorer)


def test_a_real_grpo_trainer_run_completes_and_logs_codescaler_rewards(tiny_rm: Path, tmp_path: Path) -> None:
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    policy_dir = build_tiny_model(tmp_path / "policy", arch="qwen2", kind="causal", seed=1)
    policy = AutoModelForCausalLM.from_pretrained(policy_dir)
    tokenizer = AutoTokenizer.from_pretrained(policy_dir)
    dataset = Dataset.from_list([{"prompt": [{"role": "user", "content": PROBLEM}]},
                                 {"prompt": [{"role": "user", "content": "Print the sum of two integers read from stdin."}]}])
    reward = CodeScalerReward(str(tiny_rm), device="cpu")
    config = GRPOConfig(
        output_dir=str(tmp_path / "out"), max_steps=2, per_device_train_batch_size=4, num_generations=4,
        max_completion_length=12, learning_rate=1e-5, logging_steps=1, save_strategy="no", report_to=[],
        use_cpu=True, bf16=False, seed=0, dataloader_num_workers=0,
    )
    trainer = GRPOTrainer(model=policy, reward_funcs=[reward], args=config, train_dataset=dataset,
                          processing_class=tokenizer)
    trainer.train()
    assert trainer.state.global_step == 2
    logged = [entry for entry in trainer.state.log_history if "rewards/codescaler/mean" in entry]
    assert len(logged) == 2
    for entry in logged:
        assert math.isfinite(entry["rewards/codescaler/mean"]) and entry["rewards/codescaler/mean"] >= 0
        assert 0.0 <= entry["codescaler/valid_fraction"] <= 1.0


# --------------------------------------------------------------------------------------------------
# verl


def test_verl_functions_have_the_signatures_verl_calls_with() -> None:
    single = inspect.signature(verl_adapter.compute_score)
    assert list(single.parameters)[:4] == ["data_source", "solution_str", "ground_truth", "extra_info"]
    assert single.parameters["extra_info"].default is None
    batch = inspect.signature(verl_adapter.compute_score_batch)
    assert list(batch.parameters)[:4] == ["data_sources", "solution_strs", "ground_truths", "extra_infos"]
    # Both accept (and ignore) extra keyword arguments that newer verl versions pass.
    assert any(p.kind is inspect.Parameter.VAR_KEYWORD for p in single.parameters.values())
    assert any(p.kind is inspect.Parameter.VAR_KEYWORD for p in batch.parameters.values())


def test_verl_compute_score_loads_the_rm_from_the_environment_once(
        tiny_rm: Path, scorer: Scorer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CODESCALER_RM", str(tiny_rm))
    monkeypatch.delenv("CODESCALER_RM_URL", raising=False)
    verl_adapter.set_scorer(None)
    try:
        good = verl_adapter.compute_score("codecontests", GOOD, "", {"question": PROBLEM, "index": 3})
        loaded = verl_adapter.get_scorer()
        chat = verl_adapter.compute_score(data_source="x", solution_str=GOOD, ground_truth=None,
                                          extra_info={"prompt": [{"role": "user", "content": PROBLEM}]},
                                          sandbox_fusion_url=None)
        batch = verl_adapter.compute_score_batch(["a", "a", "a"], [GOOD, NO_CODE, GOOD_BRUTE], ["", "", ""],
                                                 [{"question": PROBLEM}] * 3)
        assert verl_adapter.get_scorer() is loaded  # loaded once per process
    finally:
        verl_adapter.set_scorer(None)
    expected = [s.reward for s in scorer.score([PROBLEM] * 3, [GOOD, NO_CODE, GOOD_BRUTE])]
    assert good == pytest.approx(expected[0], abs=1e-6) and chat == pytest.approx(expected[0], abs=1e-6)
    assert batch == pytest.approx(expected, abs=1e-6)
    assert batch[1] == 0.0 and isinstance(good, float)


def test_verl_compute_score_without_problem_text_or_configuration_says_how_to_fix(
        scorer: Scorer, monkeypatch: pytest.MonkeyPatch) -> None:
    verl_adapter.set_scorer(scorer)
    try:
        with pytest.raises(InputError, match=r"extra_info\['question'\]"):
            verl_adapter.compute_score("x", GOOD, "", {"index": 0})
        with pytest.raises(InputError, match="batch lengths differ"):
            verl_adapter.compute_score_batch(["x"], [GOOD, GOOD], [""], [{"question": PROBLEM}])
    finally:
        verl_adapter.set_scorer(None)
    monkeypatch.delenv("CODESCALER_RM", raising=False)
    monkeypatch.delenv("CODESCALER_RM_URL", raising=False)
    with pytest.raises(InputError, match="CODESCALER_RM_URL"):
        verl_adapter.compute_score("x", GOOD, "", {"question": PROBLEM})
