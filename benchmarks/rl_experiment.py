"""The paper's RL experiment in miniature: GRPO with the unit-test reward, the CodeScaler reward and both.

One ``codescaler rl`` subprocess per arm (so memory is freed between arms), every arm on the same
training problems with the same seed, preset and step budget; held-out greedy pass@1 on MBPP
validation. Arms (``--rewards``, default ``tests,rm,rm+tests``):

- ``tests``, ``rm``, ``rm+tests``: ``--reward`` of that name on ``--problems`` (default mbpp-train);
- ``rm-no-tests`` (``--no-tests-arm``): ``--reward rm`` on LeetCode TRAIN problems with their tests
  removed (``<out>/no_tests_problems.jsonl``): the RM trains where no test exists.

Writes ``<out>/<arm>/`` (each run's metrics.jsonl, eval.jsonl, run.json, checkpoints), then
``<out>/summary.json``, ``<out>/summary.md`` (one row per arm: held-out pass@1 and valid rate at step 0
and at the end; training reward, valid rate and completion length first -> last; mean seconds per step
split into generation / reward / optimisation; wall time; exit code) and ``<out>/curves.png`` (training
reward, valid rate, completion length and held-out pass@1 vs step, one line per arm).

Re-running the same command resumes: an arm whose folder has metrics.jsonl gets ``--resume`` (from its
last checkpoint), and an arm that already reached ``--steps`` is not run again.

    python benchmarks/rl_experiment.py --preset cpu --steps 10 --train-limit 64 --eval-limit 32 \\
        --no-tests-arm --out runs/rl-cpu                  # CPU, the 0.5B policy + LoRA (docs/rl.md)
    python benchmarks/rl_experiment.py --smoke --steps 2 --train-limit 4 --eval-limit 3 \\
        --max-completion-length 12 --no-tests-arm --out runs/rl-smoke   # tiny random models, minutes

--smoke: tiny random policy and RM built locally (build_tiny_model), the smoke preset, CPU; proves the
pipeline end to end (its pass@1 is 0 by construction).
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
NO_TESTS_ARM = "rm-no-tests"
NO_TESTS_SOURCE = "leetcode-train"
NO_TESTS_FILE = "no_tests_problems.jsonl"
# summary.md's table: one row per arm.
COLUMNS = ("arm", "reward", "problems", "steps", "held-out pass@1 step 0 -> end", "held-out gained / lost",
           "held-out valid step 0 -> end", "train rollouts passing, first -> last visit (problems)",
           "train reward first -> last", "train valid first -> last", "completion tokens first -> last",
           "groups without signal (mean)", "policy moved: norm(dW) / norm(W)", "s/step generate", "s/step reward",
           "s/step optimise", "wall s", "exit")
# curves.png: (metrics.jsonl field, panel title); then the executed pass rate of the training rollouts
# (rollout_passes) and eval.jsonl's pass_at_1 and valid_rate.
PANELS = (("reward_mean", "training reward (mean)"), ("valid_rate", "valid rate (training rollouts)"),
          ("response_length_mean", "completion length (tokens)"))

logger = logging.getLogger("rl_experiment")


def _rows(path: Path) -> list[dict]:
    """The rows of a run's JSONL file; none when it is not there yet, and a torn last line (a run killed
    mid-write) skipped with a warning."""
    from codescaler.data.artifacts import read_jsonl

    if not path.is_file():
        return []
    return [row for _, row in read_jsonl(path, tolerate_torn_tail=True)]


def _smoke_models(out: Path) -> tuple[str, str]:
    from codescaler.rm_checkpoint import InputFormat, RMMetadata, write_metadata
    from codescaler.testing import build_tiny_model

    policy = build_tiny_model(out / "tiny_policy", arch="qwen2", kind="causal", seed=1)
    rm = build_tiny_model(out / "tiny_rm", arch="qwen3", seed=5)
    write_metadata(rm, RMMetadata(input_format=InputFormat.CHAT_TEMPLATE, max_length=512, backbone="tiny-qwen3"))
    return str(policy), str(rm)


def write_no_tests_problems(out: Path, data_dir: str | None) -> Path:
    """``<out>/no_tests_problems.jsonl``: the LeetCode TRAIN problems with hidden and visible tests removed
    (the reference stays: the smoke preset orders problems by its length; the rm reward never reads it)."""
    from dataclasses import replace

    from codescaler.data import write_problems
    from codescaler.data.sources import load_dataset_problems
    from codescaler.records import TestSuite

    path = out / NO_TESTS_FILE
    problems = [replace(p, tests=TestSuite(), visible_tests=None)
                for p in load_dataset_problems(NO_TESTS_SOURCE, data_dir)]
    write_problems(path, problems)
    return path


# codescaler rl's flags passed to every arm as given (None: the preset's value).
PASSED_THROUGH = ("--lr", "--lr-scheduler", "--batch-size", "--num-generations", "--grad-accum", "--eval-every",
                  "--beta", "--mask-truncated")


def passed_through(values: dict[str, Any]) -> list[str]:
    """The arguments of each ``PASSED_THROUGH`` flag given in ``values`` (parsed args or the summary's config):
    ``flag value``, or the flag alone for a switch (``True``; ``False`` and ``None`` pass nothing)."""
    args: list[str] = []
    for flag in PASSED_THROUGH:
        value = values.get(flag.lstrip("-").replace("-", "_"))
        if value is True:
            args.append(flag)
        elif value is not None and value is not False:
            args += [flag, str(value)]
    return args


def arms(args: argparse.Namespace) -> list[dict[str, str]]:
    """The arms to run: ``{"arm", "reward", "problems"}`` each, in order."""
    chosen = [{"arm": r, "reward": r, "problems": args.problems} for r in args.rewards.split(",") if r]
    if args.no_tests_arm:
        chosen.append({"arm": NO_TESTS_ARM, "reward": "rm", "problems": str(args.out / NO_TESTS_FILE)})
    return chosen


def _finished(run_dir: Path, steps: int) -> bool:
    metrics = _rows(run_dir / "metrics.jsonl")
    return (run_dir / "final").is_dir() and bool(metrics) and metrics[-1]["step"] >= steps


def command(arm: dict[str, str], args: argparse.Namespace, policy: str, rm: str, run_dir: Path) -> list[str]:
    """The ``codescaler rl`` command line of one arm (``--resume`` added by ``run_arm`` when it applies)."""
    cmd = [sys.executable, "-m", "codescaler", "rl", "--reward", arm["reward"], "--policy", policy,
           "--preset", args.preset, "--max-steps", str(args.steps), "--problems", arm["problems"],
           "--eval-problems", args.eval_problems, "--seed", str(args.seed), "--output-dir", str(run_dir)]
    if args.train_limit:
        cmd += ["--limit", str(args.train_limit)]
    if args.eval_limit:
        cmd += ["--eval-limit", str(args.eval_limit)]
    if "rm" in arm["reward"].split("+"):
        cmd += ["--rm", rm]
    if args.max_completion_length:
        cmd += ["--max-completion-length", str(args.max_completion_length)]
    if args.data_dir:
        cmd += ["--data-dir", args.data_dir]
    cmd += passed_through(vars(args))
    if args.preset == "smoke":  # the smoke preset writes no checkpoint by default; one per step lets a re-run resume
        cmd += ["--save-steps", "1"]
    return cmd


def share_step0_eval(run_dir: Path, out: Path) -> None:
    """Give a fresh arm the step-0 held-out row another arm already measured (written with its ``eval_key``).

    At step 0 every arm is the same policy, so its greedy pass@1 is the same; ``codescaler rl`` reuses the
    row only when its ``eval_key`` (policy, dtype, held-out prompts and tests, decoding) is its own, and
    evaluates otherwise. Saves one held-out eval per arm (~9 minutes for 32 problems under ``cpu`` here).
    """
    mine = run_dir / "eval.jsonl"
    if any(row.get("step") == 0 for row in _rows(mine)):
        return
    from codescaler.data.artifacts import atomic_write_jsonl

    for other in sorted(p for p in out.glob("*/eval.jsonl") if p != mine):
        row = next((r for r in _rows(other) if r.get("step") == 0 and r.get("eval_key")), None)
        if row is not None:
            source = row.get("shared_from", other.parent.name)  # the arm that measured it
            run_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_jsonl(mine, [{**row, "shared_from": source}])
            print(f"= {run_dir.name}: step-0 held-out row offered from {source}", flush=True)
            return


def run_arm(arm: dict[str, str], args: argparse.Namespace, policy: str, rm: str) -> dict[str, Any]:
    """Run (or resume, or skip when finished) one arm; its summary row."""
    from codescaler.data.artifacts import atomic_write_json
    from codescaler.rl import last_checkpoint

    run_dir = args.out / arm["arm"].replace("+", "_")
    record_path = run_dir / "arm.json"  # wall time and exit code, accumulated over re-runs
    record = json.loads(record_path.read_text(encoding="utf-8")) if record_path.is_file() else {"wall_s": 0.0}
    if _finished(run_dir, args.steps) and record.get("exit_code") == 0:
        print(f"= {arm['arm']}: already at step {args.steps}, not run again", flush=True)
    else:
        cmd = command(arm, args, policy, rm, run_dir)
        if (run_dir / "metrics.jsonl").is_file():
            if last_checkpoint(run_dir) is not None:
                cmd.append("--resume")
            else:  # killed before its first checkpoint: nothing to resume from, so the arm starts again
                print(f"= {arm['arm']}: no checkpoint to resume from, starting again", flush=True)
                for name in ("metrics.jsonl", "run.json"):  # eval.jsonl's step-0 row is reused (same policy)
                    (run_dir / name).unlink(missing_ok=True)
                shutil.rmtree(run_dir / "final", ignore_errors=True)
        if "--resume" not in cmd:
            share_step0_eval(run_dir, args.out)
        print("+", " ".join(cmd), flush=True)
        start = time.monotonic()
        done = subprocess.run(cmd, cwd=REPO, check=False)
        run_dir.mkdir(parents=True, exist_ok=True)
        record = {"wall_s": round(float(record["wall_s"]) + time.monotonic() - start, 1),
                  "exit_code": done.returncode}
        atomic_write_json(record_path, record)
    return summarise(arm, run_dir, record, policy, args.data_dir)


def _mean(rows: list[dict], key: str) -> float | None:
    values = [float(r[key]) for r in rows if r.get(key) is not None]
    return round(sum(values) / len(values), 3) if values else None


def adapter_movement(adapter_dir: Path, policy: str) -> dict[str, float] | None:
    """How far LoRA GRPO moved the policy: ``lora_b_max`` (the largest LoRA-B entry; B starts at 0) and
    ``delta_rel`` = |dW| / |W| over the adapted weight matrices (Frobenius norms; dW = alpha/r * B @ A).
    None when ``adapter_dir`` holds no adapter (full fine-tuning, or a run that has not finished)."""
    weights, config = adapter_dir / "adapter_model.safetensors", adapter_dir / "adapter_config.json"
    if not (weights.is_file() and config.is_file()):
        return None
    from safetensors import safe_open

    from codescaler.models import resolve_model

    settings = json.loads(config.read_text(encoding="utf-8"))
    scale = settings["lora_alpha"] / settings["r"]
    delta_sq = base_sq = lora_b_max = 0.0
    adapted = set()
    with safe_open(str(weights), "pt") as adapter:
        for key in adapter.keys():  # noqa: SIM118 (safe_open is not iterable)
            if ".lora_A." not in key:
                continue
            a, b = adapter.get_tensor(key).float(), adapter.get_tensor(key.replace(".lora_A.", ".lora_B.")).float()
            lora_b_max = max(lora_b_max, float(b.abs().max()))
            delta_sq += float((scale * (b @ a)).pow(2).sum())
            adapted.add(key.removeprefix("base_model.model.").replace(".lora_A.weight", ".weight"))
    for path in sorted(Path(resolve_model(policy)).glob("*.safetensors")):  # each base file read once
        with safe_open(str(path), "pt") as f:
            for name in adapted.intersection(f.keys()):
                base_sq += float(f.get_tensor(name).float().pow(2).sum())
    return {"lora_b_max": lora_b_max, "delta_rel": (delta_sq / base_sq) ** 0.5 if base_sq else float("nan")}


def rollout_passes(run_dir: Path, problems: str, data_dir: str | None = None) -> list[tuple[int, str, bool]] | None:
    """``(step, task_id, passed)`` for each of the arm's training rollouts (``rollouts.jsonl``): whether it
    passes its problem's hidden tests (strict extraction, the tests reward's rule; the sandbox), whatever
    the arm's reward was: the one measure of its training problems that the ``rm`` arm (which never runs
    a test) shares with the others. Written to ``<run_dir>/rollout_pass.json`` and read back while
    rollouts.jsonl is unchanged; None without rollouts or when the problems have no tests (the no-tests arm)."""
    from codescaler.data.artifacts import atomic_write_json
    from codescaler.executor import ExecuteOptions
    from codescaler.records import ExtractMode
    from codescaler.rl_metrics import run_tests
    from codescaler.rl_problems import load_problem_set

    rollouts = run_dir / "rollouts.jsonl"
    rows = _rows(rollouts)
    if not rows:
        return None
    by_id = {p.task_id: p for p in load_problem_set(problems, data_dir, for_training=True, require_tests=False)}
    if any(r["task_id"] not in by_id or by_id[r["task_id"]].tests.is_empty for r in rows):
        return None
    cache = run_dir / "rollout_pass.json"
    stamp = f"strict:{rollouts.stat().st_size}:{rollouts.stat().st_mtime_ns}"
    if cache.is_file():
        saved = json.loads(cache.read_text(encoding="utf-8"))
        if saved.get("rollouts") == stamp:
            return [(int(step), task, bool(ok)) for step, task, ok in saved["passed"]]
    statuses = run_tests([by_id[r["task_id"]] for r in rows], [r["completion"] for r in rows],
                         ExecuteOptions(extract_mode=ExtractMode.STRICT))
    passes = [(int(r["step"]), r["task_id"], status.value == "passed")
              for r, status in zip(rows, statuses, strict=True)]
    atomic_write_json(cache, {"rollouts": stamp, "passed": passes})
    return passes


def pass_by_step(passes: list[tuple[int, str, bool]] | None) -> dict[int, float] | None:
    """The share of each step's rollouts that pass (each step has its own prompts: a noisy curve)."""
    if not passes:
        return None
    steps: dict[int, list[bool]] = {}
    for step, _, ok in passes:
        steps.setdefault(step, []).append(ok)
    return {s: round(sum(v) / len(v), 4) for s, v in sorted(steps.items())}


def pass_first_last_visit(passes: list[tuple[int, str, bool]] | None) -> dict[str, Any] | None:
    """Did the arm learn its training problems? Over the problems it was shown at two or more steps, the
    mean share of passing rollouts at each problem's first visit and at its last (the same problems on
    both sides: a paired measure, unlike the per-step curve)."""
    if not passes:
        return None
    visits: dict[str, dict[int, list[bool]]] = {}
    for step, task, ok in passes:
        visits.setdefault(task, {}).setdefault(step, []).append(ok)
    pairs = [(sum(v[min(v)]) / len(v[min(v)]), sum(v[max(v)]) / len(v[max(v)])) for v in visits.values() if len(v) > 1]
    if not pairs:
        return None
    return {"problems": len(pairs), "first": round(sum(a for a, _ in pairs) / len(pairs), 3),
            "last": round(sum(b for _, b in pairs) / len(pairs), 3)}


def summarise(arm: dict[str, str], run_dir: Path, record: dict[str, Any], policy: str | None = None,
              data_dir: str | None = None) -> dict[str, Any]:
    """One arm's summary row from its metrics.jsonl and eval.jsonl (step 0 = before, last row = after): the
    held-out problems gained and lost between them (same problems, so a paired count), the executed pass
    rate of its training rollouts by step and at each problem's first and last visit (``rollout_passes``),
    and with ``policy``, how far its final adapter moved the policy (``adapter_movement``)."""
    evals, metrics = _rows(run_dir / "eval.jsonl"), _rows(run_dir / "metrics.jsonl")
    before = next((e for e in evals if e["step"] == 0), None) or {}
    after = evals[-1] if evals and evals[-1]["step"] > 0 else {}
    first, last = (metrics[0], metrics[-1]) if metrics else ({}, {})
    paired = "passed" in before and "passed" in after
    passes = rollout_passes(run_dir, arm["problems"], data_dir)
    return {"arm": arm["arm"], "reward": arm["reward"], "problems": arm["problems"], "steps": last.get("step"),
            "pass_at_1_before": before.get("pass_at_1"), "pass_at_1_after": after.get("pass_at_1"),
            "valid_before": before.get("valid_rate"), "valid_after": after.get("valid_rate"),
            "eval_n": (after or before).get("n"),
            "train_reward_first": first.get("reward_mean"), "train_reward_last": last.get("reward_mean"),
            "train_valid_first": first.get("valid_rate"), "train_valid_last": last.get("valid_rate"),
            "length_first": first.get("response_length_mean"), "length_last": last.get("response_length_mean"),
            "groups_zero_std_mean": _mean(metrics, "groups_zero_std"),
            "heldout_gained": sorted(set(after["passed"]) - set(before["passed"])) if paired else None,
            "heldout_lost": sorted(set(before["passed"]) - set(after["passed"])) if paired else None,
            "train_pass_by_step": pass_by_step(passes), "train_pass_visits": pass_first_last_visit(passes),
            "adapter": adapter_movement(run_dir / "final", policy) if policy else None,
            "generate_s_mean": _mean(metrics, "generate_s"), "reward_s_mean": _mean(metrics, "reward_s"),
            "optimise_s_mean": _mean(metrics, "optimise_s"), "step_s_mean": _mean(metrics, "step_s"),
            "wall_s": record.get("wall_s"), "exit_code": record.get("exit_code"), "run_dir": str(run_dir)}


def _f(x: object) -> str:
    if x is None:
        return "-"
    return f"{x:.3f}" if isinstance(x, float) else str(x)


def _visits(v: dict[str, Any] | None) -> str:
    return "-" if not v else f"{_f(v['first'])} -> {_f(v['last'])} ({v['problems']})"


def render_markdown(config: dict[str, Any], results: list[dict[str, Any]]) -> str:
    kind = "SMOKE, tiny random models" if config["smoke"] else f"preset {config['preset']}"
    problems = {r["problems"] for r in results if r["arm"] != NO_TESTS_ARM} or {config["problems"]}
    lines = [f"# GRPO: unit-test reward vs CodeScaler reward ({kind})", "",
             f"policy `{config['policy']}`, rm `{config['rm']}`, train `{', '.join(sorted(problems))}` "
             f"(first {config['train_limit'] or 'preset'}), held-out `{config['eval_problems']}` "
             f"(first {config['eval_limit'] or 'preset'}), {config['steps']} steps, seed {config['seed']}."]
    asked = passed_through(config)
    if asked:
        lines.append(f"Over the preset: `{' '.join(asked)}`.")
    if config["no_tests_arm"]:
        lines.append(f"`{NO_TESTS_ARM}`: `--reward rm` on `{NO_TESTS_SOURCE}` with its tests removed "
                     f"(`{NO_TESTS_FILE}`), same held-out set.")
    lines += ["", "Seconds per step are the mean over the arm's metrics.jsonl rows (held-out evals excluded); "
              "`curves.png` plots every row.", "",
              "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in results:
        cells = [r["arm"], r["reward"], Path(r["problems"]).name if r["arm"] == NO_TESTS_ARM else r["problems"],
                 _f(r["steps"]), f"{_f(r['pass_at_1_before'])} -> {_f(r['pass_at_1_after'])}",
                 "-" if r.get("heldout_gained") is None else f"+{len(r['heldout_gained'])} / -{len(r['heldout_lost'])}",
                 f"{_f(r['valid_before'])} -> {_f(r['valid_after'])}",
                 _visits(r.get("train_pass_visits")),
                 f"{_f(r['train_reward_first'])} -> {_f(r['train_reward_last'])}",
                 f"{_f(r['train_valid_first'])} -> {_f(r['train_valid_last'])}",
                 f"{_f(r['length_first'])} -> {_f(r['length_last'])}", _f(r.get("groups_zero_std_mean")),
                 f"{r['adapter']['delta_rel']:.2e}" if r.get("adapter") else "-", _f(r["generate_s_mean"]),
                 _f(r["reward_s_mean"]), _f(r["optimise_s_mean"]), _f(r["wall_s"]), _f(r["exit_code"])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def arm_style(arm: str) -> dict[str, Any]:
    """An arm's line: the colours of report.strategy_colour (rm blue, tests orange, tests+rm purple); the
    no-tests arm is the rm colour, dashed."""
    from codescaler.report import strategy_colour

    if arm == NO_TESTS_ARM:
        return {"color": strategy_colour("rm"), "linestyle": "--"}
    return {"color": strategy_colour("tests+rm" if arm == "rm+tests" else arm), "linestyle": "-"}


def plot_curves(results: list[dict[str, Any]], path: Path, title: str) -> bool:
    """``curves.png``: 4 panels vs step, one line per arm. False (with a warning) without matplotlib."""
    from codescaler.extras import MissingExtra
    from codescaler.report import pyplot, save_png

    try:
        plt = pyplot()
    except MissingExtra as err:
        logger.warning("curves.png skipped: %s", err)
        return False
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(2, 3, figsize=(15, 7.5), layout="constrained")
    try:
        for r in results:
            metrics, evals = _rows(Path(r["run_dir"]) / "metrics.jsonl"), _rows(Path(r["run_dir"]) / "eval.jsonl")
            style = arm_style(r["arm"])
            for ax, (key, _) in zip(axes.flat, PANELS, strict=False):
                points = [(m["step"], m[key]) for m in metrics if m.get(key) is not None]
                if points:
                    ax.plot(*zip(*points, strict=True), marker=".", label=r["arm"], **style)
            rates = r.get("train_pass_by_step") or {}
            if rates:
                axes.flat[3].plot(*zip(*sorted((int(k), v) for k, v in rates.items()), strict=True), marker=".",
                                  label=r["arm"], **style)
            for ax, key in ((axes.flat[4], "pass_at_1"), (axes.flat[5], "valid_rate")):
                points = [(e["step"], e[key]) for e in evals if e.get(key) is not None]
                if points:
                    ax.plot(*zip(*points, strict=True), marker="o", label=r["arm"], **style)
        names = [t for _, t in PANELS] + ["training rollouts passing the tests (executed)",
                                          "held-out pass@1 (greedy)", "held-out valid rate (greedy)"]
        for ax, name in zip(axes.flat, names, strict=True):
            ax.set_title(name, fontsize=10)
            ax.set_xlabel("step")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            if "valid" in name or "pass" in name:  # rates
                ax.set_ylim(-0.03, 1.03)
            ax.grid(alpha=0.3)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=8)
        fig.suptitle(title, fontsize=11)
        save_png(fig, path)
    finally:
        plt.close(fig)
    return True


def write_summary(out: Path, config: dict[str, Any], results: list[dict[str, Any]]) -> None:
    """summary.json, summary.md and curves.png, each written atomically."""
    from codescaler.data.artifacts import atomic_write_json, atomic_write_text

    drawn = plot_curves(results, out / "curves.png", f"GRPO arms, {config['steps']} steps, "
                        f"{'smoke (tiny models)' if config['smoke'] else 'preset ' + config['preset']}")
    atomic_write_json(out / "summary.json", {"config": config, "results": results,
                                             "curves": "curves.png" if drawn else None})
    atomic_write_text(out / "summary.md", render_markdown(config, results))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--preset", choices=("smoke", "cpu", "gpu"), default=None,
                   help="codescaler rl's preset (default: gpu; smoke with --smoke)")
    p.add_argument("--smoke", action="store_true", help="tiny random policy and RM built locally + the smoke preset")
    p.add_argument("--policy", default="qwen2.5-coder-0.5b-instruct")
    p.add_argument("--rm", default="default", help="RM checkpoint for the rm rewards")
    p.add_argument("--rewards", default="tests,rm,rm+tests", help="the arms, one per reward (default: %(default)s)")
    p.add_argument("--no-tests-arm", action="store_true",
                   help=f"one more arm: --reward rm on {NO_TESTS_SOURCE} with its tests removed")
    p.add_argument("--problems", default="mbpp-train")
    p.add_argument("--eval-problems", default="mbpp-validation")
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--train-limit", type=int, default=0, help="first N training problems (0: the preset's)")
    p.add_argument("--eval-limit", type=int, default=0, help="first N held-out problems (0: the preset's)")
    p.add_argument("--max-completion-length", type=int, default=0, help="0: the preset's")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--lr", type=float, default=None, help="codescaler rl --lr (default: the preset's)")
    p.add_argument("--lr-scheduler", default=None, help="codescaler rl --lr-scheduler (default: the preset's, linear)")
    p.add_argument("--batch-size", type=int, default=None, help="codescaler rl --batch-size")
    p.add_argument("--num-generations", type=int, default=None, help="codescaler rl --num-generations")
    p.add_argument("--grad-accum", type=int, default=None,
                   help="codescaler rl --grad-accum (prompts a step = batch size x this / num generations)")
    p.add_argument("--eval-every", type=int, default=None, help="codescaler rl --eval-every (0: step 0 and the end)")
    p.add_argument("--beta", type=float, default=None, help="codescaler rl --beta (KL to the starting policy)")
    p.add_argument("--mask-truncated", action="store_true", default=None,
                   help="codescaler rl --mask-truncated (cut completions left out of the loss)")
    args = p.parse_args(argv)
    if args.smoke and args.preset not in (None, "smoke"):
        p.error("--smoke runs the smoke preset; drop --preset or pass --preset smoke")
    args.preset = args.preset or ("smoke" if args.smoke else "gpu")
    unknown = [r for r in args.rewards.split(",") if r and r not in ("rm", "tests", "rm+tests")]
    if unknown:
        p.error(f"--rewards: unknown reward {unknown[0]!r} (use rm, tests, rm+tests)")
    return args


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    policy, rm = args.policy, args.rm
    if args.smoke:
        policy, rm = _smoke_models(args.out)
    if args.no_tests_arm:
        write_no_tests_problems(args.out, args.data_dir)
    config = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    config.update(policy=policy, rm=rm)
    results = [run_arm(arm, args, policy, rm) for arm in arms(args)]
    write_summary(args.out, config, results)
    print((args.out / "summary.md").read_text(encoding="utf-8"))
    return 0 if all(r["exit_code"] == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
