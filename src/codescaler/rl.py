"""GRPO of a code policy with TRL's ``GRPOTrainer`` (layer L3): settings, presets, rewards, metrics.

A thin layer over TRL. ``run_rl(settings)`` builds the conversational dataset (the same chat prompt as
``codescaler sample``: ``sampling.build_messages``), the reward functions and a ``GRPOConfig`` from a
preset, then trains, writing into ``settings.output``:

- ``metrics.jsonl``: one row per optimizer step (appended and flushed as it happens): ``step``,
  ``reward_mean``, ``reward_std``, ``valid_rate`` (fraction of completions with valid code under strict
  extraction), ``pass_rate`` (fraction passing the hidden tests; null when the reward does not execute),
  ``response_length_mean`` (tokens), ``groups_zero_std`` (fraction of prompts whose rollouts all got the
  same reward: GRPO learns nothing from them), ``grad_norm`` and ``learning_rate`` (TRL's), ``wall_s``
  (seconds since this process started training), ``step_s`` and the per-reward means ``reward_<name>``.
- ``eval.jsonl``: held-out pass@1 (greedy decoding + execution) at step 0, every ``eval_every`` steps and
  at the end: ``step``, ``pass_at_1``, ``valid_rate``, ``n``, ``passed``, ``seconds``, ``eval_key`` (a
  step-0 row with the run's own key is reused, not recomputed: ``rl_metrics.eval_key``).
- ``eval_answers.jsonl``: each eval's greedy answers, one row per held-out problem: ``step``, ``task_id``,
  ``status`` (the sandbox's verdict), ``tokens``, ``response``.
- ``rollouts.jsonl``: every completion of every step (``rl_metrics.RolloutLog``): ``step``, ``task_id``,
  ``completion``, ``rewards`` (each reward function's value for it).
- ``checkpoint-<step>/`` every ``save_steps`` (TRL's own), resumable with ``resume=True``; with LoRA (the
  CPU presets) a checkpoint holds the adapter and its optimizer state only, never the base weights.
- ``run.json``: the settings that define the run; a resume with other settings is refused.
- ``final/``: the trained adapter (LoRA) or policy (``lora=False``).

Rewards (strict extraction everywhere: a response must contain exactly one fenced block of valid code):
- ``rm``: ``integrations.trl.CodeScalerReward`` (softplus-shaped RM score, 0.0 without valid code);
- ``tests``: ``TestsReward``, 1.0 when the extracted program passes the problem's hidden tests, else 0.0;
- ``rm+tests``: both as two TRL reward functions with weight 1, so the reward is their sum: a passing
  program always outranks a failing one with valid code, which outranks no valid code.

This module wires the run (checks, resume, the policy, TRL's trainer); its parts are ``rl_settings``
(settings, presets, ``GRPOConfig``, ``run.json``), ``rl_problems`` (problem sets, TRL's dataset),
``rl_rewards`` (the reward functions) and ``rl_metrics``. Their public names are re-exported here.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

from codescaler.errors import InputError
from codescaler.executor import ExecuteOptions
from codescaler.extras import require
from codescaler.model_device import target_device
from codescaler.records import ExtractMode, Problem
from codescaler.rl_metrics import (
    EVAL_ANSWERS_FILE,
    ROLLOUTS_FILE,
    RolloutLog,
    StepClock,
    eval_key,
    evaluate_pass_at_1,
    keep_reusable_eval,
    make_metrics_callback,
    run_tests,
    truncate_rows,
)
from codescaler.rl_problems import build_dataset, load_problem_set, select_problems
from codescaler.rl_rewards import TestsReward, reward_functions
from codescaler.rl_settings import (
    DEFAULT_EVAL,
    DEFAULT_POLICY,
    DEFAULT_TRAIN,
    FLAGS,
    LORA_TARGETS,
    PRESETS,
    REWARDS,
    RLSettings,
    check_resume,
    check_settings,
    grpo_config,
    resolve_settings,
    run_record,
    vllm_fields,
    write_run_record,
)
from codescaler.sampling import SamplingConfig, build_messages

__all__ = ["DEFAULT_EVAL", "DEFAULT_POLICY", "DEFAULT_TRAIN", "FLAGS", "LORA_TARGETS", "PRESETS", "REWARDS",
           "RLSettings", "TestsReward", "build_dataset", "evaluate_pass_at_1", "grpo_config", "last_checkpoint",
           "load_policy", "load_problem_set", "policy_dtype", "run_record", "run_rl", "run_tests", "vllm_fields",
           "write_run_record"]

logger = logging.getLogger(__name__)


def policy_dtype(device: Any, n_params: int, *, lora: bool) -> Any:
    """The base policy's dtype: bf16 only under LoRA (fp32 adapters hold the small updates) and only where
    ``model_device.pick_dtype`` finds native bf16 (CUDA; AVX512/AMX CPUs: on AVX2 bf16 matmul is 3.4x slower
    than fp32). Full fine-tuning keeps fp32 master weights: a 1e-6 update is below bf16's resolution."""
    import torch

    from codescaler.model_device import pick_dtype

    return pick_dtype(None, device, n_params) if lora else torch.float32


def load_policy(policy_path: str, device: str, *, lora: bool) -> tuple[Any, Any, Any]:
    """``(model, tokenizer, dtype)``: the base policy in ``policy_dtype`` (loaded in fp32 first: the dtype
    rule needs the parameter count, and a cast is cheap) and its tokenizer, padded with eos when it has no
    pad token. GRPO trains this model; ``benchmarks/rl_heldout_answers.py`` evaluates it the same way."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(policy_path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(policy_path, dtype=torch.float32)
    dtype = policy_dtype(torch.device(device), sum(p.numel() for p in model.parameters()), lora=lora)
    return model.to(dtype), tokenizer, dtype


def _loadable(flag: str, spec: str, *, rm: bool) -> str:
    """Where ``spec`` loads from; ``InputError`` naming ``flag`` when it cannot be loaded (no model load)."""
    from codescaler.models import resolve_model
    from codescaler.scorer import resolve_checkpoint

    try:
        path = resolve_checkpoint(spec) if rm else resolve_model(spec)
    except InputError as err:
        raise InputError(f"{flag}: {err.message}", fix=err.fix or f"pass a model folder or hub id to {flag}") from err
    folder = Path(path)
    markers = ("config.json", "adapter_config.json", "codescaler.json") if rm else ("config.json",)
    if folder.exists() and not any((folder / m).is_file() for m in markers):
        raise InputError(f"{flag}: {path} holds no {' or '.join(markers)}, so no model loads from it",
                         fix=f"pass a Hugging Face model folder to {flag}")
    return path


def last_checkpoint(out: Path) -> str | None:
    """The ``checkpoint-<step>`` folder of ``out`` with the highest step and a trainer state, or None."""
    found = [(int(p.name.split("-", 1)[1]), p) for p in out.glob("checkpoint-*")
             if p.name.split("-", 1)[1].isdigit() and (p / "trainer_state.json").is_file()]
    return str(max(found)[1]) if found else None


def run_rl(s: RLSettings) -> dict[str, Any]:
    """Train (see the module docstring); returns ``{"global_step", "output", "checkpoint"}``.

    Every input is checked before a model loads: ``InputError`` names the flag and the fix.
    """
    s.validate()  # every flag, before anything is imported, read or loaded
    s, preset, own = resolve_settings(s)
    check_settings(s, {**preset, **own})
    require("rl", "trl", "datasets", "accelerate")  # one line naming the extra, before any work
    policy_path = _loadable("--policy", s.policy, rm=False)
    if "rm" in s.reward.split("+"):
        _loadable("--rm", s.rm, rm=True)
    out = Path(s.output)
    checkpoint = last_checkpoint(out) if s.resume else None
    if s.resume and checkpoint is None:
        raise InputError(f"--resume given but {out} holds no checkpoint-<step> folder", path=str(out),
                         fix="drop --resume to start a fresh run, or pass --save-steps N to write checkpoints")
    if s.resume:
        check_resume(s)
    if not s.resume and (out / "metrics.jsonl").is_file() and (out / "metrics.jsonl").stat().st_size:
        raise InputError(f"{out} already holds a run (metrics.jsonl)", path=str(out),
                         fix="pass --resume to continue it, or choose a fresh --output-dir")
    train, held_out = select_problems(s, s.train_limit, own["easiest_first"])
    options = ExecuteOptions(workers=s.workers, extract_mode=ExtractMode.STRICT)
    if checkpoint is not None:
        done = json.loads((Path(checkpoint) / "trainer_state.json").read_text(encoding="utf-8"))["global_step"]
        truncate_rows(out / "metrics.jsonl", done)
        truncate_rows(out / "eval.jsonl", done)
        truncate_rows(out / ROLLOUTS_FILE, done)
        truncate_rows(out / EVAL_ANSWERS_FILE, done)
    else:
        truncate_rows(out / ROLLOUTS_FILE, 0)  # a run restarted before its first checkpoint logs afresh
        write_run_record(s)
    return _train(s, preset, own, policy_path, checkpoint, train, held_out, options)


def _train(s: RLSettings, preset: dict[str, Any], own: dict[str, Any], policy_path: str, checkpoint: str | None,
           train: list[Problem], held_out: list[Problem], options: ExecuteOptions) -> dict[str, Any]:
    from trl import GRPOTrainer  # heavy imports only once the inputs are known to be good


    out = Path(s.output)
    device = "cpu" if preset.get("use_cpu") else target_device().type
    model, tokenizer, dtype = load_policy(policy_path, device, lora=bool(s.lora))
    peft_config = None
    if s.lora:
        from peft import LoraConfig

        # TRL wraps the policy (get_peft_model); its Trainer then saves and resumes adapters only.
        peft_config = LoraConfig(r=s.lora_r, lora_alpha=s.lora_alpha, lora_dropout=0.0,
                                 target_modules=list(LORA_TARGETS), task_type="CAUSAL_LM")

    reward_funcs = reward_functions(s.reward, s.rm, train, options, device)

    config = grpo_config(s, preset)
    sampling = SamplingConfig()

    def evaluate(m: Any) -> dict[str, Any]:
        return evaluate_pass_at_1(m, tokenizer, held_out, max_new_tokens=own["eval_max_new_tokens"],
                                  batch_size=own["eval_batch_size"], options=options, sampling=sampling,
                                  with_answers=True)

    key = eval_key(policy=str(Path(policy_path).resolve()), dtype=str(dtype), device=device,
                   max_new_tokens=own["eval_max_new_tokens"], batch_size=own["eval_batch_size"],
                   problems=[[build_messages(p, sampling), asdict(p)] for p in held_out])  # prompts, tests
    step0 = keep_reusable_eval(out / "eval.jsonl", key) if checkpoint is None else None
    if checkpoint is None:  # a fresh run keeps the step-0 answers only with the step-0 row they belong to
        truncate_rows(out / EVAL_ANSWERS_FILE, 0 if step0 is not None else -1)
    clock, rollouts = StepClock(), RolloutLog()
    callback = make_metrics_callback(out, [f.__name__ for f in reward_funcs], evaluate if held_out else None,
                                     int(s.eval_every or 0), clock, key=key, step0=step0, rollouts=rollouts)
    trainer = GRPOTrainer(model=model, reward_funcs=[clock.timed(rollouts.wrap(f)) for f in reward_funcs], args=config,
                          peft_config=peft_config, train_dataset=build_dataset(train, sampling),
                          processing_class=tokenizer, callbacks=[callback])
    clock.timed_generate(trainer.model)  # the policy TRL generates with (PEFT-wrapped under LoRA)
    logger.info("GRPO: %d training problems, %d held-out, reward %s, preset %s, %s, policy %s, %d steps%s",
                len(train), len(held_out), s.reward, s.preset, f"LoRA r={s.lora_r}" if s.lora else "full",
                dtype, s.max_steps, f", resuming {checkpoint}" if checkpoint else "")
    trainer.train(resume_from_checkpoint=checkpoint)
    trainer.save_model(str(out / "final"))
    return {"global_step": trainer.state.global_step, "output": str(out), "checkpoint": checkpoint}
