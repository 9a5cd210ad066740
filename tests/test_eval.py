"""Tests for codescaler.bench.pairwise/baselines and `codescaler eval` (tiny offline models, real data)."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import pytest

from codescaler.bench.baselines import LogProbScorer, untrained_backbone
from codescaler.bench.pairwise import (
    RMBenchItem,
    evaluate_pairs,
    evaluate_rm_bench,
    load_hep,
    load_rm_bench,
    pair_credit,
    read_eval_pairs,
)
from codescaler.cli import main
from codescaler.errors import InputError
from codescaler.records import Language, Pair
from codescaler.rm_checkpoint import InputFormat, RMMetadata, write_metadata
from codescaler.scorer import Scorer
from codescaler.testing import build_tiny_model


def by_length(prompts: Sequence[str], texts: Sequence[str]) -> list[float]:
    """A real (if silly) scorer: longer text scores higher."""
    return [float(len(t)) for t in texts]


def test_pair_credit_counts_ties_half_and_invalid_code_as_a_loss() -> None:
    assert pair_credit(2.0, 1.0) == 1.0 and pair_credit(1.0, 2.0) == 0.0 and pair_credit(1.0, 1.0) == 0.5
    assert pair_credit(None, -50.0) == 0.0 and pair_credit(-50.0, None) == 1.0 and pair_credit(None, None) == 0.5


def test_evaluate_pairs_extracts_code_and_reports_per_group_accuracy() -> None:
    long_code = "```python\ndef f(xs):\n    return sorted(set(xs))\n```"
    short_code = "```python\ndef f(xs):\n    return xs\n```"
    pairs = [
        Pair("p1", "Sure!\n" + long_code, short_code, group="a"),                          # win
        Pair("p2", short_code + "\n\nA very long explanation " * 5, long_code, group="a"),  # prose ignored: loss
        Pair("p3", "No idea, sorry.", short_code, group="b"),                              # chosen invalid: loss
        Pair("p4", "```python\ndef f(:\n```", "I refuse.", group="b"),                     # both invalid: tie
    ]
    result = evaluate_pairs(pairs, by_length)
    assert result["accuracy"] == pytest.approx(1.5 / 4) and result["n"] == 4 and result["ties"] == 1
    assert result["per_group"] == {"a": {"accuracy": 0.5, "n": 2}, "b": {"accuracy": 0.25, "n": 2}}
    assert (result["chosen_invalid"], result["rejected_invalid"]) == (2, 1)
    whole = evaluate_pairs(pairs, by_length, input_mode="response")
    assert whole["chosen_invalid"] == 0 and whole["per_group"]["a"]["accuracy"] == 1.0


def test_rm_bench_hard_is_chosen_less_styled_than_rejected() -> None:
    # Style grows with the index; a length-loving scorer wins only when chosen is the more styled one.
    item = RMBenchItem("p", tuple("c" * (10 * (i + 1)) for i in range(3)),
                       tuple("r" * (10 * (j + 1) + 1) for j in range(3)), Language.PYTHON, "python")
    result = evaluate_rm_bench([item, item], by_length)
    assert result["matrix"] == [[0, 0, 0], [1, 0, 0], [1, 1, 0]]
    assert (result["hard"], result["normal"], result["easy"]) == (0.0, 0.0, 1.0)
    assert result["average"] == pytest.approx(3 / 9) and result["n"] == 2
    assert result["per_group"]["python"]["easy"] == 1.0


def test_humanevalpack_loads_canonical_versus_buggy_code(shared_data: Path) -> None:
    pairs = load_hep(shared_data, ["python", "go"])
    assert len(pairs) == 328 and {p.group for p in pairs} == {"hep-python", "hep-go"}
    first = pairs[0]
    assert first.is_code and "has_close_elements" in first.prompt and first.chosen != first.rejected
    assert first.chosen.startswith("from typing import List")
    with pytest.raises(InputError, match="unknown HumanEvalPack language"):
        load_hep(shared_data, ["cobol"])


def test_rm_bench_code_loads_228_prompts_with_three_styles_each(shared_data: Path) -> None:
    items = load_rm_bench(shared_data / "RM-Bench/data/code_filtered.json")
    assert len(items) == 228
    assert {i.group for i in items} == {"rust", "cpp", "go", "java", "javascript", "python"}
    assert all(len(i.chosen) == len(i.rejected) == 3 for i in items)


def test_eval_pairs_file_errors_name_the_line_and_field(tmp_path: Path) -> None:
    path = tmp_path / "pairs.jsonl"
    path.write_text(json.dumps({"prompt": "p", "chosen": "a", "rejected": "b"}) + "\n"
                    + json.dumps({"prompt": "p", "chosen": "a"}) + "\n", encoding="utf-8")
    with pytest.raises(InputError) as err:
        read_eval_pairs(path)
    assert (err.value.line, err.value.field) == (2, "rejected")


def test_untrained_backbone_baseline_scores_with_the_backbone_not_the_rm(tiny_rm: Path) -> None:
    probe = (["Write f."], ["def f():\n    return 1\n"])
    rm_score = Scorer.load(str(tiny_rm)).score_codes(*probe)
    baseline = untrained_backbone(str(tiny_rm), seed=0)
    assert baseline.meta.input_format is InputFormat.CHAT_TEMPLATE
    first, again = baseline.score_codes(*probe), untrained_backbone(str(tiny_rm), seed=0).score_codes(*probe)
    assert first == again and first != pytest.approx(rm_score)


def test_untrained_backbone_of_a_lora_adapter_checkpoint_uses_the_base_tokenizer(tmp_path: Path) -> None:
    """The shipped default RM is an adapter folder without tokenizer files."""
    from peft import LoraConfig, TaskType, get_peft_model
    from transformers import AutoModelForSequenceClassification

    base = build_tiny_model(tmp_path / "base", arch="qwen3", seed=5)
    net = AutoModelForSequenceClassification.from_pretrained(base, num_labels=1)
    adapter = tmp_path / "adapter"
    get_peft_model(net, LoraConfig(task_type=TaskType.SEQ_CLS, r=4, target_modules=["q_proj"])).save_pretrained(adapter)
    write_metadata(adapter, RMMetadata(lora=True, base_model=str(base), backbone=str(base), max_length=256))
    assert not (adapter / "tokenizer_config.json").exists()
    probe = (["Write f."], ["def f():\n    return 1\n"])
    scores = untrained_backbone(str(adapter), seed=0).score_codes(*probe)
    assert len(scores) == 1 and math.isfinite(scores[0])


def test_logprob_baseline_prefers_code_the_model_finds_likely(tmp_path: Path) -> None:
    lm = build_tiny_model(tmp_path / "lm", arch="qwen2", kind="causal")
    scorer = LogProbScorer(str(lm), dtype="float32")
    scores = scorer.score_codes(["Add."] * 2, ["def add(a, b):\n    return a + b\n", "zq" * 40])
    assert all(s < 0 for s in scores) and len(set(scores)) == 2
    # the batch does not change a score: each row is masked and read at its own code tokens
    alone = scorer.score_codes(["Add."], ["def add(a, b):\n    return a + b\n"])
    assert alone[0] == pytest.approx(scores[0], abs=1e-4)


def test_eval_hep_cli_writes_json_with_both_baselines(tmp_path: Path, tiny_rm: Path, shared_data: Path) -> None:
    lm = build_tiny_model(tmp_path / "lm", arch="qwen2", kind="causal")
    out = tmp_path / "hep.json"
    code = main(["eval", "hep", "--rm", str(tiny_rm), "--languages", "python,cpp", "--limit", "6",
                 "--data-dir", str(shared_data), "--baselines", "--logprob-model", str(lm), "--output", str(out)])
    assert code == 0
    report = json.loads(out.read_text(encoding="utf-8"))
    assert report["rm"]["n"] == 6 and 0.0 <= report["rm"]["accuracy"] <= 1.0
    assert set(report["baselines"]) == {"untrained_backbone", f"logprob:{lm}", "shorter_code_wins",
                                        "longer_code_wins"}
    assert all(b["n"] == 6 for b in report["baselines"].values())
    shorter, longer = report["baselines"]["shorter_code_wins"], report["baselines"]["longer_code_wins"]
    assert shorter["accuracy"] + longer["accuracy"] == pytest.approx(1.0)   # opposite judges, ties half


def test_eval_rm_bench_cli_reports_hard_normal_easy(tmp_path: Path, tiny_rm: Path, shared_data: Path) -> None:
    out = tmp_path / "rmb.json"
    assert main(["eval", "rm-bench", "--rm", str(tiny_rm), "--limit", "4", "--data-dir", str(shared_data),
                 "--output", str(out)]) == 0
    rm = json.loads(out.read_text(encoding="utf-8"))["rm"]
    assert rm["n"] == 4 and {"hard", "normal", "easy", "average", "matrix", "per_group"} <= set(rm)


def test_eval_cli_reports_a_missing_pairs_file(tmp_path: Path, tiny_rm: Path) -> None:
    assert main(["eval", "pairs", "--rm", str(tiny_rm), "--pairs", str(tmp_path / "nope.jsonl")]) == 2
