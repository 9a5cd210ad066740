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
- ``checkpoint-<step>/`` every ``save_steps`` (TRL's own), resumable with ``resume=True``.

Rewards (strict extraction everywhere: a response must contain exactly one fenced block of valid code):
- ``rm``: ``integrations.trl.CodeScalerReward`` (softplus-shaped RM score, 0.0 without valid code);
- ``tests``: ``TestsReward``, 1.0 when the extracted program passes the problem's hidden tests, else 0.0;
- ``rm+tests``: both as two TRL reward functions with weight 1, so the reward is their sum: a passing
  program always outranks a failing one with valid code, which outranks no valid code.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from codescaler.errors import InputError
from codescaler.executor import ExecuteOptions, execute
from codescaler.extract import extract_code
from codescaler.records import Candidate, ExtractMode, Language, Problem, Status
from codescaler.sampling import SamplingConfig, build_messages

logger = logging.getLogger(__name__)

REWARDS = ("rm", "tests", "rm+tests")
DEFAULT_POLICY = "qwen2.5-coder-0.5b-instruct"
DEFAULT_TRAIN = "mbpp-train"
DEFAULT_EVAL = "mbpp-validation"
# The official MBPP split by task id (Austin et al. 2021): 1-10 few-shot prompts, 11-510 test,
# 511-600 validation, 601-974 train. All of MBPP is allowed for training here (data/README.md); the
# validation ids are kept out of the default training set so they can serve as the held-out set.
_MBPP_SPLITS = {"mbpp-train": range(601, 975), "mbpp-validation": range(511, 601)}

# The paper's GRPO hyperparameters; batch sizes chosen for one 80 GB GPU and a 0.5B policy.
PRESETS: dict[str, dict[str, Any]] = {
    "gpu": dict(num_generations=8, per_device_train_batch_size=32, gradient_accumulation_steps=1,
                learning_rate=1e-6, beta=0.0, epsilon=0.2, epsilon_high=0.28, temperature=0.6, top_p=0.95,
                max_completion_length=512, bf16=True, save_steps=50, eval_max_new_tokens=512,
                eval_batch_size=32),
    "smoke": dict(num_generations=2, per_device_train_batch_size=4, gradient_accumulation_steps=1,
                  learning_rate=1e-5, beta=0.0, epsilon=0.2, epsilon_high=0.28, temperature=0.6, top_p=0.95,
                  max_completion_length=12, bf16=False, use_cpu=True, save_steps=1, gradient_checkpointing=False, eval_max_new_tokens=12,
                  eval_batch_size=4),
}


@dataclass(frozen=True)
class RLSettings:
    """One GRPO run (resolved by the CLI). ``problems``/``eval_problems``: a JSONL path or a dataset name."""

    output: Path
    reward: str = "rm"
    policy: str = DEFAULT_POLICY
    rm: str = "default"
    problems: str = DEFAULT_TRAIN
    eval_problems: str | None = DEFAULT_EVAL
    preset: str = "gpu"
    max_steps: int = 100
    eval_every: int = 0                # 0: evaluate only at step 0 and at the end
    train_limit: int | None = None     # first N training problems (None: all)
    eval_limit: int | None = 100       # first N held-out problems
    resume: bool = False
    seed: int = 0
    data_dir: str | None = None
    workers: int | None = None         # execution workers (None: cpu count)
    overrides: dict[str, Any] = field(default_factory=dict)  # extra GRPOConfig fields
    report_to: list[str] = field(default_factory=list)  # TRL/transformers trackers ([]: none)


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


def run_tests(problems: Sequence[Problem], responses: Sequence[str], options: ExecuteOptions) -> list[Status]:
    """Execute each response (strict extraction) against its problem's hidden tests; statuses in order."""
    jobs = [(p, Candidate(p.task_id, f"rl-{i}", response=r)) for i, (p, r) in enumerate(zip(problems, responses,
                                                                                             strict=True))]
    by_id = {v.candidate_id: v.status for v in execute(jobs, options)}
    return [by_id[c.candidate_id] for _, c in jobs]


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


def evaluate_pass_at_1(model: Any, tokenizer: Any, problems: Sequence[Problem], *, max_new_tokens: int,
                       batch_size: int, options: ExecuteOptions, sampling: SamplingConfig) -> dict[str, Any]:
    """Greedy pass@1 of ``model`` on ``problems``: one response each, strict extraction, hidden tests."""
    import torch

    was_training = model.training
    model.eval()
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    responses: list[str] = []
    try:
        for start in range(0, len(problems), batch_size):
            chunk = problems[start:start + batch_size]
            texts = [tokenizer.apply_chat_template(build_messages(p, sampling), tokenize=False,
                                                   add_generation_prompt=True) for p in chunk]
            enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
            with torch.inference_mode():
                out = model.generate(**enc, do_sample=False, max_new_tokens=max_new_tokens,
                                     pad_token_id=tokenizer.pad_token_id)
            responses.extend(tokenizer.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True))
    finally:
        tokenizer.padding_side = side
        model.train(was_training)
    statuses = run_tests(problems, responses, replace(options, extract_mode=ExtractMode.STRICT))
    n = len(statuses)
    valid = sum(extract_code(r, Language.parse(p.language).value, ExtractMode.STRICT).valid
                for p, r in zip(problems, responses, strict=True))
    return {"pass_at_1": sum(s == Status.PASSED for s in statuses) / n if n else None,
            "valid_rate": valid / n if n else None, "n": n}


def _append(path: Path, row: dict[str, Any]) -> None:
    with path.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(row) + "\n")
        fh.flush()


def _truncate_rows(path: Path, last_step: int) -> None:
    """Keep only rows with ``step <= last_step`` (after a resume, later rows are redone), atomically."""
    if not path.is_file():
        return
    kept = [line for line in path.read_text(encoding="utf-8").split("\n")
            if line.strip() and json.loads(line).get("step", 0) <= last_step]
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
    os.replace(tmp, path)


def make_metrics_callback(output: Path, reward_names: Sequence[str], evaluate: Any, eval_every: int) -> Any:
    """A ``TrainerCallback`` writing metrics.jsonl rows and running ``evaluate(model) -> dict`` into eval.jsonl."""
    from transformers import TrainerCallback

    metrics_path, eval_path = output / "metrics.jsonl", output / "eval.jsonl"

    class MetricsCallback(TrainerCallback):  # type: ignore[misc]
        def __init__(self) -> None:
            self.start = time.monotonic()
            self.last = self.start
            self.evaluated: set[int] = set()
            self.main = True

        def _eval(self, step: int, model: Any) -> None:
            if evaluate is None or step in self.evaluated or not self.main:
                return
            self.evaluated.add(step)
            row = {"step": step, **evaluate(model)}
            logger.info("held-out eval at step %d: %s", step, row)
            _append(eval_path, row)

        def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
            self.start = self.last = time.monotonic()
            self.main = state.is_world_process_zero  # with several processes, rank 0 alone writes
            if state.global_step == 0:
                self._eval(0, model)

        def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kwargs: Any) -> None:
            if not logs or "reward" not in logs or not self.main:
                return
            now = time.monotonic()
            valid = logs.get("codescaler/valid_fraction", logs.get("tests/valid_fraction"))
            row = {"step": state.global_step, "reward_mean": logs.get("reward"),
                   "reward_std": logs.get("reward_std"), "valid_rate": valid,
                   "pass_rate": logs.get("tests/pass_rate"),
                   "response_length_mean": logs.get("completions/mean_length"),
                   "wall_s": round(now - self.start, 3), "step_s": round(now - self.last, 3)}
            for name in reward_names:
                row[f"reward_{name}"] = logs.get(f"rewards/{name}/mean")
            self.last = now
            _append(metrics_path, row)

        def on_step_end(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
            if eval_every > 0 and state.global_step % eval_every == 0:
                self._eval(state.global_step, model)

        def on_train_end(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
            self._eval(state.global_step, model)

    return MetricsCallback()


def _check_settings(s: RLSettings) -> None:
    if s.reward not in REWARDS:
        raise InputError(f"unknown reward {s.reward!r}", field="reward", fix=f"use one of: {', '.join(REWARDS)}")
    if s.preset not in PRESETS:
        raise InputError(f"unknown preset {s.preset!r}", field="preset", fix=f"use one of: {', '.join(PRESETS)}")
    if s.max_steps < 1:
        raise InputError(f"max steps must be >= 1, got {s.max_steps}", field="max_steps")
    if s.eval_every < 0:
        raise InputError(f"eval-every must be >= 0, got {s.eval_every}", field="eval_every")
    if "rm" in s.reward.split("+") and s.rm == "default":
        from codescaler.scorer import default_rm_path

        if not (default_rm_path() / "config.json").is_file() and not (default_rm_path() / "adapter_config.json").is_file():
            raise InputError(f"the default reward model is not shipped in this build ({default_rm_path()} is missing)",
                             field="rm", fix="pass --rm PATH to a trained RM (codescaler train), or use --reward tests")


def last_checkpoint(out: Path) -> str | None:
    """The ``checkpoint-<step>`` folder of ``out`` with the highest step and a trainer state, or None."""
    found = [(int(p.name.split("-", 1)[1]), p) for p in out.glob("checkpoint-*")
             if p.name.split("-", 1)[1].isdigit() and (p / "trainer_state.json").is_file()]
    return str(max(found)[1]) if found else None


def run_rl(s: RLSettings) -> dict[str, Any]:
    """Train (see the module docstring); returns ``{"global_step", "output", "checkpoint"}``."""
    _check_settings(s)
    out = Path(s.output)
    checkpoint = last_checkpoint(out) if s.resume else None
    if s.resume and checkpoint is None:
        raise InputError(f"--resume given but {out} holds no checkpoint-<step> folder", path=str(out),
                         fix="drop --resume to start a fresh run")
    if not s.resume and (out / "metrics.jsonl").is_file() and (out / "metrics.jsonl").stat().st_size:
        raise InputError(f"{out} already holds a run (metrics.jsonl)", path=str(out),
                         fix="pass --resume to continue it, or choose a fresh --output")
    out.mkdir(parents=True, exist_ok=True)
    if checkpoint is not None:
        done = json.loads((Path(checkpoint) / "trainer_state.json").read_text(encoding="utf-8"))["global_step"]
        _truncate_rows(out / "metrics.jsonl", done)
        _truncate_rows(out / "eval.jsonl", done)

    preset = dict(PRESETS[s.preset])
    eval_tokens, eval_batch = preset.pop("eval_max_new_tokens"), preset.pop("eval_batch_size")
    preset.update(s.overrides)
    sampling = SamplingConfig()
    train = load_problem_set(s.problems, s.data_dir, for_training=True)[:s.train_limit]
    if not train:
        raise InputError(f"no training problems in {s.problems!r}", field="problems")
    held_out = (load_problem_set(s.eval_problems, s.data_dir, for_training=False)[:s.eval_limit]
                if s.eval_problems else [])
    overlap = {p.task_id for p in train} & {p.task_id for p in held_out}
    if overlap:
        raise InputError(f"{len(overlap)} held-out problems are also training problems (e.g. {min(overlap)})",
                         field="eval_problems", fix="use disjoint training and held-out sets")
    options = ExecuteOptions(workers=s.workers, extract_mode=ExtractMode.STRICT)

    import torch  # heavy imports only once the inputs are known to be good
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    from codescaler.integrations.trl import CodeScalerReward
    from codescaler.models import resolve_model

    device = "cpu" if preset.get("use_cpu") else ("cuda" if torch.cuda.is_available() else "cpu")

    policy_path = resolve_model(s.policy)
    tokenizer = AutoTokenizer.from_pretrained(policy_path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    # fp32 master weights even with bf16 (autocast): a 1e-6 update is below bf16's resolution.
    model = AutoModelForCausalLM.from_pretrained(policy_path, dtype=torch.float32)

    reward_funcs: list[Any] = []
    if "rm" in s.reward.split("+"):
        reward_funcs.append(CodeScalerReward(model=s.rm, device=device, extract_mode=ExtractMode.STRICT))
    if "tests" in s.reward.split("+"):
        reward_funcs.append(TestsReward(train, options))

    config = GRPOConfig(output_dir=str(out), max_steps=s.max_steps, logging_steps=1, save_strategy="steps",
                        report_to=list(s.report_to), seed=s.seed, dataloader_num_workers=0, log_completions=False, **preset)

    def evaluate(m: Any) -> dict[str, Any]:
        return evaluate_pass_at_1(m, tokenizer, held_out, max_new_tokens=eval_tokens, batch_size=eval_batch,
                                  options=options, sampling=sampling)

    callback = make_metrics_callback(out, [f.__name__ for f in reward_funcs], evaluate if held_out else None,
                                     s.eval_every)
    trainer = GRPOTrainer(model=model, reward_funcs=reward_funcs, args=config,
                          train_dataset=build_dataset(train, sampling), processing_class=tokenizer,
                          callbacks=[callback])
    logger.info("GRPO: %d training problems, %d held-out, reward %s, preset %s, %d steps%s", len(train),
                len(held_out), s.reward, s.preset, s.max_steps, f", resuming {checkpoint}" if checkpoint else "")
    trainer.train(resume_from_checkpoint=checkpoint)
    trainer.save_model(str(out / "final"))
    return {"global_step": trainer.state.global_step, "output": str(out), "checkpoint": checkpoint}
