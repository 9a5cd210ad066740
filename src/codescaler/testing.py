"""Tiny random models for tests and examples: built offline in about a second (layer L2).

``build_tiny_model`` writes a tiny random model + tokenizer as a standard Hugging Face folder; every test
uses one in place of a real backbone. Nothing here downloads anything.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from codescaler.errors import InputError

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
