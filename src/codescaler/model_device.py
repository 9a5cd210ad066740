"""How a loaded model runs: its dtype, and batches of token ids on its device (layer L2).

``pick_dtype`` (``dtype=None`` or ``"auto"``): bfloat16 on CUDA when supported; on CPU bfloat16 only for
models of at least 100M parameters on CPUs with native bf16 (AVX512-BF16/AMX), where Qwen2.5-0.5B
measured 1.3x (busy machine) to 2.9x (quiet) faster at ~5% score error; float32 otherwise (small models
lose too much precision in bf16; see docs/reward_model.md). The Scorer, the feature extractor and the
RL policy share it. ``target_device``: the device a model runs on when none is named. ``right_pad``: the
right-padded ids and attention mask of one batch, with room for a shared prefix's cached tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from codescaler.errors import InputError

_BF16_CPU_MIN_PARAMS = 100_000_000


def target_device(device: str | Any | None = None) -> Any:
    """The ``torch.device`` a model runs on: ``device`` when given, else CUDA when available, else the CPU."""
    import torch

    return torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))


def pick_dtype(dtype: str | Any | None, device: Any, n_params: int) -> Any:
    """The torch dtype for a model of ``n_params`` parameters on ``device``: ``dtype`` itself (a torch
    dtype or a name: float32/fp32, bfloat16/bf16, float16/fp16) when given, else the rule above.
    Raises ``InputError`` for an unknown name."""
    import torch

    if dtype is not None and dtype != "auto":
        if isinstance(dtype, torch.dtype):
            return dtype
        names = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
                 "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}
        if dtype not in names:
            raise InputError(f"unknown dtype {dtype!r}", field="dtype", fix="use auto, float32, bfloat16 or float16")
        return names[dtype]
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    if device.type == "cpu" and n_params >= _BF16_CPU_MIN_PARAMS:
        capability = str(torch.backends.cpu.get_cpu_capability())
        if "AVX512" in capability or "AMX" in capability:
            return torch.bfloat16
    return torch.float32


def dtype_label(dtype: str | None, device: str | None) -> str:
    """What ``pick_dtype`` decides on this machine, as a cache-key label, without loading a model.

    An explicit dtype is its torch name; ``None``/``"auto"`` is ``auto/<device type>/<native bf16 or the
    CPU capability>``, so cached scores of a bf16 machine are never mixed with a float32 machine's
    (the rule also depends on the model's size, which the checkpoint's content already pins)."""
    import torch

    if dtype is not None and dtype != "auto":
        return str(pick_dtype(dtype, torch.device("cpu"), 0))
    target = target_device(device)
    if target.type == "cuda":  # the CUDA rule does not depend on the model's size
        return f"auto/cuda/{'bf16' if pick_dtype(None, target, 0) == torch.bfloat16 else 'fp32'}"
    return f"auto/{target.type}/{torch.backends.cpu.get_cpu_capability()}"


def right_pad(batch: Sequence[Sequence[int]], prefix_length: int, pad_id: int, device: Any) -> tuple[Any, Any]:
    """(input_ids, attention_mask) for rows of token ids padded on the right; the mask also covers
    ``prefix_length`` cached tokens before every row (prefix sharing). Shared by the feature extractor."""
    import torch

    width = max(len(ids) for ids in batch)
    input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), prefix_length + width), dtype=torch.long)
    mask[:, :prefix_length] = 1
    for row, ids in enumerate(batch):
        input_ids[row, : len(ids)] = torch.tensor(list(ids), dtype=torch.long)
        mask[row, prefix_length: prefix_length + len(ids)] = 1
    return input_ids.to(device), mask.to(device)
