"""The settings of a GRPO run: presets, checks, TRL's ``GRPOConfig``, and the run record (layer L3).

``RLSettings`` is what the CLI resolves; ``resolve_settings`` fills in the preset (``PRESETS``: the
paper's ``gpu`` recipe, and the LoRA ``cpu`` and ``smoke`` presets), ``RLSettings.validate`` and, with the
preset, ``check_settings`` refuse bad values and combinations naming the flag, ``grpo_config`` builds TRL's
config (with ``vllm_fields``), and ``run_record``/``write_run_record``/``check_resume`` keep ``run.json``,
so that a resume continues the same run.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from codescaler.data.artifacts import atomic_write_json
from codescaler.errors import InputError

logger = logging.getLogger(__name__)

REWARDS = ("rm", "tests", "rm+tests")
DEFAULT_POLICY = "qwen2.5-coder-0.5b-instruct"
DEFAULT_TRAIN = "mbpp-train"
DEFAULT_EVAL = "mbpp-validation"
# Every linear layer of a Qwen2/Qwen3/Llama block: LoRA on attention alone learns markedly slower.
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


_PAPER = dict(beta=0.0, epsilon=0.2, epsilon_high=0.28, temperature=0.6, top_p=0.95)
# Preset keys that are not GRPOConfig fields: lora, eval_every, train_limit, easiest_first (take the
# training problems with the shortest reference solutions first), eval_limit (first N held-out problems),
# eval_max_new_tokens, eval_batch_size.
# On CPU gradient checkpointing does not pay: memory is plentiful and recomputation costs ~30% more time.
PRESETS: dict[str, dict[str, Any]] = {
    # The paper's hyperparameters (full fine-tuning); batch sizes for one 80 GB GPU and a 0.5B policy.
    "gpu": dict(_PAPER, num_generations=8, per_device_train_batch_size=32, gradient_accumulation_steps=1,
                learning_rate=1e-6, max_completion_length=512, bf16=True, save_steps=50, lora=False,
                eval_every=0, train_limit=None, easiest_first=False, eval_limit=None, eval_max_new_tokens=512,
                eval_batch_size=32),
    # Two steps on a few easy problems: 160 tokens hold a fenced MBPP solution (tests/test_rl_lora.py measures
    # recorded answers of the real policy); one prompt x 4 rollouts a step, so a group can disagree, and no
    # held-out eval unless --eval-limit asks (on a 2-core AVX2 CPU a step of 2 prompts took 165 s and
    # an eval of 4 problems 64 s: docs/rl.md).
    "smoke": dict(_PAPER, num_generations=4, per_device_train_batch_size=4, gradient_accumulation_steps=1,
                  learning_rate=2e-5, max_completion_length=160, bf16=False, use_cpu=True, save_steps=None,
                  gradient_checkpointing=False, lora=True, eval_every=0, train_limit=8, easiest_first=True,
                  eval_limit=0, eval_max_new_tokens=160, eval_batch_size=4),
    # A real experiment on CPU: 4 prompts x 4 rollouts a step, LoRA (a higher lr than the paper's full
    # fine-tuning, as usual for adapters), held-out pass@1 every 5 steps, an adapter checkpoint every 5.
    # The 16 rollouts are generated together and optimised 4 at a time (TRL's generation batch =
    # batch size x accumulation steps): one backward pass over all 16 (192-token completions, 151,936-way
    # logits in float32) took the 2-core, 24 GB machine past its memory and was OOM-killed (24.2 GB RSS).
    "cpu": dict(_PAPER, num_generations=4, per_device_train_batch_size=4, gradient_accumulation_steps=4,
                learning_rate=2e-5, max_completion_length=192, bf16=False, use_cpu=True, save_steps=5,
                gradient_checkpointing=False, lora=True, eval_every=5, train_limit=None, easiest_first=False,
                eval_limit=32, eval_max_new_tokens=192, eval_batch_size=8),
}
_OWN_KEYS = ("lora", "eval_every", "train_limit", "easiest_first", "eval_limit", "eval_max_new_tokens",
             "eval_batch_size")
# GRPOConfig field -> the CLI flag that sets it, for messages.
FLAGS = {"per_device_train_batch_size": "--batch-size", "num_generations": "--num-generations",
         "learning_rate": "--lr", "max_completion_length": "--max-completion-length", "save_steps": "--save-steps",
         "train_limit": "--limit", "gradient_accumulation_steps": "--grad-accum", "lr_scheduler_type": "--lr-scheduler",
         "beta": "--beta", "mask_truncated_completions": "--mask-truncated"}
# GRPOConfig overrides that count something (>= 1), in the order the flags are checked.
_COUNTED_OVERRIDES = ("max_completion_length", "per_device_train_batch_size", "num_generations", "save_steps",
                      "gradient_accumulation_steps")
# Learning-rate schedules --lr-scheduler offers (transformers' SchedulerType names; the presets use linear, TRL's
# default, which over a short run averages half the nominal lr).
LR_SCHEDULERS = ("linear", "constant", "constant_with_warmup", "cosine")


@dataclass(frozen=True)
class RLSettings:
    """One GRPO run (resolved by the CLI). ``problems``/``eval_problems``: a JSONL path or a dataset name.

    ``None`` for ``eval_every``, ``train_limit``, ``eval_limit`` or ``lora`` means the preset's value.
    """

    output: Path
    reward: str = "rm"
    policy: str = DEFAULT_POLICY
    rm: str = "default"
    problems: str = DEFAULT_TRAIN
    eval_problems: str | None = DEFAULT_EVAL
    preset: str = "gpu"
    max_steps: int = 100
    eval_every: int | None = None      # 0: evaluate only at step 0 and at the end
    train_limit: int | None = None     # first N training problems
    eval_limit: int | None = None      # first N held-out problems
    resume: bool = False
    seed: int = 0
    data_dir: str | None = None
    workers: int | None = None         # execution workers (None: cpu count)
    lora: bool | None = None           # LoRA adapters (True) or full fine-tuning (False)
    lora_r: int = 16
    lora_alpha: int = 32
    overrides: dict[str, Any] = field(default_factory=dict)  # extra GRPOConfig fields
    report_to: list[str] = field(default_factory=list)  # TRL/transformers trackers ([]: none)
    vllm: str | None = None            # rollouts by vLLM: a server's base URL, or "colocate" (None: generate())

    def validate(self) -> None:
        """Raise ``InputError`` naming the flag and the fix; reads nothing, loads nothing.

        Checks what the settings alone decide (``None``, the preset's value, passes); what needs the preset
        is ``check_settings``'s."""
        counts = (("--max-steps", self.max_steps), ("--eval-limit", self.eval_limit),
                  *((FLAGS[key], self.overrides.get(key)) for key in _COUNTED_OVERRIDES),
                  ("--limit", self.train_limit), ("--workers", self.workers))
        for flag, value in counts:
            if value is not None and value < 1:
                raise InputError(f"{flag} must be >= 1, got {value}", fix="pass a positive number")
        _check_preset(self.preset)
        schedule = self.overrides.get("lr_scheduler_type")
        if schedule is not None and schedule not in LR_SCHEDULERS:
            raise InputError(f"--lr-scheduler: unknown schedule {schedule!r}", fix=f"use one of: {', '.join(LR_SCHEDULERS)}")
        beta = self.overrides.get("beta")
        if beta is not None and not beta >= 0:  # also refuses NaN
            raise InputError(f"--beta must be >= 0, got {beta}",
                             fix="pass 0 (no KL term, the presets') or a small coefficient such as 0.04")
        if self.reward not in REWARDS:
            raise InputError(f"--reward: unknown reward {self.reward!r}", fix=f"use one of: {', '.join(REWARDS)}")
        if self.eval_every is not None and self.eval_every < 0:
            raise InputError(f"--eval-every must be >= 0, got {self.eval_every}",
                             fix="pass 0 to evaluate only at step 0 and at the end")
        vllm_fields(self.vllm)  # a bad --vllm-server fails here, before any model loads


def _check_preset(name: str) -> None:
    if name not in PRESETS:
        raise InputError(f"--preset: unknown preset {name!r}", fix=f"use one of: {', '.join(PRESETS)}")


def resolve_settings(s: RLSettings) -> tuple[RLSettings, dict[str, Any], dict[str, Any]]:
    """Settings with the preset's values filled in, the GRPOConfig fields, and the preset's own keys.

    Checks only the preset's name: resolved settings are resolved again (``run_record``), and a preset's
    own values need not pass ``RLSettings.validate`` (the smoke preset's ``eval_limit`` 0: no held-out eval).
    """
    _check_preset(s.preset)
    preset = {**PRESETS[s.preset], **s.overrides}
    if "max_completion_length" in s.overrides and "eval_max_new_tokens" not in s.overrides:
        # The held-out eval measures the policy under the budget it is trained with.
        preset["eval_max_new_tokens"] = s.overrides["max_completion_length"]
    for key, value in (("eval_every", s.eval_every), ("train_limit", s.train_limit), ("eval_limit", s.eval_limit),
                       ("lora", s.lora)):
        if value is not None:
            preset[key] = value
    own = {key: preset.pop(key) for key in _OWN_KEYS}
    return replace(s, eval_every=own["eval_every"], train_limit=own["train_limit"], eval_limit=own["eval_limit"],
                   lora=own["lora"]), preset, own


def check_settings(s: RLSettings, preset: dict[str, Any]) -> None:
    """The checks that need the resolved preset (``resolve_settings``): the rollout batch and group sizes
    and, when the run trains LoRA adapters, their rank and alpha. A function, not part of
    ``RLSettings.validate``: those GRPO fields and the LoRA choice may come from the preset, which the
    settings only name. Each error names the flag and the fix (before anything is read or loaded)."""
    batch, groups = preset["per_device_train_batch_size"], preset["num_generations"]
    if groups < 2:
        raise InputError(f"--num-generations must be >= 2, got {groups}",
                         fix="pass 4 or more: GRPO's advantage compares the rollouts of one prompt")
    if batch % groups:
        raise InputError(f"--batch-size {batch} is not a multiple of --num-generations {groups}",
                         fix=f"pass --batch-size {groups * -(-batch // groups)} (whole groups of rollouts per step)")
    if preset["lora"] and (s.lora_r < 1 or s.lora_alpha < 1):
        raise InputError(f"--lora-r {s.lora_r} / --lora-alpha {s.lora_alpha} must be >= 1", fix="e.g. 16 / 32")


def vllm_fields(vllm: str | None) -> dict[str, Any]:
    """TRL ``GRPOConfig`` fields for rollouts by vLLM (docs/rl.md).

    ``None``: none (TRL generates with ``model.generate``). ``"colocate"``: vLLM inside the training
    process, sharing its GPU. A URL: an external ``trl vllm-serve`` server at that base URL (TRL's
    server mode: it syncs the policy's weights to the server after each step). Raises ``InputError`` for
    anything else.
    """
    if vllm is None:
        return {}
    if vllm == "colocate":
        return {"use_vllm": True, "vllm_mode": "colocate"}
    if not vllm.startswith(("http://", "https://")):
        raise InputError(f"--vllm-server: expected an http(s) URL, got {vllm!r}", field="vllm",
                         fix="pass the base URL of `trl vllm-serve`, e.g. http://127.0.0.1:8000, or --vllm-colocate")
    return {"use_vllm": True, "vllm_mode": "server", "vllm_server_base_url": vllm.rstrip("/")}


def grpo_config(s: RLSettings, preset: dict[str, Any]) -> Any:
    """The TRL ``GRPOConfig`` of a run: the resolved preset's fields (``resolve_settings``), the run's settings
    and the vLLM fields (``vllm_fields``). Builds the config only: no model, no vLLM import."""
    from trl import GRPOConfig

    preset = dict(preset)
    # No save_steps (the smoke preset): no checkpoint at all, unless --save-steps asks for one.
    preset["save_strategy"] = "no" if preset.get("save_steps") is None else "steps"
    if preset.get("save_steps") is None:
        preset.pop("save_steps", None)
    return GRPOConfig(output_dir=str(s.output), max_steps=s.max_steps, logging_steps=1, report_to=list(s.report_to),
                      seed=s.seed, dataloader_num_workers=0, log_completions=False,
                      **{**preset, **vllm_fields(s.vllm)})


def run_record(s: RLSettings) -> dict[str, Any]:
    """The settings that define a run (what a resume must match); the step budget and eval cadence may grow."""
    s = resolve_settings(s)[0]
    record = {"reward": s.reward, "policy": s.policy, "problems": s.problems, "eval_problems": s.eval_problems,
              "preset": s.preset, "train_limit": s.train_limit, "eval_limit": s.eval_limit, "seed": s.seed,
              "lora": s.lora, "lora_r": s.lora_r, "lora_alpha": s.lora_alpha,
              "rm": s.rm if "rm" in s.reward.split("+") else None,
              **{k: v for k, v in sorted(s.overrides.items()) if k != "save_steps"}}
    return json.loads(json.dumps(record, default=str))


def write_run_record(s: RLSettings) -> None:
    """``run.json`` in the output folder: the run's defining settings and the versions that made it."""
    import importlib.metadata as md

    versions: dict[str, str | None] = {}
    for name in ("codescaler", "trl", "peft", "transformers", "torch"):
        try:
            versions[name] = md.version(name)
        except md.PackageNotFoundError:
            versions[name] = None
    atomic_write_json(Path(s.output) / "run.json", {"settings": run_record(s), "versions": versions}, indent=1)


def check_resume(s: RLSettings) -> None:
    """Refuse (``InputError`` naming the flag) a resume whose defining settings differ from ``run.json``."""
    path = Path(s.output) / "run.json"
    if not path.is_file():
        logger.warning("%s has no run.json (an older run): cannot check that --resume continues the same run", path)
        return
    made, now = json.loads(path.read_text(encoding="utf-8"))["settings"], run_record(s)
    for key in sorted(made.keys() | now.keys()):
        if made.get(key) != now.get(key):
            flag = FLAGS.get(key, "--" + key.replace("_", "-"))
            raise InputError(f"{flag}: this folder's run was made with {made.get(key)!r}, got {now.get(key)!r}",
                             path=str(path), fix=f"resume with the run's own {flag}, or choose a fresh --output-dir")
