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
from codescaler.rm_checkpoint import InputFormat, RMMetadata, write_metadata
from codescaler.scorer import Scorer
from codescaler.shaping import shape_group
from codescaler.testing import build_tiny_model

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
    assert isinstance(good, dict) and isinstance(chat, dict)
    assert good["score"] == pytest.approx(expected[0], abs=1e-6) and chat["score"] == pytest.approx(expected[0], abs=1e-6)
    batch_scores = [r["score"] for r in batch if isinstance(r, dict)]
    assert batch_scores == pytest.approx(expected, abs=1e-6)
    assert batch_scores[1] == 0.0 and isinstance(good["score"], float)


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
    with pytest.raises(InputError, match=r"reward_kwargs\.model.*CODESCALER_RM_URL"):
        verl_adapter.compute_score("x", GOOD, "", {"question": PROBLEM})


class _VerlNaiveRewardManagerDouble:
    """A test double of verl's caller convention, written from reading verl (not copied): verl's
    ``get_custom_reward_fn`` wraps the user's function so every call adds
    ``custom_reward_function.reward_kwargs``; ``NaiveRewardManager`` calls it once per response with
    keyword arguments only, takes ``result["score"]`` when the result is a dict (else the float itself)
    and appends every key of a dict result to ``reward_extra_info``, which must stay rectangular."""

    def __init__(self, raw_fn, reward_kwargs: dict) -> None:
        self.compute_score = lambda *args, **kwargs: raw_fn(*args, **kwargs, **reward_kwargs)

    def __call__(self, rows: list[dict]) -> tuple[list[float], dict[str, list]]:
        from collections import defaultdict

        rewards: list[float] = []
        extra: dict[str, list] = defaultdict(list)
        for row in rows:
            extra_info = row.get("extra_info", None)
            if isinstance(extra_info, dict):
                extra_info["num_turns"] = None  # newer verl writes this into extra_info before the call
            result = self.compute_score(data_source=row["data_source"], solution_str=row["response"],
                                        ground_truth=row["reward_model"]["ground_truth"], extra_info=extra_info)
            if isinstance(result, dict):
                rewards.append(result["score"])
                for key, value in result.items():
                    extra[key].append(value)
            else:
                rewards.append(result)
        assert len({len(v) for v in extra.values()}) <= 1, "reward_extra_info must be rectangular"
        return rewards, dict(extra)


def test_verl_reward_manager_gets_score_valid_and_raw_score_with_a_kwargs_configured_model(
        tiny_rm: Path, scorer: Scorer, monkeypatch: pytest.MonkeyPatch) -> None:
    # Nothing in the environment: the model comes from custom_reward_function.reward_kwargs only.
    monkeypatch.delenv("CODESCALER_RM", raising=False)
    monkeypatch.delenv("CODESCALER_RM_URL", raising=False)
    verl_adapter.set_scorer(None)
    responses = [GOOD, NO_CODE, GOOD_BRUTE, TRUNCATED]
    rows = [{"data_source": "codescaler/humaneval", "response": r, "reward_model": {"style": "model", "ground_truth": ""},
             "extra_info": {"question": PROBLEM, "index": i, "split": "train"}} for i, r in enumerate(responses)]
    try:
        manager = _VerlNaiveRewardManagerDouble(
            verl_adapter.compute_score, {"model": str(tiny_rm), "device": "cpu", "batch_size": 4})
        rewards, extra = manager(rows)
        as_float = _VerlNaiveRewardManagerDouble(
            verl_adapter.compute_score, {"model": str(tiny_rm), "device": "cpu", "batch_size": 4,
                                         "return_dict": False})(rows[:1])[0][0]
    finally:
        verl_adapter.set_scorer(None)
    expected = scorer.score([PROBLEM] * 4, responses)
    assert rewards == pytest.approx([s.reward for s in expected], abs=1e-6)
    assert rewards[0] > 0 and rewards[1] == 0.0 and rewards[3] == 0.0
    assert set(extra) == {"score", "valid", "raw_score"}
    assert extra["valid"] == [True, False, True, False]
    assert extra["raw_score"][0] == pytest.approx(expected[0].raw_score, abs=1e-6)
    assert math.isnan(extra["raw_score"][1])  # no valid code: no raw score, but the column stays rectangular
    assert as_float == pytest.approx(rewards[0], abs=1e-6) and isinstance(as_float, float)


def test_verl_batch_function_returns_dicts_and_kwargs_override_the_environment(
        tiny_rm: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CODESCALER_RM_URL", "http://127.0.0.1:9")  # would fail if it were used
    verl_adapter.set_scorer(None)
    try:
        results = verl_adapter.compute_score_batch(
            data_sources=["a", "a"], solution_strs=[GOOD, NO_CODE], ground_truths=[None, None],
            extra_infos=[{"question": PROBLEM}] * 2, model=str(tiny_rm), device="cpu")
        with pytest.raises(InputError, match="batch_size"):
            verl_adapter.compute_score("a", GOOD, None, {"question": PROBLEM}, model=str(tiny_rm), batch_size=0)
        with pytest.raises(InputError, match="exactly one"):
            verl_adapter.compute_score("a", GOOD, None, {"question": PROBLEM}, model=str(tiny_rm),
                                       url="http://127.0.0.1:9")
    finally:
        verl_adapter.set_scorer(None)
    assert [set(r) for r in results] == [{"score", "valid", "raw_score"}] * 2
    assert results[0]["valid"] is True and results[1] == {"score": 0.0, "valid": False, "raw_score": pytest.approx(math.nan, nan_ok=True)}
