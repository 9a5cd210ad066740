"""Tests for codescaler.rm_checkpoint: the RM input format, truncation and codescaler.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from codescaler.errors import InputError
from codescaler.records import ExtractMode
from codescaler.rm_checkpoint import (
    METADATA_FILE,
    PLAIN_TEMPLATE,
    InputFormat,
    RMMetadata,
    default_metadata,
    encode_rm_input,
    format_rm_input,
    read_metadata,
    write_metadata,
)
from codescaler.shaping import Shaping
from codescaler.testing import build_tiny_model

PROBLEM = (
    "Given a list of integers `nums` and an integer `k`, return the k most frequent elements.\n\n"
    "Example 1:\nInput: nums = [1,1,1,2,2,3], k = 2\nOutput: [1,2]\n"
    "Constraints: 1 <= nums.length <= 10^5; use a dict like {value: count}.\n"
)
CODE = (
    "from collections import Counter\n\n"
    "def top_k_frequent(nums: list[int], k: int) -> list[int]:\n"
    "    counts = Counter(nums)  # {value: count}\n"
    "    return [x for x, _ in counts.most_common(k)]\n"
)


@pytest.fixture(scope="module")
def qwen_tok(tmp_path_factory: pytest.TempPathFactory):
    return AutoTokenizer.from_pretrained(build_tiny_model(tmp_path_factory.mktemp("q"), arch="qwen3"))


@pytest.fixture(scope="module")
def bert_tok(tmp_path_factory: pytest.TempPathFactory):
    return AutoTokenizer.from_pretrained(build_tiny_model(tmp_path_factory.mktemp("b"), arch="bert"))


CHAT = RMMetadata()
PLAIN = RMMetadata(input_format=InputFormat.PLAIN)


def test_chat_format_puts_the_problem_in_the_user_turn_and_only_bare_code_in_the_assistant_turn(qwen_tok) -> None:
    text = format_rm_input(qwen_tok, PROBLEM, CODE, CHAT)
    assert text == f"<|im_start|>user\n{PROBLEM}<|im_end|>\n<|im_start|>assistant\n{CODE}<|im_end|>\n"
    assert "```" not in text


def test_plain_format_keeps_braces_in_prompt_and_code_literally(bert_tok) -> None:
    text = format_rm_input(bert_tok, PROBLEM, CODE, PLAIN)
    assert text == f"Problem:\n{PROBLEM}\n\nSolution:\n{CODE}"
    assert PLAIN_TEMPLATE == "Problem:\n{prompt}\n\nSolution:\n{code}"


def test_chat_encoding_adds_no_extra_special_tokens_and_ends_on_the_template_end(qwen_tok) -> None:
    ids = encode_rm_input(qwen_tok, PROBLEM, CODE, CHAT)
    assert ids == qwen_tok(format_rm_input(qwen_tok, PROBLEM, CODE, CHAT), add_special_tokens=False)["input_ids"]
    assert qwen_tok.decode(ids[-2:]) == "<|im_end|>\n"


def test_plain_encoding_ends_with_exactly_one_eos(bert_tok) -> None:
    ids = encode_rm_input(bert_tok, PROBLEM, CODE, PLAIN)
    assert ids[0] == bert_tok.cls_token_id and ids[-1] == bert_tok.eos_token_id
    assert ids.count(bert_tok.sep_token_id) == 1


@pytest.mark.parametrize("arch_fixture,meta", [("qwen_tok", CHAT), ("bert_tok", PLAIN)])
def test_a_long_problem_is_cut_at_its_tail_and_the_code_is_kept_whole(request, arch_fixture, meta) -> None:
    tok = request.getfixturevalue(arch_fixture)
    long_problem = PROBLEM + "".join(f"Note {i}: the answer may be returned in any order.\n" for i in range(400))
    ids = encode_rm_input(tok, long_problem, CODE, meta, max_length=300)
    assert len(ids) <= 300
    text = tok.decode(ids, skip_special_tokens=True)
    assert CODE.rstrip() in text
    assert "Given a list of integers" in text  # the head of the problem stays
    assert "Note 399" not in text
    assert ids[-1] == encode_rm_input(tok, PROBLEM, CODE, meta)[-1]


def test_code_longer_than_the_budget_keeps_its_head_the_problem_head_and_the_template_end(qwen_tok) -> None:
    huge_code = CODE + "".join(f"def helper_{i}(x):\n    return x * {i}\n" for i in range(500))
    long_problem = PROBLEM * 40
    ids = encode_rm_input(qwen_tok, long_problem, huge_code, CHAT, max_length=256)
    assert len(ids) <= 256
    text = qwen_tok.decode(ids)
    assert text.endswith("<|im_end|>\n")
    assert "from collections import Counter" in text and "helper_499" not in text
    user = text.split("<|im_start|>assistant\n")[0]
    # the problem keeps at least a quarter of max_length
    assert len(qwen_tok(user, add_special_tokens=False)["input_ids"]) >= 256 // 4


def test_truncation_of_long_inputs_takes_linear_not_quadratic_time(qwen_tok) -> None:
    # Few rounds of re-tokenization, whatever the overflow: 10x more text must not cost 100x.
    import time

    def cost(n: int) -> float:
        started = time.perf_counter()
        encode_rm_input(qwen_tok, PROBLEM * n, CODE * n, CHAT, max_length=512)
        return time.perf_counter() - started

    cost(10)
    small, big = cost(40), cost(400)
    assert big < 40 * small + 0.5


def test_max_length_smaller_than_the_template_is_an_input_error(qwen_tok) -> None:
    with pytest.raises(InputError, match="max_length"):
        encode_rm_input(qwen_tok, PROBLEM * 50, CODE, CHAT, max_length=8)


def test_metadata_roundtrips_through_codescaler_json(tmp_path: Path) -> None:
    meta = RMMetadata(
        input_format=InputFormat.PLAIN, max_length=1024, extract_mode=ExtractMode.LENIENT,
        score_mean=-0.25, score_std=1.5, backbone="minilm", lora=True, base_model="minilm",
        manifest={"data": {"pairs.jsonl": "sha256:ab"}, "metrics": {"held_out_accuracy": 0.71}},
    )
    path = write_metadata(tmp_path, meta)
    assert path == tmp_path / METADATA_FILE
    assert json.loads(path.read_text())["input_format"] == "plain"
    back = read_metadata(tmp_path)
    assert back == meta
    assert back.shaping is Shaping.SOFTPLUS and back.extract_mode is ExtractMode.LENIENT
    assert [p.name for p in tmp_path.iterdir()] == [METADATA_FILE]  # no temp file left behind


def test_checkpoint_without_metadata_explains_how_to_score_it(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="--input-format") as err:
        read_metadata(tmp_path)
    assert str(tmp_path) in str(err.value)


@pytest.mark.parametrize(
    "content,field",
    [
        ('{"input_format": "markdown"}', "input_format"),
        ('{"max_length": "2048"}', "max_length"),
        ('{"format_version": 99}', "format_version"),
        ('{"shaping": "exp"}', "shaping"),
        ('{"plain_template": "{code} only"}', "plain_template"),
    ],
)
def test_bad_metadata_fields_are_named(tmp_path: Path, content: str, field: str) -> None:
    (tmp_path / METADATA_FILE).write_text(content)
    with pytest.raises(InputError) as err:
        read_metadata(tmp_path)
    assert err.value.field == field


def test_broken_json_reports_the_line(tmp_path: Path) -> None:
    (tmp_path / METADATA_FILE).write_text('{\n  "max_length": 512,\n  oops\n}')
    with pytest.raises(InputError) as err:
        read_metadata(tmp_path)
    assert err.value.line == 3


def test_unknown_keys_from_a_newer_version_are_ignored(tmp_path: Path, caplog) -> None:
    (tmp_path / METADATA_FILE).write_text('{"max_length": 777, "future_field": true}')
    assert read_metadata(tmp_path).max_length == 777
    assert "future_field" in caplog.text


def test_default_metadata_picks_chat_template_when_the_tokenizer_has_one(qwen_tok, bert_tok, caplog) -> None:
    assert default_metadata(qwen_tok, "hub/rm").input_format is InputFormat.CHAT_TEMPLATE
    assert default_metadata(bert_tok, "minilm").input_format is InputFormat.PLAIN
    assert "no codescaler.json" in caplog.text
    with pytest.raises(InputError, match="no chat template"):
        default_metadata(bert_tok, "minilm", input_format="chat_template")
