"""GRPO of a code policy with TRL's ``GRPOTrainer`` (layer L3): settings, presets, rewards, metrics.

A thin layer over TRL. ``run_rl(settings)`` builds the conversational dataset (the same chat prompt as
``codescaler sample``: ``sampling.build_messages``), the reward functions and a ``GRPOConfig`` from a
preset, then trains, writing into ``settings.output``:

- ``metrics.jsonl``: one row per optimizer step (appended and flushed as it happens): ``step``,
  ``reward_mean``, ``reward_std``, ``valid_rate`` (fraction of completions with valid code under strict
  extraction), ``pass_rate`` (fraction passing the hidden tests; null when the reward does not execute),
  ``response_length_mean`` (tokens), ``wall_s`` (seconds since this process started training),
  ``step_s`` and the per-reward means ``reward_<name>``.
- ``eval.jsonl``: held-out pass@1 (greedy decoding + execution) at step 0, every ``eval_every`` steps and
  at the end: ``step``, ``pass_at_1``, ``valid_rate``, ``n``.
- ``checkpoint-<step>/`` every ``save_steps`` (TRL's own), resumable with ``resume=True``; with LoRA (the
  CPU presets) a checkpoint holds the adapter and its optimizer state only, never the base weights.
- ``run.json``: the settings that define the run; a resume with other settings is refused.
- ``final/``: the trained adapter (LoRA) or policy (``lora=False``).

Rewards (strict extraction everywhere: a response must contain exactly one fenced block of valid code):
- ``rm``: ``integrations.trl.CodeScalerReward`` (softplus-shaped RM score, 0.0 without valid code);
- ``tests``: ``TestsReward``, 1.0 when the extracted program passes the problem's hidden tests, else 0.0;
- ``rm+tests``: both as two TRL reward functions with weight 1, so the reward is their sum: a passing
  program always outranks a failing one with valid code, which outranks no valid code.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from codescaler.data.artifacts import atomic_write_json
from codescaler.errors import InputError
from codescaler.executor import ExecuteOptions
from codescaler.extras import require
from codescaler.records import ExtractMode, Language, Problem, Status
from codescaler.rl_metrics import (
    StepClock,
    evaluate_pass_at_1,
    make_metrics_callback,
    run_tests,
    truncate_rows,
)
from codescaler.sampling import SamplingConfig, build_messages

__all__ = ["PRESETS", "RLSettings", "TestsReward", "evaluate_pass_at_1", "load_problem_set", "policy_dtype",
           "run_rl", "run_tests", "write_run_record"]

logger = logging.getLogger(__name__)

REWARDS = ("rm", "tests", "rm+tests")
DEFAULT_POLICY = "qwen2.5-coder-0.5b-instruct"
DEFAULT_TRAIN = "mbpp-train"
DEFAULT_EVAL = "mbpp-validation"
# The official MBPP split by task id (Austin et al. 2021): 1-10 few-shot prompts, 11-510 test,
# 511-600 validation, 601-974 train. All of MBPP is allowed for training here (data/README.md); the
# validation ids are kept out of the default training set so they can serve as the held-out set.
_MBPP_SPLITS = {"mbpp-train": range(601, 975), "mbpp-validation": range(511, 601)}
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
    "cpu": dict(_PAPER, num_generations=4, per_device_train_batch_size=16, gradient_accumulation_steps=1,
                learning_rate=2e-5, max_completion_length=192, bf16=False, use_cpu=True, save_steps=5,
                gradient_checkpointing=False, lora=True, eval_every=5, train_limit=None, easiest_first=False,
                eval_limit=32, eval_max_new_tokens=192, eval_batch_size=8),
}
_OWN_KEYS = ("lora", "eval_every", "train_limit", "easiest_first", "eval_limit", "eval_max_new_tokens",
             "eval_batch_size")
# GRPOConfig field -> the CLI flag that sets it, for messages.
FLAGS = {"per_device_train_batch_size": "--batch-size", "num_generations": "--num-generations",
         "learning_rate": "--lr", "max_completion_length": "--max-completion-length", "save_steps": "--save-steps",
         "train_limit": "--limit"}


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


def policy_dtype(device: Any, n_params: int, *, lora: bool) -> Any:
    """The base policy's dtype: bf16 only under LoRA (fp32 adapters hold the small updates) and only where
    ``scorer.pick_dtype`` finds native bf16 (CUDA; AVX512/AMX CPUs: on AVX2 bf16 matmul is 3.4x slower
    than fp32). Full fine-tuning keeps fp32 master weights: a 1e-6 update is below bf16's resolution."""
    import torch

    from codescaler.scorer import pick_dtype

    return pick_dtype(None, device, n_params) if lora else torch.float32


def load_problem_set(spec: str, data_dir: str | None, *, for_training: bool) -> list[Problem]:
    """Problems from a JSONL path, ``mbpp-train``/``mbpp-validation`` or a ``codescaler data`` name.

    Raises ``InputError`` for an eval-only dataset (HumanEval-derived, LeetCode test) used for training.
    """
    from codescaler.data import read_problems
    from codescaler.data.sources import dataset_info, load_dataset_problems

    if spec in _MBPP_SPLITS:
        ids = _MBPP_SPLITS[spec]
        return [p for p in load_dataset_problems("mbpp", data_dir) if int(p.task_id.split("/")[-1]) in ids]
    path = Path(spec)
    if path.suffix in (".jsonl", ".gz") or path.exists():
        if not path.is_file():
            raise InputError(f"problems file {spec} does not exist", path=spec,
                             fix="pass a problems JSONL or a dataset name (codescaler data --list)")
        return read_problems(path)
    info = dataset_info(spec)
    if for_training and info.eval_only:
        raise InputError(f"dataset {spec!r} is evaluation-only and must never be trained on", field="problems",
                         fix="train on mbpp-train, mbpp, leetcode-train, apps-150 or mbpp-plus")
    return load_dataset_problems(spec, data_dir)


def build_dataset(problems: Sequence[Problem], sampling: SamplingConfig) -> Any:
    """TRL conversational dataset: ``prompt`` (chat messages), ``task_id``, ``language`` per problem."""
    from datasets import Dataset

    return Dataset.from_list([{"prompt": build_messages(p, sampling), "task_id": p.task_id,
                               "language": Language.parse(p.language).value} for p in problems])


class TestsReward:
    """TRL reward function: 1.0 when the completion's code passes the hidden tests, else 0.0.

    Needs the ``task_id`` dataset column to find each completion's problem. Logs
    ``tests/valid_fraction`` and ``tests/pass_rate`` through TRL's ``log_metric``.
    """

    __name__ = "tests"
    __test__ = False  # not a pytest test class despite the name

    def __init__(self, problems: Sequence[Problem], options: ExecuteOptions | None = None) -> None:
        self.problems = {p.task_id: p for p in problems}
        self.options = replace(options or ExecuteOptions(), extract_mode=ExtractMode.STRICT)

    def __call__(self, prompts: Sequence[Any], completions: Sequence[Any], **kwargs: Any) -> list[float]:
        from codescaler.integrations.trl import response_from_completion

        task_ids = kwargs.get("task_id")
        if not isinstance(task_ids, list) or len(task_ids) != len(completions):
            raise InputError("the tests reward needs a task_id column with one id per completion", field="task_id",
                             fix="build the dataset with codescaler.rl.build_dataset")
        unknown = [t for t in task_ids if t not in self.problems]
        if unknown:
            raise InputError(f"task_id {unknown[0]!r} is not among the reward's problems", field="task_id")
        responses = [response_from_completion(c, index=i) for i, c in enumerate(completions)]
        statuses = run_tests([self.problems[t] for t in task_ids], responses, self.options)
        log_metric = kwargs.get("log_metric")
        if callable(log_metric) and statuses:
            log_metric("tests/valid_fraction", sum(s != Status.NO_CODE for s in statuses) / len(statuses))
            log_metric("tests/pass_rate", sum(s == Status.PASSED for s in statuses) / len(statuses))
        return [1.0 if s == Status.PASSED else 0.0 for s in statuses]


def _check_settings(s: RLSettings, preset: dict[str, Any]) -> None:
    """Flag-level checks; each names the flag and the fix (before anything is read or loaded)."""
    if s.reward not in REWARDS:
        raise InputError(f"--reward: unknown reward {s.reward!r}", fix=f"use one of: {', '.join(REWARDS)}")
    if s.max_steps < 1:
        raise InputError(f"--max-steps must be >= 1, got {s.max_steps}", fix="pass a positive step budget")
    if preset["eval_every"] < 0:
        raise InputError(f"--eval-every must be >= 0, got {preset['eval_every']}",
                         fix="pass 0 to evaluate only at step 0 and at the end")
    batch, groups = preset["per_device_train_batch_size"], preset["num_generations"]
    if groups < 2:
        raise InputError(f"--num-generations must be >= 2, got {groups}",
                         fix="pass 4 or more: GRPO's advantage compares the rollouts of one prompt")
    if batch % groups:
        raise InputError(f"--batch-size {batch} is not a multiple of --num-generations {groups}",
                         fix=f"pass --batch-size {groups * -(-batch // groups)} (whole groups of rollouts per step)")
    if preset["lora"] and (s.lora_r < 1 or s.lora_alpha < 1):
        raise InputError(f"--lora-r {s.lora_r} / --lora-alpha {s.lora_alpha} must be >= 1", fix="e.g. 16 / 32")


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


def run_record(s: RLSettings) -> dict[str, Any]:
    """The settings that define a run (what a resume must match); the step budget and eval cadence may grow."""
    s = _resolve(s)[0]
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


def _check_resume(s: RLSettings) -> None:
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


def last_checkpoint(out: Path) -> str | None:
    """The ``checkpoint-<step>`` folder of ``out`` with the highest step and a trainer state, or None."""
    found = [(int(p.name.split("-", 1)[1]), p) for p in out.glob("checkpoint-*")
             if p.name.split("-", 1)[1].isdigit() and (p / "trainer_state.json").is_file()]
    return str(max(found)[1]) if found else None


def _problems(s: RLSettings, limit: int | None, easiest_first: bool) -> tuple[list[Problem], list[Problem]]:
    try:
        train = load_problem_set(s.problems, s.data_dir, for_training=True)
    except InputError as err:
        raise InputError(f"--problems: {err.render()}") from err
    if easiest_first:  # shortest reference solution first: problems a small policy can solve
        train = sorted(train, key=lambda p: len(p.reference) if p.reference else 10**9)
    train = train[:limit]
    if not train:
        raise InputError(f"--problems: no training problems in {s.problems!r}", fix="pass a non-empty problems file")
    held_out = (load_problem_set(s.eval_problems, s.data_dir, for_training=False)[:s.eval_limit]
                if s.eval_problems else [])
    overlap = {p.task_id for p in train} & {p.task_id for p in held_out}
    if overlap:
        raise InputError(f"{len(overlap)} held-out problems are also training problems (e.g. {min(overlap)})",
                         field="eval_problems", fix="use disjoint training and held-out sets")
    return train, held_out


def _resolve(s: RLSettings) -> tuple[RLSettings, dict[str, Any], dict[str, Any]]:
    """Settings with the preset's values filled in, the GRPOConfig fields, and the preset's own keys."""
    if s.preset not in PRESETS:
        raise InputError(f"--preset: unknown preset {s.preset!r}", fix=f"use one of: {', '.join(PRESETS)}")
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


def run_rl(s: RLSettings) -> dict[str, Any]:
    """Train (see the module docstring); returns ``{"global_step", "output", "checkpoint"}``.

    Every input is checked before a model loads: ``InputError`` names the flag and the fix.
    """
    require("rl", "trl", "datasets", "accelerate")  # one line naming the extra, before any work
    s, preset, own = _resolve(s)
    _check_settings(s, {**preset, **own})
    vllm_fields(s.vllm)  # a bad --vllm-server fails before any model loads
    policy_path = _loadable("--policy", s.policy, rm=False)
    if "rm" in s.reward.split("+"):
        _loadable("--rm", s.rm, rm=True)
    out = Path(s.output)
    checkpoint = last_checkpoint(out) if s.resume else None
    if s.resume and checkpoint is None:
        raise InputError(f"--resume given but {out} holds no checkpoint-<step> folder", path=str(out),
                         fix="drop --resume to start a fresh run, or pass --save-steps N to write checkpoints")
    if s.resume:
        _check_resume(s)
    if not s.resume and (out / "metrics.jsonl").is_file() and (out / "metrics.jsonl").stat().st_size:
        raise InputError(f"{out} already holds a run (metrics.jsonl)", path=str(out),
                         fix="pass --resume to continue it, or choose a fresh --output-dir")
    train, held_out = _problems(s, s.train_limit, own["easiest_first"])
    options = ExecuteOptions(workers=s.workers, extract_mode=ExtractMode.STRICT)
    if checkpoint is not None:
        done = json.loads((Path(checkpoint) / "trainer_state.json").read_text(encoding="utf-8"))["global_step"]
        truncate_rows(out / "metrics.jsonl", done)
        truncate_rows(out / "eval.jsonl", done)
    else:
        write_run_record(s)
    return _train(s, preset, own, policy_path, checkpoint, train, held_out, options)


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
    """The TRL ``GRPOConfig`` of a run: the resolved preset's fields (``_resolve``), the run's settings
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


def _train(s: RLSettings, preset: dict[str, Any], own: dict[str, Any], policy_path: str, checkpoint: str | None,
           train: list[Problem], held_out: list[Problem], options: ExecuteOptions) -> dict[str, Any]:
    import torch  # heavy imports only once the inputs are known to be good
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOTrainer

    from codescaler.integrations.trl import CodeScalerReward

    out = Path(s.output)
    device = "cpu" if preset.get("use_cpu") else ("cuda" if torch.cuda.is_available() else "cpu")
    tokenizer = AutoTokenizer.from_pretrained(policy_path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    # Loaded in fp32 first: the dtype rule needs the parameter count, and a cast is cheap.
    model = AutoModelForCausalLM.from_pretrained(policy_path, dtype=torch.float32)
    dtype = policy_dtype(torch.device(device), sum(p.numel() for p in model.parameters()), lora=bool(s.lora))
    model = model.to(dtype)
    peft_config = None
    if s.lora:
        from peft import LoraConfig

        # TRL wraps the policy (get_peft_model); its Trainer then saves and resumes adapters only.
        peft_config = LoraConfig(r=s.lora_r, lora_alpha=s.lora_alpha, lora_dropout=0.0,
                                 target_modules=list(LORA_TARGETS), task_type="CAUSAL_LM")

    reward_funcs: list[Any] = []
    if "rm" in s.reward.split("+"):
        reward_funcs.append(CodeScalerReward(model=s.rm, device=device, extract_mode=ExtractMode.STRICT))
    if "tests" in s.reward.split("+"):
        reward_funcs.append(TestsReward(train, options))

    config = grpo_config(s, preset)
    sampling = SamplingConfig()

    def evaluate(m: Any) -> dict[str, Any]:
        return evaluate_pass_at_1(m, tokenizer, held_out, max_new_tokens=own["eval_max_new_tokens"],
                                  batch_size=own["eval_batch_size"], options=options, sampling=sampling)

    clock = StepClock()
    callback = make_metrics_callback(out, [f.__name__ for f in reward_funcs], evaluate if held_out else None,
                                     int(s.eval_every or 0), clock)
    trainer = GRPOTrainer(model=model, reward_funcs=[clock.timed(f) for f in reward_funcs], args=config,
                          peft_config=peft_config, train_dataset=build_dataset(train, sampling),
                          processing_class=tokenizer, callbacks=[callback])
    clock.timed_generate(trainer.model)  # the policy TRL generates with (PEFT-wrapped under LoRA)
    logger.info("GRPO: %d training problems, %d held-out, reward %s, preset %s, %s, policy %s, %d steps%s",
                len(train), len(held_out), s.reward, s.preset, f"LoRA r={s.lora_r}" if s.lora else "full",
                dtype, s.max_steps, f", resuming {checkpoint}" if checkpoint else "")
    trainer.train(resume_from_checkpoint=checkpoint)
    trainer.save_model(str(out / "final"))
    return {"global_step": trainer.state.global_step, "output": str(out), "checkpoint": checkpoint}
