"""The settings and result of one reward-model training run (layer L2).

``TrainSettings``: ours (data, input format, LoRA, output); optimisation settings live in TRL's
``RewardConfig``. ``TrainSchedule``: the ``codescaler train`` optimisation flags with their "auto" rules,
which ``training.reward_config`` resolves into a ``RewardConfig``. ``TrainResult``: what was written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from codescaler.errors import InputError
from codescaler.records import ExtractMode
from codescaler.rm_checkpoint import InputFormat, RMMetadata


@dataclass(frozen=True)
class TrainSettings:
    """Our settings (data, input format, LoRA, output). Optimisation settings live in TRL's RewardConfig."""

    pairs: Path
    output: Path
    model: str = "minilm"
    eval_pairs: Path | None = None
    eval_fraction: float = 0.1
    extract_mode: ExtractMode = ExtractMode.STRICT
    input_format: InputFormat | None = None   # None: chat_template when the tokenizer has one, else plain
    max_length: int | None = None              # None: the --init-from checkpoint's, else 1024
    margin_scale: float = 0.0
    lora: bool = False
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_layers: int = 0                       # >0: adapt only the last N transformer layers (cheaper backward)
    eval_max_pairs: int = 0                    # >0: a seeded sample of the held-out pairs (faster evaluation)
    merge: bool = False
    resume: bool = False
    init_from: str | None = None               # a codescaler RM checkpoint (or "default") to continue
    stats_pairs: int = 256                     # training pairs scored for score_mean/std (0: skip)
    command: str = ""                          # the command line, recorded in the manifest

    def validate(self) -> None:
        """Raise ``InputError`` naming the setting (as its CLI flag) and what is accepted."""
        checks = [
            ("--eval-fraction", 0.0 <= self.eval_fraction < 1.0, self.eval_fraction, "a number in [0, 1)"),
            ("--max-length", self.max_length is None or self.max_length > 0, self.max_length, "a positive integer"),
            ("--margin-scale", self.margin_scale >= 0.0, self.margin_scale, "a number >= 0"),
            ("--lora-r", self.lora_r > 0, self.lora_r, "a positive integer"),
            ("--lora-layers", self.lora_layers >= 0, self.lora_layers, "an integer >= 0"),
            ("--eval-max-pairs", self.eval_max_pairs >= 0, self.eval_max_pairs, "an integer >= 0"),
            ("--stats-pairs", self.stats_pairs >= 0, self.stats_pairs, "an integer >= 0"),
        ]
        for flag, ok, value, accepted in checks:
            if not ok:
                raise InputError(f"{flag} must be {accepted}, got {value!r}", field=flag)
        if self.lora_layers and not self.lora:
            raise InputError("--lora-layers needs --lora", field="--lora-layers")
        if self.merge and not self.lora:
            raise InputError("--merge needs --lora", field="--merge")


@dataclass(frozen=True)
class TrainSchedule:
    """How ``codescaler train`` fills TRL's ``RewardConfig`` (``training.reward_config``).

    Not a second RewardConfig: only the CLI's optimisation flags and the rules it applies to them (the
    learning rate by LoRA or not, bf16 and gradient checkpointing by device, the evaluation and checkpoint
    cadence by pair count). Library users who want TRL's other knobs pass their own ``RewardConfig`` to
    ``training.train_reward_model``.
    """

    epochs: float = 1.0
    max_steps: int = -1                        # > 0: overrides epochs
    lr: float | None = None                    # None: 2e-5 full, 1e-4 LoRA
    batch_size: int = 8                        # pairs per device per step
    grad_accum: int = 1
    seed: int = 42
    center_rewards_coefficient: float | None = None
    eval_steps: int | None = None              # None: a quarter of the total steps
    gradient_checkpointing: str = "auto"       # on, off, auto (on with CUDA)
    bf16: str = "auto"                         # on, off, auto (on with a bf16-capable GPU)
    report_to: tuple[str, ...] = ()            # experiment trackers for transformers; () for none

    def validate(self) -> None:
        """Raise ``InputError`` naming the flag when a count is not positive."""
        for value, flag in ((self.batch_size, "--batch-size"), (self.grad_accum, "--grad-accum"),
                            (self.epochs, "--epochs")):
            if not value > 0:
                raise InputError(f"{flag} must be > 0, got {value}", field=flag)


@dataclass(frozen=True)
class TrainResult:
    """The checkpoint folder written, its metadata (None on processes other than 0), held-out metrics."""

    output: Path
    metadata: RMMetadata | None           # None on processes other than 0
    heldout: dict[str, float] = field(default_factory=dict)

