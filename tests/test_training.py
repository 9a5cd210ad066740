"""Tests for codescaler.training and `codescaler train`: real TRL training of tiny offline models."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from transformers import EvalPrediction

from codescaler.cli import main
from codescaler.errors import InputError
from codescaler.records import ExtractMode, Pair
from codescaler.scorer import Scorer
from codescaler.testing import build_tiny_model
from codescaler.training import pairwise_metrics, read_pairs, split_heldout

TASKS = [
    ("running_max", "numbers", "Return the running maximum of `numbers`.\n>>> running_max([1, 3, 2])\n[1, 3, 3]"),
    ("count_vowels", "text", "Count the vowels in `text` (case-insensitive). — e.g. 'Ünïcode' counts 2"),
    ("flatten", "rows", "Flatten a list of lists `rows` into one list, keeping order."),
    ("dedupe", "items", "Remove duplicates from `items`, keeping the first occurrence of each."),
    ("word_lengths", "words", "Map each word in `words` to its length:\n\n    {'a': 1}"),
]
PREAMBLES = ["Here is my solution:\n\n", "", "Sure! Below is an implementation.\n", "Let's think step by step.\n\n"]
CODAS = ["", "\n\nThis runs in O(n) time.", "\n\nLet me know if you need tests.", "\n"]


def _response(code: str, rng: random.Random, fence: str = "python") -> str:
    return f"{rng.choice(PREAMBLES)}```{fence}\n{code}```{rng.choice(CODAS)}"


def write_pairs(path: Path, n_problems: int, seed: int = 0) -> Path:
    """A trivially separable set: every chosen program validates its input with `isinstance`."""
    rng = random.Random(seed)
    rows = []
    for k in range(n_problems):
        name, arg, text = TASKS[k % len(TASKS)]
        fn = f"{name}_{k}"
        prompt = f"Write a Python function `{fn}({arg})`.\n{text}"
        for variant in range(2):
            chosen = (f"def {fn}({arg}):\n    if not isinstance({arg}, (list, tuple, str)):\n"
                      f"        raise TypeError('bad input')\n    return list({arg})\n")
            rejected = f"def {fn}({arg}):\n    {'out = []' if variant else 'pass'}\n    return {arg}\n"
            rows.append({"task_id": f"demo/{k}", "prompt": prompt, "chosen": _response(chosen, rng),
                         "rejected": _response(rejected, rng, fence=rng.choice(["python", "py"])), "margin": 1.0})
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def tiny_qwen3(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny_qwen3"), arch="qwen3", seed=1)


@pytest.fixture(scope="module")
def pairs_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_pairs(tmp_path_factory.mktemp("pairs") / "pairs.jsonl", 30)


# --------------------------------------------------------------------------------------------------
# Data


def test_read_pairs_extracts_code_and_counts_what_it_drops(tmp_path: Path) -> None:
    ok = {"prompt": "Add two numbers.", "chosen": "Sure:\n```python\ndef add(a, b):\n    return a + b\n```",
          "rejected": "```python\ndef add(a, b):\n    return a - b\n```\nDone."}
    rows = [
        ok,
        {**ok, "chosen": "```python\ndef add(a, b):\n    return a + b\n"},                    # unclosed block
        {**ok, "rejected": "I would just subtract them."},                                  # no code at all
        {**ok, "rejected": "Here:\n```python\ndef add(a, b):\n    return a + b\n```"},       # same program
    ]
    path = tmp_path / "pairs.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n", encoding="utf-8")
    examples, counts = read_pairs(path)
    assert [e.chosen_code.rstrip() for e in examples] == ["def add(a, b):\n    return a + b"]
    assert (counts.rows, counts.kept, counts.dropped_chosen_no_code, counts.dropped_rejected_no_code,
            counts.dropped_identical_code) == (4, 1, 1, 1, 1)


@pytest.mark.parametrize("row, field", [
    ({"prompt": "p", "chosen": "```python\nx = 1\n```"}, "rejected"),
    ({"prompt": "p", "chosen": "```python\nx = 1\n```", "rejected": 7}, "rejected"),
    ({"prompt": "p", "chosen": "```python\nx = 1\n```", "rejected": "```python\nx = 1\n```"}, "rejected"),
    ({"prompt": "p", "chosen": "```python\nx = 1\n```", "rejected": "```python\nx = 2\n```", "margin": "big"},
     "margin"),
])
def test_bad_rows_are_input_errors_naming_file_line_and_field(tmp_path: Path, row: dict, field: str) -> None:
    path = tmp_path / "bad.jsonl"
    good = {"prompt": "p", "chosen": "```python\nx = 1\n```", "rejected": "```python\nx = 2\n```"}
    path.write_text(json.dumps(good) + "\n" + json.dumps(row) + "\n", encoding="utf-8")
    with pytest.raises(InputError) as err:
        read_pairs(path)
    assert (err.value.line, err.value.field) == (2, field)
    assert str(path) in str(err.value)


def test_empty_or_unusable_pair_files_are_input_errors(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n", encoding="utf-8")
    with pytest.raises(InputError, match="no pairs"):
        read_pairs(empty)
    one_sided = tmp_path / "one_sided.jsonl"
    one_sided.write_text(json.dumps({"prompt": "p", "chosen": "Use a loop.", "rejected": "Use recursion."}) + "\n",
                         encoding="utf-8")
    with pytest.raises(InputError, match="1 chosen without valid code"):
        read_pairs(one_sided, ExtractMode.STRICT)


def test_heldout_split_keeps_every_problem_on_one_side() -> None:
    examples = [Pair("p", "a", "b", is_code=True, group=f"task{k % 7}", line=k) for k in range(70)]
    train, held = split_heldout(examples, 0.3, seed=3)
    assert {e.group for e in train}.isdisjoint({e.group for e in held})
    assert len(train) + len(held) == 70 and 1 <= len({e.group for e in held}) <= 3
    assert split_heldout(examples, 0.3, seed=3) == (train, held)


def test_pairwise_metrics_count_ties_as_half() -> None:
    metrics = pairwise_metrics(EvalPrediction(predictions=np.array([2.0, -1.0, 0.0, 0.5]), label_ids=None))
    assert metrics["pairwise_accuracy"] == pytest.approx((1 + 0 + 0.5 + 1) / 4)
    assert metrics["pairs"] == 4


def test_a_backbone_that_is_not_a_one_label_classifier_is_refused(tmp_path: Path, pairs_file: Path) -> None:
    from transformers import AutoModelForSequenceClassification

    folder = build_tiny_model(tmp_path / "two_labels", arch="qwen3")
    net = AutoModelForSequenceClassification.from_pretrained(folder, num_labels=2, ignore_mismatched_sizes=True)
    net.save_pretrained(folder)
    code = main(["train", "--pairs", str(pairs_file), "--output-dir", str(tmp_path / "out"), "--backbone", str(folder),
                 "--max-steps", "1"])
    assert code == 2
    assert not (tmp_path / "out" / "codescaler.json").exists()


# --------------------------------------------------------------------------------------------------
# Training end to end


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, tiny_qwen3: Path, pairs_file: Path) -> Path:
    out = tmp_path_factory.mktemp("rm") / "rm"
    code = main(["train", "--pairs", str(pairs_file), "--output-dir", str(out), "--backbone", str(tiny_qwen3),
                 "--epochs", "2", "--lr", "3e-3", "--batch-size", "8", "--eval-fraction", "0.2", "--seed", "0",
                 "--eval-steps", "5", "--stats-pairs", "16"])
    assert code == 0
    return out


def test_training_a_tiny_qwen3_learns_a_separable_set_and_the_scorer_loads_it(trained: Path, tmp_path: Path) -> None:
    meta = json.loads((trained / "codescaler.json").read_text(encoding="utf-8"))
    manifest = meta["manifest"]
    assert meta["input_format"] == "chat_template" and meta["lora"] is False
    assert manifest["heldout"]["eval_pairwise_accuracy"] >= 0.9
    assert manifest["data"]["heldout_problems"] == 6 and manifest["data"]["counts"]["kept"] == 60
    assert manifest["reproduce"].startswith("codescaler train ") and "--seed 0" in manifest["reproduce"]
    assert meta["score_mean"] is not None and meta["score_std"] > 0
    # Fresh problems, scored through the public Scorer path: chosen must beat rejected.
    fresh = [json.loads(line) for line in write_pairs(tmp_path / "fresh.jsonl", 6, seed=9).read_text().split("\n")
             if line]
    scorer = Scorer.load(str(trained))
    chosen = scorer.score([r["prompt"] for r in fresh], [r["chosen"] for r in fresh])
    rejected = scorer.score([r["prompt"] for r in fresh], [r["rejected"] for r in fresh])
    wins = sum(c.raw_score > r.raw_score for c, r in zip(chosen, rejected, strict=True))  # type: ignore[operator]
    assert wins / len(fresh) >= 0.9


def test_output_folder_with_a_checkpoint_needs_resume(trained: Path, pairs_file: Path, tiny_qwen3: Path) -> None:
    code = main(["train", "--pairs", str(pairs_file), "--output-dir", str(trained), "--backbone", str(tiny_qwen3)])
    assert code == 2


def test_resume_continues_from_the_last_checkpoint(tmp_path: Path, tiny_qwen3: Path, pairs_file: Path) -> None:
    out = tmp_path / "rm"
    common = ["train", "--pairs", str(pairs_file), "--output-dir", str(out), "--backbone", str(tiny_qwen3),
              "--batch-size", "4", "--eval-steps", "2", "--stats-pairs", "4"]
    assert main([*common, "--max-steps", "2"]) == 0
    assert main([*common, "--max-steps", "4", "--resume"]) == 0
    train = json.loads((out / "codescaler.json").read_text(encoding="utf-8"))["manifest"]["train"]
    assert train["global_step"] == 4
    assert train["resumed_from"].endswith("checkpoint-2")


def test_resume_without_a_checkpoint_is_an_input_error(tmp_path: Path, tiny_qwen3: Path, pairs_file: Path) -> None:
    code = main(["train", "--pairs", str(pairs_file), "--output-dir", str(tmp_path / "new"), "--backbone",
                 str(tiny_qwen3), "--resume"])
    assert code == 2


def test_lora_saves_adapter_and_head_and_merge_saves_full_weights(tmp_path: Path, tiny_qwen3: Path,
                                                                   pairs_file: Path) -> None:
    common = ["train", "--pairs", str(pairs_file), "--backbone", str(tiny_qwen3), "--lora", "--lora-r", "4",
              "--max-steps", "3", "--batch-size", "4", "--stats-pairs", "8", "--eval-fraction", "0"]
    published = tmp_path / "published"  # --push-to-hub to a file:// target: the TRL path's card and push
    assert main([*common, "--output-dir", str(tmp_path / "adapter"), "--push-to-hub", published.as_uri()]) == 0
    assert main([*common, "--output-dir", str(tmp_path / "merged"), "--merge"]) == 0
    assert (published / "adapter_model.safetensors").read_bytes() == (
        tmp_path / "adapter" / "adapter_model.safetensors").read_bytes()
    assert "codescaler" in (published / "README.md").read_text(encoding="utf-8")
    assert not any(published.glob("checkpoint-*")) and any((tmp_path / "adapter").glob("checkpoint-*"))
    adapter_meta = json.loads((tmp_path / "adapter" / "codescaler.json").read_text(encoding="utf-8"))
    assert adapter_meta["lora"] is True and adapter_meta["base_model"] == str(tiny_qwen3.resolve())
    assert (tmp_path / "adapter" / "adapter_model.safetensors").is_file()
    assert not (tmp_path / "merged" / "adapter_config.json").exists()
    probe = (["Write `f(x)`."] * 2, ["```python\ndef f(x):\n    return x\n```",
                                     "```python\ndef f(x):\n    return [x]\n```"])
    via_adapter = [s.raw_score for s in Scorer.load(str(tmp_path / "adapter")).score(*probe)]
    via_merged = [s.raw_score for s in Scorer.load(str(tmp_path / "merged")).score(*probe)]
    base = [s.raw_score for s in Scorer.load(str(tiny_qwen3), input_format="chat_template").score(*probe)]
    assert via_adapter == pytest.approx(via_merged, abs=1e-4)
    assert via_adapter != pytest.approx(base, abs=1e-4)  # the head (modules_to_save) and adapters trained


def test_lora_layers_adapts_only_the_last_layers_under_bf16_autocast(tmp_path: Path, tiny_qwen3: Path,
                                                                   pairs_file: Path) -> None:
    from safetensors import safe_open

    out = tmp_path / "last1"
    assert main(["train", "--pairs", str(pairs_file), "--backbone", str(tiny_qwen3), "--lora", "--lora-r", "4",
                 "--lora-layers", "1", "--bf16", "on", "--max-steps", "2", "--batch-size", "4",
                 "--stats-pairs", "0", "--eval-fraction", "0.2", "--eval-max-pairs", "3",
                 "--output-dir", str(out)]) == 0
    config = json.loads((out / "adapter_config.json").read_text(encoding="utf-8"))
    n_layers = json.loads((tiny_qwen3 / "config.json").read_text(encoding="utf-8"))["num_hidden_layers"]
    assert config["layers_to_transform"] == [n_layers - 1]
    with safe_open(str(out / "adapter_model.safetensors"), "pt") as weights:
        lora = [k for k in weights.keys() if "lora_" in k]  # noqa: SIM118 (safe_open is not iterable)
    assert lora and all(f"layers.{n_layers - 1}." in k for k in lora)
    assert {k.split(".")[-3] for k in lora} >= {"q_proj", "down_proj"}  # every Linear kind, not just attention
    meta = json.loads((out / "codescaler.json").read_text(encoding="utf-8"))
    assert meta["manifest"]["data"]["heldout_pairs"] == 3
    assert Scorer.load(str(out)).score(["Write `f(x)`."], ["```python\ndef f(x):\n    return x\n```"])[0].valid


def test_lora_layers_needs_lora(tmp_path: Path, tiny_qwen3: Path, pairs_file: Path,
                                capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--pairs", str(pairs_file), "--backbone", str(tiny_qwen3), "--lora-layers", "2",
                 "--output-dir", str(tmp_path / "x")]) == 2
    assert "--lora-layers needs --lora" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_bert_backbone_without_eos_trains_with_the_plain_format(tmp_path: Path, pairs_file: Path) -> None:
    bert = build_tiny_model(tmp_path / "bert", arch="bert")
    config = json.loads((bert / "tokenizer_config.json").read_text(encoding="utf-8"))
    config.pop("eos_token", None)  # like all-MiniLM-L6-v2: no EOS token at all
    (bert / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    out = tmp_path / "rm"
    assert main(["train", "--pairs", str(pairs_file), "--output-dir", str(out), "--backbone", str(bert),
                 "--max-steps", "2", "--batch-size", "4", "--stats-pairs", "4", "--eval-steps", "2"]) == 0
    assert json.loads((out / "codescaler.json").read_text(encoding="utf-8"))["input_format"] == "plain"
    assert Scorer.load(str(out)).score(["p"], ["```python\nx = 1\n```"])[0].valid


def test_accelerate_launch_trains_with_two_cpu_processes(tmp_path: Path, tiny_qwen3: Path, pairs_file: Path) -> None:
    accelerate = Path(sys.executable).parent / "accelerate"
    if not accelerate.exists():
        accelerate = Path(shutil.which("accelerate") or "accelerate")
    out = tmp_path / "rm"
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    cmd = [str(accelerate), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "29517",
           "-m", "codescaler", "train", "--pairs", str(pairs_file), "--output-dir", str(out),
           "--backbone", str(tiny_qwen3), "--max-steps", "2", "--batch-size", "4", "--stats-pairs", "4"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    manifest = json.loads((out / "codescaler.json").read_text(encoding="utf-8"))["manifest"]
    assert manifest["train"]["world_size"] == 2
    assert manifest["heldout"]["eval_pairs"] == manifest["data"]["heldout_pairs"]  # gathered once, all ranks


def test_init_from_continues_an_adapter_checkpoint_from_its_own_weights(tmp_path: Path, tiny_qwen3: Path,
                                                                          pairs_file: Path) -> None:
    first = tmp_path / "first"
    assert main(["train", "--pairs", str(pairs_file), "--backbone", str(tiny_qwen3), "--lora", "--lora-r", "4",
                 "--lora-layers", "1", "--max-length", "200", "--max-steps", "3", "--lr", "3e-3", "--batch-size", "4",
                 "--stats-pairs", "0", "--eval-fraction", "0", "--output-dir", str(first)]) == 0
    probe = (["Write `f(x)`."] * 3, ["```python\ndef f(x):\n    return x\n```",
                                     "```python\ndef f(x):\n    return [x]\n```", "```python\npass\n```"])
    before = [s.raw_score for s in Scorer.load(str(first), dtype="float32").score(*probe)]
    common = ["train", "--pairs", str(pairs_file), "--init-from", str(first), "--max-steps", "2", "--batch-size", "4",
              "--stats-pairs", "0", "--eval-fraction", "0"]
    # Learning rate 0: the continued model must score exactly like the checkpoint it started from
    # (adapter AND score head loaded, not a fresh head), and keep the checkpoint's adapter shape and format.
    assert main([*common, "--lr", "0", "--output-dir", str(tmp_path / "frozen")]) == 0
    frozen = [s.raw_score for s in Scorer.load(str(tmp_path / "frozen"), dtype="float32").score(*probe)]
    assert frozen == pytest.approx(before, abs=1e-5)
    config = json.loads((tmp_path / "frozen" / "adapter_config.json").read_text(encoding="utf-8"))
    assert config["r"] == 4 and config["layers_to_transform"] == [1]
    meta = json.loads((tmp_path / "frozen" / "codescaler.json").read_text(encoding="utf-8"))
    assert meta["max_length"] == 200 and meta["base_model"] == str(tiny_qwen3.resolve()) and meta["lora"] is True
    assert meta["manifest"]["train"]["init_from"]["path"] == str(first)
    assert len(meta["manifest"]["train"]["init_from"]["weights_sha256"]) == 64  # the exact starting weights
    assert "--init-from" in meta["manifest"]["reproduce"] and "--backbone" not in meta["manifest"]["reproduce"]
    # A real learning rate moves the scores away from the starting point.
    assert main([*common, "--lr", "3e-3", "--output-dir", str(tmp_path / "moved")]) == 0
    moved = [s.raw_score for s in Scorer.load(str(tmp_path / "moved"), dtype="float32").score(*probe)]
    assert moved != pytest.approx(before, abs=1e-4)


def test_init_from_a_folder_without_codescaler_metadata_is_an_input_error(
        tmp_path: Path, tiny_qwen3: Path, pairs_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--pairs", str(pairs_file), "--init-from", str(tiny_qwen3),
                 "--output-dir", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "has no codescaler.json" in err and "--backbone" in err
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("flags,expected", [([], []), (["--report-to", "tensorboard"], ["tensorboard"]),
                                            (["--report-to", "wandb", "trackio"], ["wandb", "trackio"])])
def test_train_passes_report_to_through_to_trls_config_default_none(
        pairs_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, flags: list[str], expected: list[str]) -> None:
    import codescaler.training
    from codescaler.cli import main

    seen = {}

    def fake_train(settings, config):  # the TRL config as train_reward_model would receive it
        seen["report_to"] = config.report_to
        return codescaler.training.TrainResult(settings.output, None, {})

    monkeypatch.setattr(codescaler.training, "train_reward_model", fake_train)
    assert main(["train", "--pairs", str(pairs_file), "--output-dir", str(tmp_path / "rm"), *flags]) == 0
    assert seen["report_to"] == expected


def test_rl_passes_report_to_into_its_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import codescaler.rl
    from codescaler.cli import main

    seen = {}
    def fake_run_rl(settings):
        seen["s"] = settings
        return {}

    monkeypatch.setattr(codescaler.rl, "run_rl", fake_run_rl)
    assert main(["rl", "--output-dir", str(tmp_path / "run"), "--report-to", "tensorboard"]) == 0
    assert seen["s"].report_to == ["tensorboard"]
    assert main(["rl", "--output-dir", str(tmp_path / "run")]) == 0
    assert seen["s"].report_to == []
