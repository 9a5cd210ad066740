"""The frozen causal LM that features are read from: found, identified by its weights, loaded (layer L2).

``backbone_folder`` resolves a short name, folder or hub id to a local folder; ``weights_sha256`` is the
backbone's identity (memoised per process); ``load_backbone`` loads the LM and its tokenizer in the
Scorer's dtype rule, refusing other weights than ``expect_sha256`` before loading them.
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path
from typing import Any

from codescaler.errors import InputError


def weights_sha256(folder: str | Path) -> str:
    """sha256 over a model folder's weight files (name + content, sorted), the backbone's identity.

    Hashing a 0.5B model reads ~1.3 GB, and one job asks twice (the spec, then the load): the digest is
    memoised per process on the files' names, sizes and modification times.
    """
    root = Path(folder)
    files = sorted(p for p in root.iterdir() if p.suffix in (".safetensors", ".bin", ".gguf") and p.is_file())
    if not files:
        raise InputError(f"{root} holds no weight files", path=str(root), field="backbone",
                         fix="pass a Hugging Face model folder")
    state = tuple((str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns) for p in files)
    return _files_sha256(state)


@functools.lru_cache(maxsize=8)
def _files_sha256(state: tuple[tuple[str, int, int], ...]) -> str:
    digest = hashlib.sha256()
    for path, _size, _mtime in state:
        digest.update(Path(path).name.encode() + b"\0")
        with open(path, "rb") as handle:
            while chunk := handle.read(1 << 22):
                digest.update(chunk)
    return digest.hexdigest()


def backbone_folder(name: str) -> Path:
    """The local folder of a short name, folder or hub id (hub ids are downloaded where the hub is reachable)."""
    from codescaler.models import resolve_model

    folder = Path(resolve_model(name))
    if not folder.is_dir():
        from huggingface_hub import snapshot_download

        folder = Path(snapshot_download(str(folder)))
    return folder


def load_backbone(name: str, *, device: str | None = None, dtype: Any = None,
                  expect_sha256: str | None = None) -> tuple[Any, Any, str]:
    """(causal LM in its target dtype, tokenizer, weights sha256) for a short name, folder or hub id.

    ``expect_sha256``: refuse other weights, before they are loaded.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from codescaler.model_device import pick_dtype, target_device

    folder = backbone_folder(name)
    sha = weights_sha256(folder)
    if expect_sha256 and sha != expect_sha256:
        raise InputError(f"backbone {name!r} has weights {sha[:12]}…, but the features were made on "
                         f"{expect_sha256[:12]}…", field="features.backbone_sha256",
                         fix="rebuild the backbone with `python -m codescaler.models prepare`, or retrain "
                         "the head on this backbone")
    target = target_device(device)
    chosen = pick_dtype(dtype, target, _parameter_count(folder))
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    try:
        model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=chosen)
    except ValueError as err:
        raise InputError(f"{name!r} is not a causal LM: {str(err).splitlines()[0]}", field="features.backbone",
                         fix="feature heads need a causal LM backbone (e.g. qwen2.5-coder-0.5b-instruct)") from None
    model = model.to(target)  # type: ignore[arg-type]  # transformers' stubs type .to() for PreTrainedModel
    return model.eval(), tokenizer, sha


def backbone_precision(name: str, *, device: str | None = None, dtype: Any = None) -> str:
    """The dtype ``load_backbone(name, device=, dtype=)`` would load in (``"float32"``, ``"bfloat16"``, ...),
    decided without loading the weights: the feature cache keeps rows of each precision apart."""
    from codescaler.model_device import pick_dtype, target_device

    folder = backbone_folder(name)
    chosen = pick_dtype(dtype, target_device(device), _parameter_count(folder))
    return str(chosen).removeprefix("torch.")


def _parameter_count(folder: Path) -> int:
    """Parameters from the weight files' sizes (bytes / bytes per parameter), without loading them."""
    total = sum(p.stat().st_size for p in folder.iterdir() if p.suffix == ".safetensors")
    config = json.loads((folder / "config.json").read_text(encoding="utf-8")) if (folder / "config.json").is_file() else {}
    width = 2 if str(config.get("torch_dtype", config.get("dtype", "float32"))) in ("bfloat16", "float16") else 4
    return total // width
