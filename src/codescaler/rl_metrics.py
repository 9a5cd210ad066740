"""Metrics of a GRPO run (layer L3): held-out greedy pass@1 and the rows of metrics.jsonl / eval.jsonl.

Rows are appended and flushed one line at a time, so a killed run keeps every row it wrote; on a resume,
rows after the resumed checkpoint's step are dropped (they are redone) so each file holds one row a step.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from codescaler.data.artifacts import AppendStore, atomic_write_jsonl, read_jsonl
from codescaler.executor import ExecuteOptions, execute
from codescaler.extract import extract_code
from codescaler.records import Candidate, ExtractMode, Language, Problem, Status
from codescaler.sampling import SamplingConfig, build_messages

logger = logging.getLogger(__name__)


def run_tests(problems: Sequence[Problem], responses: Sequence[str], options: ExecuteOptions) -> list[Status]:
    """Execute each response (strict extraction) against its problem's hidden tests; statuses in order."""
    jobs = [(p, Candidate(p.task_id, f"rl-{i}", response=r)) for i, (p, r) in enumerate(zip(problems, responses,
                                                                                             strict=True))]
    by_id = {v.candidate_id: v.status for v in execute(jobs, options)}
    return [by_id[c.candidate_id] for _, c in jobs]


def evaluate_pass_at_1(model: Any, tokenizer: Any, problems: Sequence[Problem], *, max_new_tokens: int,
                       batch_size: int, options: ExecuteOptions, sampling: SamplingConfig,
                       with_answers: bool = False, samples: int = 0, temperature: float = 0.6,
                       top_p: float = 0.95, seed: int = 0) -> dict[str, Any]:
    """Pass@1 of ``model`` on ``problems``, strict extraction, hidden tests.

    By default one greedy response a problem. ``samples`` K >= 1 instead draws K responses a problem at
    ``temperature`` / ``top_p`` (the rollouts' decoding; seeded with ``seed``) and ``pass_at_1`` is the mean
    over all of them, as GRPO's sampled policy would answer. ``with_answers`` adds ``answers``: per
    response its ``task_id``, ``status``, ``tokens`` (generated, up to the end of the answer), ``response``
    and, when sampling, ``sample`` (0..K-1)."""
    import torch

    if samples < 0:
        raise ValueError(f"samples must be >= 0, got {samples}")
    draws = max(1, samples)
    decoding: dict[str, Any] = (dict(do_sample=True, temperature=temperature, top_p=top_p, num_return_sequences=draws)
                                if samples else dict(do_sample=False))
    was_training = model.training
    model.eval()
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    responses: list[str] = []
    lengths: list[int] = []
    if samples:
        torch.manual_seed(seed)
    try:
        for start in range(0, len(problems), batch_size):
            chunk = problems[start:start + batch_size]
            texts = [tokenizer.apply_chat_template(build_messages(p, sampling), tokenize=False,
                                                   add_generation_prompt=True) for p in chunk]
            enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
            with torch.inference_mode():
                out = model.generate(**enc, max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id,
                                     **decoding)
            generated = out[:, enc["input_ids"].shape[1]:]   # a prompt's K draws are consecutive rows
            responses.extend(tokenizer.batch_decode(generated, skip_special_tokens=True))
            lengths.extend(int(n) for n in (generated != tokenizer.pad_token_id).sum(dim=1))
    finally:
        tokenizer.padding_side = side
        model.train(was_training)
    asked = [p for p in problems for _ in range(draws)]
    statuses = run_tests(asked, responses, replace(options, extract_mode=ExtractMode.STRICT))
    n = len(statuses)
    valid = sum(extract_code(r, Language.parse(p.language).value, ExtractMode.STRICT).valid
                for p, r in zip(asked, responses, strict=True))
    solved = {p.task_id for p, s in zip(asked, statuses, strict=True) if s == Status.PASSED}
    result: dict[str, Any] = {"pass_at_1": sum(s == Status.PASSED for s in statuses) / n if n else None,
                              "valid_rate": valid / n if n else None, "n": len(problems),
                              "passed": [p.task_id for p in problems if p.task_id in solved]}
    if samples:
        result.update(samples=draws, temperature=temperature, top_p=top_p, seed=seed)
    if with_answers:
        result["answers"] = [{"task_id": p.task_id, **({"sample": i % draws} if samples else {}), "status": s.value,
                              "tokens": k, "response": r}
                             for i, (p, s, k, r) in enumerate(zip(asked, statuses, lengths, responses, strict=True))]
    return result


def _step(row: dict) -> int:
    return int(row.get("step", 0))


def append_row(path: Path, row: dict[str, Any]) -> None:
    """Append one row to a metrics JSONL (one flushed line; a torn tail of a killed run is repaired first)."""
    with AppendStore(path, key=_step) as store:
        store.append(row)


def _keep_rows(path: Path, keep: Callable[[dict], bool]) -> list[dict[str, Any]]:
    """The rows of a JSONL file that ``keep`` accepts; the file is rewritten (atomically) only when some are
    dropped, or when its tail was torn by a kill. A missing file has none."""
    if not path.is_file():
        return []
    rows = [row for _, row in read_jsonl(path, tolerate_torn_tail=True)]
    kept = [row for row in rows if keep(row)]
    if len(kept) != len(rows) or not path.read_bytes().endswith(b"\n"):
        atomic_write_jsonl(path, kept)
    return kept


def truncate_rows(path: Path, last_step: int) -> None:
    """Keep only rows with ``step <= last_step`` (after a resume, later rows are redone), atomically."""
    _keep_rows(path, lambda row: _step(row) <= last_step)


def eval_key(**fields: Any) -> str:
    """What a held-out eval at step 0 depends on (the policy, the problems' prompts, decoding, dtype), hashed.

    At step 0 every run of one policy is the same policy (the reward, seed and LoRA settings have not acted
    yet), so a step-0 row with this key is reused instead of recomputed: by a run restarted after a kill
    before its first checkpoint, and by the other arms of ``benchmarks/rl_experiment.py``.
    """
    return hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()[:16]


def keep_reusable_eval(path: Path, key: str) -> dict[str, Any] | None:
    """For a fresh run: keep in ``path`` only a step-0 row made with ``key`` (atomically) and return it.

    Rows of other steps, or made with another key (another policy, problem set or decoding), are dropped."""
    kept = _keep_rows(path, lambda row: _step(row) == 0 and row.get("eval_key") == key)
    return kept[0] if kept else None


ROLLOUTS_FILE = "rollouts.jsonl"
EVAL_ANSWERS_FILE = "eval_answers.jsonl"


class StepClock:
    """Seconds spent generating rollouts and computing rewards since the last ``take()``: the parts of a
    GRPO step's wall time that are not the optimisation (forward/backward of the policy, optimizer step).

    ``timed_generate(model)`` wraps the policy's ``generate`` (TRL calls it on the unwrapped policy, which is
    the trained model itself on one process); ``timed(reward_func)`` wraps a reward function, keeping its
    ``__name__`` (TRL names the reward columns after it).
    """

    def __init__(self) -> None:
        self.generate_s = 0.0
        self.reward_s = 0.0
        self.generate_calls = 0

    def _add(self, part: str, seconds: float) -> None:
        setattr(self, part, getattr(self, part) + seconds)

    def timed(self, fn: Callable[..., Any], part: str = "reward_s") -> Callable[..., Any]:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self._add(part, time.perf_counter() - started)
                if part == "generate_s":
                    self.generate_calls += 1
        return wrapper

    def timed_generate(self, model: Any) -> None:
        model.generate = self.timed(model.generate, "generate_s")

    def take(self) -> dict[str, float | None]:
        """The seconds since the last call, and reset; ``generate_s`` is None when no generate call was seen
        (rollouts from vLLM, or a wrapped policy whose unwrapped copy is another object)."""
        taken = {"generate_s": round(self.generate_s, 3) if self.generate_calls else None,
                 "reward_s": round(self.reward_s, 3)}
        self.generate_s = self.reward_s = 0.0
        self.generate_calls = 0
        return taken


class RolloutLog:
    """The rollouts of each step and what every reward paid them, for ``rollouts.jsonl``.

    ``wrap(reward_func)`` records (task id, completion text, reward) per completion of each call, keeping
    the function's ``__name__``; ``take()`` returns the rows gathered since the last call, one per
    completion: ``{"task_id", "completion", "rewards": {reward name: value}}``. What a policy learns to
    write (a reward hack included) is then visible without another generation pass.
    """

    def __init__(self) -> None:
        self._rows: list[dict[str, Any]] = []
        self._base = 0  # index of this generation batch's first row (each reward func sees the same batch)

    def wrap(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        from codescaler.integrations.trl import response_from_completion

        name = getattr(fn, "__name__", type(fn).__name__)

        @functools.wraps(fn)
        def wrapper(prompts: Sequence[Any], completions: Sequence[Any], **kwargs: Any) -> Any:
            rewards = fn(prompts, completions, **kwargs)
            task_ids = kwargs.get("task_id") or [None] * len(completions)
            batch = self._rows[self._base:]
            if len(batch) != len(completions) or any(r["rewards"].get(name) is not None for r in batch):
                self._base = len(self._rows)  # a new generation batch
                self._rows.extend({"task_id": t, "completion": response_from_completion(c, index=i), "rewards": {}}
                                  for i, (t, c) in enumerate(zip(task_ids, completions, strict=True)))
                batch = self._rows[self._base:]
            for row, value in zip(batch, rewards, strict=True):
                row["rewards"][name] = None if value is None else float(value)
            return rewards
        return wrapper

    def take(self) -> list[dict[str, Any]]:
        rows, self._rows, self._base = self._rows, [], 0
        return rows


def make_metrics_callback(output: Path, reward_names: Sequence[str], evaluate: Any, eval_every: int,
                          clock: StepClock | None = None, *, key: str | None = None,
                          step0: dict[str, Any] | None = None, rollouts: RolloutLog | None = None) -> Any:
    """A ``TrainerCallback`` writing metrics.jsonl rows and running ``evaluate(model) -> dict`` into eval.jsonl.

    With a ``clock`` each row splits ``step_s`` into ``generate_s``, ``reward_s`` and ``optimise_s`` (the
    rest); the held-out eval's time is kept out of both (its own ``seconds`` go into eval.jsonl).
    Eval rows carry ``eval_key`` = ``key``; ``step0`` (a row already in eval.jsonl with that key, see
    ``keep_reusable_eval``) stands for the step-0 eval, which is then not run again. With ``rollouts``
    each step's completions and rewards go to rollouts.jsonl (one row per completion, with its ``step``).
    """
    from transformers import TrainerCallback

    metrics_path, eval_path = output / "metrics.jsonl", output / "eval.jsonl"
    rollouts_path, answers_path = output / ROLLOUTS_FILE, output / EVAL_ANSWERS_FILE

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
            if step == 0 and step0 is not None:
                logger.info("held-out eval at step 0: reusing the row in %s (same eval_key %s): %s",
                            eval_path, key, step0)
                return
            started = time.monotonic()
            saved = (clock.generate_s, clock.reward_s, clock.generate_calls) if clock is not None else None
            row = {"step": step, **evaluate(model)}
            answers = row.pop("answers", None) or []
            seconds = time.monotonic() - started
            row["seconds"] = round(seconds, 3)
            if key is not None:
                row["eval_key"] = key
            if clock is not None and saved is not None:  # the eval's generate calls are not a step's
                clock.generate_s, clock.reward_s, clock.generate_calls = saved
            self.last += seconds  # nor is its wall time
            logger.info("held-out eval at step %d: %s", step, row)
            with AppendStore(answers_path, key=_step) as store:  # each greedy answer, for reading what changed
                store.extend([{"step": step, **a} for a in answers])
            append_row(eval_path, row)

        def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
            self.start = self.last = time.monotonic()
            self.main = state.is_world_process_zero  # with several processes, rank 0 alone writes
            if state.global_step == 0:
                self._eval(0, model)
            if clock is not None:
                clock.take()  # loading and the step-0 eval are not the first step's

        def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kwargs: Any) -> None:
            if not logs or "reward" not in logs:
                return
            taken = rollouts.take() if rollouts is not None else []
            if not self.main:
                return
            now = time.monotonic()
            valid = logs.get("codescaler/valid_fraction", logs.get("tests/valid_fraction"))
            row = {"step": state.global_step, "reward_mean": logs.get("reward"),
                   "reward_std": logs.get("reward_std"), "valid_rate": valid,
                   "pass_rate": logs.get("tests/pass_rate"),
                   "response_length_mean": logs.get("completions/mean_length"),
                   "groups_zero_std": logs.get("frac_reward_zero_std"),  # groups with no GRPO signal
                   "truncated_rate": logs.get("completions/clipped_ratio"),  # cut at max_completion_length
                   "kl": logs.get("kl"),  # to the starting policy; logged by TRL only when beta > 0
                   "grad_norm": logs.get("grad_norm"), "learning_rate": logs.get("learning_rate"),
                   "wall_s": round(now - self.start, 3), "step_s": round(now - self.last, 3)}
            if clock is not None:
                parts = clock.take()
                row.update(parts)
                if parts["generate_s"] is not None:
                    row["optimise_s"] = round(max(0.0, row["step_s"] - parts["generate_s"] - parts["reward_s"]), 3)
            for name in reward_names:
                row[f"reward_{name}"] = logs.get(f"rewards/{name}/mean")
            self.last = now
            for rollout in taken:
                append_row(rollouts_path, {"step": state.global_step, **rollout})
            append_row(metrics_path, row)

        def on_step_end(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
            if eval_every > 0 and state.global_step % eval_every == 0:
                self._eval(state.global_step, model)

        def on_train_end(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
            self._eval(state.global_step, model)

    return MetricsCallback()
