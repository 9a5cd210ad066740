"""The reward-model checkpoint format: input format + metadata, identical at train and score time (L2).

A codescaler RM checkpoint is a standard Hugging Face sequence-classification folder (one label) plus
``codescaler.json`` holding an ``RMMetadata``. Training writes it; the Scorer reads it, so a model is
always scored on exactly the input it was trained on. ``format_rm_input``/``encode_rm_input`` are the
ONE place that turns (problem, code) into model input; training must feed TRL pre-tokenized
``chosen_ids``/``rejected_ids`` made by ``encode_rm_input`` (TRL then skips its own templating).

Input formats (decisions, see docs/reward_model.md):

- ``chat_template`` (default; decoders with a chat template, e.g. Qwen/Skywork RMs): the tokenizer's own
  template over ``[user: problem, assistant: code]`` with ``add_generation_prompt=False``. The assistant
  turn is ONLY the extracted code, bare, without a Markdown fence (as in the paper, so a released
  CodeScaler/Skywork RM sees the input it was trained on). Tokenized with ``add_special_tokens=False``
  because the template already contains them (as TRL does for conversations).
- ``plain`` (encoders such as BERT/MiniLM and base models without a template): the fixed text
  ``PLAIN_TEMPLATE`` (``"Problem:\\n{prompt}\\n\\nSolution:\\n{code}"``), tokenized with the
  tokenizer's special tokens, then EOS appended unless already last (as TRL does for plain text). One
  text rather than BERT's sentence-pair encoding: the same code path serves encoders and decoders and
  the score is always read at the last token (encoder heads pool their own ``[CLS]``).

Truncation rule (``TRUNCATION_RULE``, "keep the code"): when the input exceeds ``max_length`` tokens,
the problem statement is cut first, keeping its head; the problem keeps at least ``min(its length,
max_length // 4)`` tokens so the RM never scores code without any statement. Only when the code does not
fit in what is left is the code cut too, keeping its head. Cuts happen on the text before templating,
so the template's closing tokens (``<|im_end|>``, EOS) always stay and the score is read at the true
end of the sequence.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from codescaler import __version__
from codescaler.data.artifacts import atomic_write_json
from codescaler.errors import InputError
from codescaler.records import ExtractMode, StrEnum
from codescaler.shaping import Shaping

logger = logging.getLogger(__name__)

METADATA_FILE = "codescaler.json"
FORMAT_VERSION = 2   # 2: a ``head`` block (feature-head RMs); 1 files still read
PLAIN_TEMPLATE = "Problem:\n{prompt}\n\nSolution:\n{code}"
TRUNCATION_RULE = "problem_head_first"
DEFAULT_MAX_LENGTH = 2048
_MIN_MAX_LENGTH = 16


class InputFormat(StrEnum):
    """How (problem, code) becomes the RM's input text."""

    CHAT_TEMPLATE = "chat_template"
    PLAIN = "plain"


@dataclass(frozen=True)
class RMMetadata:
    """Everything needed to score with an RM exactly as it was trained (``codescaler.json``).

    ``score_mean``/``score_std``: raw-score statistics over the training data (None when unknown);
    informational, the Scorer returns raw scores unchanged. ``lora``: the folder holds a peft adapter
    whose base model is ``base_model``. ``head``: the folder holds a Bradley–Terry head over backbone
    features (``codescaler.heads``; the block has its kind, file, columns and the ``features`` spec)
    and no model weights: the backbone ``base_model`` is loaded as a causal LM. ``manifest``: how the checkpoint was made (data hashes,
    settings, held-out metrics, the command to reproduce it).
    """

    format_version: int = 1   # 2 only for head checkpoints, so older readers of plain RMs still work
    input_format: InputFormat = InputFormat.CHAT_TEMPLATE
    plain_template: str = PLAIN_TEMPLATE
    max_length: int = DEFAULT_MAX_LENGTH
    truncation: str = TRUNCATION_RULE
    extract_mode: ExtractMode = ExtractMode.STRICT
    shaping: Shaping = Shaping.SOFTPLUS
    score_mean: float | None = None
    score_std: float | None = None
    backbone: str = ""
    lora: bool = False
    base_model: str | None = None
    head: dict[str, Any] | None = None
    manifest: dict[str, Any] = field(default_factory=dict)
    codescaler_version: str = __version__

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (enums as their string values)."""
        out = dataclasses.asdict(self)
        for key in ("input_format", "extract_mode", "shaping"):
            out[key] = str(out[key])
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, path: str | None = None) -> RMMetadata:
        """Validate and build; unknown keys are ignored with a warning (written by a newer version).

        Raises ``InputError`` naming the field for a wrong type or value, or a format_version newer
        than this code understands.
        """
        if not isinstance(data, dict):
            raise InputError(f"expected a JSON object, got {type(data).__name__}", path=path,
                             fix="rewrite the file with rm_checkpoint.write_metadata")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            logger.warning("%s: ignoring unknown metadata keys %s", path or METADATA_FILE, unknown)
        kwargs = {k: v for k, v in data.items() if k in known}
        version = kwargs.get("format_version", FORMAT_VERSION)
        if not isinstance(version, int) or version < 1 or version > FORMAT_VERSION:
            raise InputError(f"unsupported format_version {version!r} (this codescaler reads 1..{FORMAT_VERSION})",
                             path=path, field="format_version", fix="upgrade codescaler")
        for key, enum in (("input_format", InputFormat), ("extract_mode", ExtractMode), ("shaping", Shaping)):
            if key in kwargs:
                try:
                    kwargs[key] = enum(kwargs[key])
                except ValueError:
                    allowed = ", ".join(e.value for e in enum)
                    raise InputError(f"invalid value {kwargs[key]!r}", path=path, field=key,
                                     fix=f"use one of: {allowed}") from None
        max_length = kwargs.get("max_length", DEFAULT_MAX_LENGTH)
        if not isinstance(max_length, int) or isinstance(max_length, bool) or max_length < _MIN_MAX_LENGTH:
            raise InputError(f"max_length must be an integer >= {_MIN_MAX_LENGTH}, got {max_length!r}",
                             path=path, field="max_length")
        if kwargs.get("truncation", TRUNCATION_RULE) != TRUNCATION_RULE:
            raise InputError(f"unknown truncation rule {kwargs['truncation']!r}", path=path,
                             field="truncation", fix=f"use {TRUNCATION_RULE!r}")
        template = kwargs.get("plain_template", PLAIN_TEMPLATE)
        if not isinstance(template, str) or "{prompt}" not in template or "{code}" not in template:
            raise InputError(f"plain_template must contain {{prompt}} and {{code}}, got {template!r}",
                             path=path, field="plain_template")
        head = kwargs.get("head")
        if head is not None and (not isinstance(head, dict) or not isinstance(head.get("features"), dict)):
            raise InputError("head must be a JSON object with a features spec", path=path, field="head",
                             fix="retrain the head with `codescaler train --head`")
        if not isinstance(kwargs.get("manifest", {}), dict):
            raise InputError("manifest must be a JSON object", path=path, field="manifest")
        return cls(**kwargs)


def write_metadata(directory: str | os.PathLike[str], meta: RMMetadata) -> Path:
    """Write ``codescaler.json`` into ``directory`` atomically, with the umask's mode; return its path."""
    return atomic_write_json(Path(directory) / METADATA_FILE, meta.to_dict(), sort_keys=True)


def read_metadata(directory: str | os.PathLike[str]) -> RMMetadata:
    """Read ``codescaler.json`` from a checkpoint folder.

    Raises ``InputError`` when it is missing (saying how to score a plain HF reward model instead),
    not valid JSON, or has invalid fields.
    """
    path = Path(directory) / METADATA_FILE
    if not path.is_file():
        raise InputError(
            f"{directory} has no {METADATA_FILE}, so it is not a codescaler RM checkpoint",
            path=str(directory),
            fix="train it with `codescaler train`, or score a plain HF reward model with "
            "`codescaler score --input-format chat_template|plain` (a model whose tokenizer has a chat "
            "template is scored with the chat_template format by default), or write one with "
            "codescaler.rm_checkpoint.write_metadata",
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise InputError(f"not valid JSON: {err.msg}", path=str(path), line=err.lineno,
                         fix="rewrite it with rm_checkpoint.write_metadata") from None
    return RMMetadata.from_dict(data, path=str(path))


def adapter_base_model(directory: str | os.PathLike[str], meta: RMMetadata | None) -> str:
    """The base model a LoRA adapter folder is applied to: codescaler.json's ``base_model``, else peft's
    ``base_model_name_or_path``. Raises ``InputError`` when neither names one."""
    config = json.loads((Path(directory) / "adapter_config.json").read_text(encoding="utf-8"))
    base = (meta.base_model if meta else None) or config.get("base_model_name_or_path")
    if not base:
        raise InputError(f"{directory} is a LoRA adapter without a base model", field="base_model",
                         fix="set base_model in codescaler.json")
    return str(base)


_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf")


def checkpoint_sha256(directory: str | os.PathLike[str]) -> str:
    """Content hash of a checkpoint folder: the name and bytes of every top-level file (not hidden
    ones, not subfolders such as trainer ``checkpoint-N``). Weight and head files go through
    ``feature_backbone.weights_sha256``, memoised per process on their names, sizes and mtimes; the rest
    (codescaler.json, configs, tokenizer) is small and read each time. Retraining into the same folder
    changes it; copying the folder elsewhere does not."""
    import hashlib

    from codescaler.feature_backbone import weights_sha256

    root = Path(directory)
    files = sorted(p for p in root.iterdir() if p.is_file() and not p.name.startswith("."))
    digest = hashlib.sha256()
    for path in files:
        if path.suffix not in _WEIGHT_SUFFIXES:
            digest.update(path.name.encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    if any(p.suffix in _WEIGHT_SUFFIXES for p in files):
        digest.update(b"weights\0" + weights_sha256(root).encode())
    return digest.hexdigest()

def default_metadata(tokenizer: Any, backbone: str, input_format: InputFormat | str | None = None) -> RMMetadata:
    """Metadata for a plain HF reward model without ``codescaler.json`` (e.g. Skywork-Reward-V2).

    ``input_format`` None: ``chat_template`` when the tokenizer has one (what hub RMs are trained on),
    else ``plain``. Logs a warning, because the format the model was really trained on is a guess.
    """
    if input_format is None:
        fmt = InputFormat.CHAT_TEMPLATE if getattr(tokenizer, "chat_template", None) else InputFormat.PLAIN
    else:
        try:
            fmt = InputFormat(input_format)
        except ValueError:
            raise InputError(f"unknown input format {input_format!r}", field="input_format",
                             fix="use chat_template or plain") from None
    if fmt is InputFormat.CHAT_TEMPLATE and not getattr(tokenizer, "chat_template", None):
        raise InputError(f"{backbone}: the tokenizer has no chat template", field="input_format",
                         fix="use --input-format plain")
    limit = getattr(tokenizer, "model_max_length", None)
    max_length = min(DEFAULT_MAX_LENGTH, limit) if isinstance(limit, int) and limit >= _MIN_MAX_LENGTH else DEFAULT_MAX_LENGTH
    logger.warning("%s has no %s: scoring with default metadata (input_format=%s, max_length=%d); "
                   "pass the input format it was trained with if this is wrong", backbone, METADATA_FILE,
                   fmt.value, max_length)
    return RMMetadata(input_format=fmt, backbone=backbone, max_length=max_length)


# --------------------------------------------------------------------------------------------------
# Input formatting


def format_rm_input(tokenizer: Any, prompt: str, code: str, meta: RMMetadata) -> str:
    """The RM input text for one (problem statement, extracted code), before tokenization."""
    if meta.input_format is InputFormat.CHAT_TEMPLATE:
        messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": code}]
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=False)
        if not isinstance(text, str):
            raise TypeError(f"apply_chat_template returned {type(text).__name__}, expected str")
        return text
    # str.replace, not str.format: code and prompts are full of braces.
    return meta.plain_template.replace("{prompt}", prompt).replace("{code}", code)


def _encode_text(tokenizer: Any, text: str, meta: RMMetadata) -> list[int]:
    if meta.input_format is InputFormat.CHAT_TEMPLATE:
        return list(tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])
    ids = list(tokenizer(text, add_special_tokens=True, verbose=False)["input_ids"])
    eos = tokenizer.eos_token_id
    if eos is not None and (not ids or ids[-1] != eos):
        ids.append(eos)
    return ids


def _encode(tokenizer: Any, prompt: str, code: str, meta: RMMetadata) -> list[int]:
    return _encode_text(tokenizer, format_rm_input(tokenizer, prompt, code, meta), meta)


def _text_head(tokenizer: Any, text: str, n_tokens: int) -> str:
    """The prefix of ``text`` covered by its first ``n_tokens`` tokens (character-exact when possible)."""
    if n_tokens <= 0:
        return ""
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
    offsets = enc["offset_mapping"]
    if n_tokens >= len(offsets):
        return text
    return text[: offsets[n_tokens - 1][1]]


def _token_count(tokenizer: Any, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])


def rm_input_length(tokenizer: Any, prompt: str, code: str, meta: RMMetadata) -> int:
    """Tokens of the RM input before any truncation (it is cut when this exceeds the max length)."""
    return len(_encode(tokenizer, prompt, code, meta))


def encode_rm_input(
    tokenizer: Any, prompt: str, code: str, meta: RMMetadata, max_length: int | None = None
) -> list[int]:
    """Token ids of the RM input, at most ``max_length`` (default ``meta.max_length``) long.

    Applies the module's truncation rule (keep the code; cut the problem's tail first). The last id is
    always the template's last token, where the score is read. Raises ``InputError`` when even an empty
    problem and empty code do not fit (``max_length`` smaller than the template).
    """
    return _fit(tokenizer, prompt, code, meta, max_length)[2]


def encode_rm_input_span(
    tokenizer: Any, prompt: str, code: str, meta: RMMetadata, max_length: int | None = None
) -> tuple[list[int], int, int]:
    """``encode_rm_input`` plus where the code sits: ``(ids, start, end)``, code tokens ``ids[start:end]``.

    A token counts as code when its characters overlap the code's characters in the rendered text (a
    token that straddles the seam is code). Empty code (or code cut to nothing) gives ``start == end``
    at the position where the code would begin. Used by the feature extractor, which reads the code's
    likelihood and pools hidden states over exactly these tokens.
    """
    new_prompt, new_code, ids = _fit(tokenizer, prompt, code, meta, max_length)
    text = format_rm_input(tokenizer, new_prompt, new_code, meta)
    # The code follows the prompt in every format, so its last occurrence is the assistant's turn.
    head = format_rm_input(tokenizer, new_prompt, "\x00", meta).rfind("\x00")
    char_start = text.rfind(new_code) if new_code else head
    if char_start < 0 or (head >= 0 and char_start < head):
        char_start = head
    char_end = char_start + len(new_code)
    add_special = meta.input_format is not InputFormat.CHAT_TEMPLATE
    enc = tokenizer(text, add_special_tokens=add_special, return_offsets_mapping=True, verbose=False)
    offsets = enc["offset_mapping"]
    if list(enc["input_ids"]) != ids[: len(offsets)]:
        raise RuntimeError("re-tokenizing the RM input changed its ids")  # our fault, not the user's
    start = end = None
    for k, (lo, hi) in enumerate(offsets):
        if hi <= lo:
            continue  # special tokens carry empty offsets
        if start is None and hi > char_start:
            start = k
        if lo < char_end:
            end = k + 1
    if start is None or not new_code:
        start = end = start if start is not None else len(offsets)
    end = max(start, end if end is not None else start)
    return ids, start, end


def _fit(tokenizer: Any, prompt: str, code: str, meta: RMMetadata, max_length: int | None
         ) -> tuple[str, str, list[int]]:
    """(problem text, code text, ids) after the truncation rule."""
    limit = max_length if max_length is not None else meta.max_length
    if limit < _MIN_MAX_LENGTH:
        raise InputError(f"max_length must be >= {_MIN_MAX_LENGTH}, got {limit}", field="max_length")
    ids = _encode(tokenizer, prompt, code, meta)
    if len(ids) <= limit:
        return prompt, code, ids
    overhead = len(_encode(tokenizer, "", "", meta))
    budget = limit - overhead
    if budget < 2:
        raise InputError(f"max_length {limit} leaves no room for the input: the template alone takes "
                         f"{overhead} tokens", field="max_length", fix=f"use max_length >= {overhead + 64}")
    prompt_len = _token_count(tokenizer, prompt)
    code_len = _token_count(tokenizer, code)
    # The problem keeps at least a quarter of the budget (or all of it when shorter); code gets the rest
    # of the budget, and any room the code leaves goes back to the problem.
    prompt_floor = min(prompt_len, limit // 4, budget // 2)
    code_keep = min(code_len, budget - prompt_floor)
    prompt_keep = min(prompt_len, budget - code_keep)
    # Re-tokenizing the pieces inside the template can differ from their separate counts by a few
    # tokens at the seams, so shrink by the overflow until it fits (a handful of rounds at most).
    for _ in range(50):
        new_prompt = _text_head(tokenizer, prompt, prompt_keep)
        new_code = _text_head(tokenizer, code, code_keep)
        ids = _encode(tokenizer, new_prompt, new_code, meta)
        over = len(ids) - limit
        if over <= 0:
            return new_prompt, new_code, ids
        if prompt_keep > prompt_floor:
            prompt_keep = max(prompt_floor, prompt_keep - over)
        elif code_keep > 0:
            code_keep = max(0, code_keep - over)
        else:
            prompt_keep = max(0, prompt_keep - over)
    # Unreachable for real tokenizers; keep the end (where the score is read) rather than fail.
    logger.warning("truncation did not converge; cutting tokens from the middle")
    return new_prompt, new_code, ids[: limit - 8] + ids[-8:]
