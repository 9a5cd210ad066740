"""`train --push-to-hub`: the model card and the push, offline — a file:// target gets the real copy,
a hub id meets HF_HUB_OFFLINE or an unreachable endpoint through huggingface_hub's own calls."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from codescaler.errors import InputError
from codescaler.hub_push import publish_checkpoint, pushed_files
from codescaler.rm_checkpoint import InputFormat, RMMetadata, write_metadata
from codescaler.testing import build_tiny_model

PROMPTS = ["Write `add(a, b)` returning the sum of a and b.", "Return the reverse of the string s."]
CODES = [["def add(a, b):\n    return a + b\n", "def add(a, b):\n    return a - b\n",
          "def add(a, b):\n    return 0\n"],
         ["def rev(s):\n    return s[::-1]\n", "def rev(s):\n    return s\n", "def rev(s):\n    return ''\n"]]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = build_tiny_model(tmp_path_factory.mktemp("rm"), arch="qwen3", seed=2)
    write_metadata(folder, RMMetadata(input_format=InputFormat.CHAT_TEMPLATE, max_length=256, backbone="tiny-qwen3"))
    (folder / "checkpoint-5").mkdir()
    (folder / "checkpoint-5" / "optimizer.pt").write_bytes(b"x" * 10)
    return folder


def test_a_file_target_gets_the_checkpoint_with_its_model_card_and_without_training_leftovers(
        checkpoint: Path, tmp_path: Path) -> None:
    dest = tmp_path / "store" / "my-rm"
    assert publish_checkpoint(checkpoint, dest.as_uri()) == str(dest)
    got = sorted(p.relative_to(dest) for p in dest.rglob("*") if p.is_file())
    assert got == pushed_files(checkpoint) and Path("README.md") in got and Path("codescaler.json") in got
    assert not (dest / "checkpoint-5").exists()
    assert "tiny-qwen3" in (dest / "README.md").read_text(encoding="utf-8")
    assert (dest / "model.safetensors").read_bytes() == (checkpoint / "model.safetensors").read_bytes()


def _in_subprocess(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **env})


def test_a_hub_push_fails_with_one_line_when_offline_or_unreachable(checkpoint: Path) -> None:
    code = ("from codescaler.hub_push import publish_checkpoint; from codescaler.errors import InputError\n"
            "try:\n    publish_checkpoint({!r}, 'someone/tiny-rm', endpoint={!r})\n"
            "except InputError as err:\n    print(err)\n")
    offline = _in_subprocess(code.format(str(checkpoint), None), HF_HUB_OFFLINE="1")
    assert "cannot push to someone/tiny-rm: the hub is offline here (HF_HUB_OFFLINE is set)" in offline.stdout
    assert f"hf upload someone/tiny-rm {checkpoint}" in offline.stdout
    unreachable = _in_subprocess(code.format(str(checkpoint), "http://127.0.0.1:9"), HF_HUB_OFFLINE="0",
                                 HF_TOKEN="hf_dummy_token_for_tests")
    assert "cannot push to someone/tiny-rm at http://127.0.0.1:9:" in unreachable.stdout, unreachable.stderr
    assert len(unreachable.stdout.strip().splitlines()) == 1


def test_bad_targets_are_input_errors(checkpoint: Path) -> None:
    with pytest.raises(InputError, match="not a hub repo id"):
        publish_checkpoint(checkpoint, "not a repo id!")
    with pytest.raises(InputError, match="checkpoint folder itself"):
        publish_checkpoint(checkpoint, checkpoint.as_uri())


def test_train_head_pushes_after_saving_and_offline_exits_2_with_the_checkpoint_kept(tmp_path: Path) -> None:
    backbone = build_tiny_model(tmp_path / "lm", arch="qwen2", kind="causal", seed=3, num_layers=2)
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps({"prompt": p, "chosen": f"```python\n{cs[0]}```",
                                         "rejected": f"```python\n{bad}```", "task_id": f"t{i}"}) + "\n"
                             for i, (p, cs) in enumerate(zip(PROMPTS, CODES, strict=True)) for bad in cs[1:]))
    common = ["-m", "codescaler", "train", "--head", "linear", "--pairs", str(pairs), "--backbone", str(backbone),
              "--layers", "1", "--cache-dir", str(tmp_path / "cache"), "--max-length", "128", "--dtype", "float32",
              "--l2", "0.1", "--folds", "2"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1"}
    dest = tmp_path / "published"
    done = subprocess.run([sys.executable, *common, "--output-dir", str(tmp_path / "rm"), "--push-to-hub", dest.as_uri()],
                          capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr
    assert (dest / "head.safetensors").is_file() and (dest / "README.md").is_file()
    assert f"pushed {tmp_path / 'rm'} to {dest}" in done.stdout
    offline = subprocess.run([sys.executable, *common, "--output-dir", str(tmp_path / "rm2"), "--push-to-hub", "me/rm"],
                             capture_output=True, text=True, timeout=600, env=env)
    assert offline.returncode == 2 and "HF_HUB_OFFLINE is set" in offline.stderr
    assert "Traceback" not in offline.stderr
    assert (tmp_path / "rm2" / "head.safetensors").is_file() and (tmp_path / "rm2" / "README.md").is_file()
