"""``codescaler bon``: best-of-N selection accuracy and latency per strategy (layer L4).

Gathers the signals the chosen strategies need, caches them in ``--output-dir`` (append-only JSONL,
one line per candidate, flushed: an interrupted run resumes where it stopped), hands them to
``codescaler.rerank`` and writes report.json, report.md, pass_at_n.png and frontier.png
(``codescaler.report``). Signal files in the output folder:

- ``truth.jsonl``: hidden-test verdicts (only when ``--verdicts`` is not given);
- ``scores-<model hash>.jsonl``: RM reward and scoring seconds per candidate (batch time split evenly
  over the batch's candidates); ``--scores`` rows (task_id, candidate_id, reward[, seconds]) are reused;
- ``visible.jsonl``: visible-test verdicts with wall seconds and CPU seconds (child-process CPU time of
  each run of fresh executions, apportioned to its candidates by wall time);
- ``generated.jsonl``: the set of generated tests each candidate passes (one sandbox run per test).
``inputs.json`` records the hashes of the inputs; a folder made from other inputs is refused.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import resource
import time
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

from codescaler.errors import InputError
from codescaler.records import Candidate, Problem, Status, TestSuite, Verdict

logger = logging.getLogger(__name__)

Key = tuple[str, str]


def register(subparsers: Any) -> None:
    from codescaler.rerank import Strategy

    p = subparsers.add_parser(
        "bon", help="best-of-N selection: accuracy and latency of RM, tests, hybrid ... strategies",
        description="Draw N candidates per problem with fixed seeds, select one by each strategy, and "
        "report pass@1 of the selection (hidden tests) with its model and execution cost.")
    p.add_argument("--problems", required=True, type=Path, help="problems JSONL (with visible_tests for tests/hybrid)")
    p.add_argument("--candidates", required=True, type=Path, help="candidates JSONL (response and/or code)")
    p.add_argument("--model", default="default", help="RM for rm/hybrid/tests+rm (default: %(default)s)")
    p.add_argument("--verdicts", type=Path, default=None,
                   help="hidden-test verdicts JSONL (ground truth); computed with the executor when absent")
    p.add_argument("--n", type=int, nargs="+", default=[4, 8, 16, 32], help="N values (default: 4 8 16 32)")
    p.add_argument("--strategies", nargs="+", choices=[s.value for s in Strategy],
                   default=["random", "oracle", "rm", "tests", "hybrid", "cascade", "tests+rm"])
    p.add_argument("--seeds", type=int, default=20, help="draws per problem (default: 20)")
    p.add_argument("--base-seed", type=int, default=0)
    p.add_argument("--top-k", type=int, default=3, help="hybrid: candidates executed, best by RM (default: 3)")
    p.add_argument("--cascade-max", type=int, default=None, metavar="K",
                   help="cascade: execute at most K candidates in RM order (default: up to N)")
    p.add_argument("--generated-tests", type=Path, default=None,
                   help="generated tests (CodeT test_case JSONL) for the generated-tests strategy")
    p.add_argument("--max-generated-tests", type=int, default=0,
                   help="use at most this many distinct generated tests per problem (0: all)")
    p.add_argument("--test-generation-seconds", type=float, default=0.0, metavar="S",
                   help="generated-tests: seconds it took to generate one problem's tests, if known (model cost)")
    p.add_argument("--scores", type=Path, default=None, help="cached RM scores JSONL to reuse")
    p.add_argument("--output-dir", type=Path, default=Path("runs/bon"))
    p.add_argument("--workers", type=int, default=None, help="parallel sandbox runs (default: CPU count)")
    p.add_argument("--device", default=None)
    p.add_argument("--batch-size", type=int, default=16)
    p.set_defaults(func=run)


# -- signal cache files -------------------------------------------------------------------------------

def _load_rows(path: Path) -> dict[Key, dict[str, Any]]:
    """Rows of a cache JSONL by (task_id, candidate_id); a torn last line (killed run) is cut off."""
    if not path.is_file():
        return {}
    raw = path.read_bytes()
    if raw and not raw.endswith(b"\n"):
        cut = raw.rfind(b"\n") + 1
        with open(path, "r+b") as handle:
            handle.truncate(cut)
        raw = raw[:cut]
    from codescaler.data.jsonl import parse_json_line

    rows: dict[Key, dict[str, Any]] = {}
    fix = "delete the file to recompute it"
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise InputError(f"not UTF-8 (byte {err.start})", path=str(path), fix=fix) from None
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        row = parse_json_line(line, path, number, fix=fix)
        try:
            rows[(str(row["task_id"]), str(row["candidate_id"]))] = row
        except KeyError as err:
            raise InputError(f"unreadable cache row (no {err})", path=str(path), line=number, fix=fix) from None
    return rows


def _append(path: Path, rows: Iterable[dict[str, Any]], into: dict[Key, dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
            handle.flush()
            into[(row["task_id"], row["candidate_id"])] = row


def _check_inputs(out: Path, args: argparse.Namespace) -> None:
    def digest(path: Path | None) -> str | None:
        if path is None:
            return None
        try:
            return hashlib.sha256(path.read_bytes()).hexdigest()
        except OSError as err:
            raise InputError(f"cannot read: {err.strerror}", path=str(path), fix="check the path") from None

    current = {"problems": digest(args.problems), "candidates": digest(args.candidates),
               "verdicts": digest(args.verdicts), "generated_tests": digest(args.generated_tests)}
    marker = out / "inputs.json"
    if marker.is_file():
        before = json.loads(marker.read_text(encoding="utf-8"))
        changed = [k for k in ("problems", "candidates") if before.get(k) != current[k]]
        if changed:
            raise InputError(f"{out} holds signals computed from other {' and '.join(changed)}", path=str(marker),
                             fix="use a new --output-dir (or delete the old one)")
    from codescaler.report import write_atomic

    write_atomic(marker, json.dumps(current, indent=2) + "\n")


# -- signals -----------------------------------------------------------------------------------------

def _execute_cached(jobs: list[tuple[Problem, Candidate]], path: Path, args: argparse.Namespace,
                    what: str) -> dict[Key, dict[str, Any]]:
    """Execute the jobs not yet in ``path``; append one verdict row per job (with CPU seconds)."""
    from tqdm import tqdm

    from codescaler.executor import ExecuteOptions, execute

    done = _load_rows(path)
    todo = [(p, c) for p, c in jobs if (p.task_id, c.candidate_id) not in done]
    if not todo:
        return done
    logger.info("%s: executing %d candidates (%d cached in %s)", what, len(todo), len(jobs) - len(todo), path)
    options = ExecuteOptions(workers=args.workers)
    chunk = 64 * options.worker_count()
    with tqdm(total=len(todo), desc=what, unit="run", disable=None) as bar:
        for start in range(0, len(todo), chunk):
            cpu0 = _children_cpu_seconds()
            verdicts = list(execute(todo[start:start + chunk], options))
            cpu = max(0.0, _children_cpu_seconds() - cpu0)
            wall = sum(v.seconds for v in verdicts) or 1.0
            _append(path, (_verdict_row(v, v.seconds * cpu / wall) for v in verdicts), done)
            bar.update(len(verdicts))
    return done


def _children_cpu_seconds() -> float:
    """CPU seconds used so far by every process below this one, alive or reaped.

    Sandbox jobs are forked by long-lived fork servers (``sandbox_launch``), so their time shows in the
    servers' ``cutime``/``cstime`` (/proc/<pid>/stat), not in our RUSAGE_CHILDREN until a server exits:
    sum both. A process that exits between two readings moves its time into its parent's counters.
    """
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    total = usage.ru_utime + usage.ru_stime
    tick = os.sysconf("SC_CLK_TCK")
    stats: dict[int, tuple[int, float]] = {}
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else ():
        if not entry.isdigit():
            continue
        try:
            text = Path(f"/proc/{entry}/stat").read_text(encoding="ascii", errors="replace")
        except OSError:
            continue
        fields = text[text.rfind(")") + 2:].split()  # after "pid (comm) ": state ppid ...
        try:
            stats[int(entry)] = (int(fields[1]), sum(int(x) for x in fields[11:15]) / tick)
        except (IndexError, ValueError):
            continue
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in stats.items():
        children.setdefault(ppid, []).append(pid)
    stack = list(children.get(os.getpid(), []))
    while stack:
        pid = stack.pop()
        total += stats[pid][1]
        stack.extend(children.get(pid, []))
    return total


def _verdict_row(v: Verdict, cpu_seconds: float) -> dict[str, Any]:
    return {"task_id": v.task_id, "candidate_id": v.candidate_id, "status": str(v.status), "passed": v.passed,
            "total": v.total, "seconds": v.seconds, "cpu_seconds": round(cpu_seconds, 6), "detail": v.detail}


def _truth(args: argparse.Namespace, problems: dict[str, Problem], cands: list[Candidate]) -> dict[Key, bool]:
    if args.verdicts is not None:
        return {key: v.status is Status.PASSED for key, v in args.verdict_index.items()}
    rows = _execute_cached([(problems[c.task_id], c) for c in cands], args.output_dir / "truth.jsonl", args,
                           "hidden tests")
    return {k: r["status"] == Status.PASSED.value for k, r in rows.items()}


def _scores(args: argparse.Namespace, problems: dict[str, Problem], cands: list[Candidate]) -> tuple[
        dict[Key, dict[str, Any]], dict[str, Any] | None]:
    """Rewards and scoring seconds per candidate; loads the RM only when something is not cached."""
    tag = hashlib.sha256(args.model.encode("utf-8")).hexdigest()[:10]
    path = args.output_dir / f"scores-{tag}.jsonl"
    done = _load_rows(path)
    if args.scores is not None:
        for key, row in _load_rows(args.scores).items():
            if not isinstance(row.get("reward"), (int, float)):
                raise InputError("missing or non-numeric reward", path=str(args.scores), field="reward",
                                 fix=f"row for {key[0]}/{key[1]}")
            done.setdefault(key, row)
    todo = [c for c in cands if (c.task_id, c.candidate_id) not in done]
    info_path = path.with_suffix(".info.json")
    if not todo:
        cached_info = json.loads(info_path.read_text(encoding="utf-8")) if info_path.is_file() else None
        return done, cached_info
    from tqdm import tqdm

    from codescaler.executor import program_of
    from codescaler.report import write_atomic
    from codescaler.scorer import Scorer
    from codescaler.shaping import shape_reward

    scorer = Scorer.load(args.model, device=args.device, batch_size=args.batch_size)
    write_atomic(info_path, json.dumps(scorer.info, indent=2) + "\n")  # device of the cached timings
    codes = [program_of(problems[c.task_id], c, scorer.extract_mode)[0] for c in todo]
    invalid = [{"task_id": c.task_id, "candidate_id": c.candidate_id, "raw_score": None, "valid": False,
                "reward": shape_reward(None, False, scorer.meta.shaping), "seconds": 0.0}
               for c, code in zip(todo, codes, strict=True) if code is None]
    _append(path, invalid, done)
    valid = [(c, code) for c, code in zip(todo, codes, strict=True) if code is not None]
    with tqdm(total=len(valid), desc="RM scores", unit="cand", disable=None) as bar:
        for start in range(0, len(valid), 256):
            part = valid[start:start + 256]
            stream = scorer.iter_score_codes([problems[c.task_id].prompt for c, _ in part], [x for _, x in part])
            clock = time.perf_counter()
            for indices, raws in stream:
                now = time.perf_counter()
                each = (now - clock) / max(1, len(indices))  # batch time split evenly over its candidates
                clock = now
                _append(path, ({"task_id": part[i][0].task_id, "candidate_id": part[i][0].candidate_id,
                                "raw_score": raw, "valid": True, "reward": shape_reward(raw, True, scorer.meta.shaping),
                                "seconds": each} for i, raw in zip(indices, raws, strict=True)), done)
                bar.update(len(indices))
    return done, scorer.info


def _has_visible(problem: Problem) -> bool:
    return problem.visible_tests is not None and not problem.visible_tests.is_empty


def _visible(args: argparse.Namespace, problems: dict[str, Problem], cands: list[Candidate]) -> dict[Key, dict[str, Any]]:
    copies = {t: replace(p, tests=p.visible_tests) for t, p in problems.items()
              if p.visible_tests is not None and not p.visible_tests.is_empty}
    jobs = [(copies[c.task_id], c) for c in cands if c.task_id in copies]
    return _execute_cached(jobs, args.output_dir / "visible.jsonl", args, "visible tests")


def _generated(args: argparse.Namespace, problems: dict[str, Problem], cands: list[Candidate]) -> tuple[
        dict[Key, dict[str, Any]], set[str]]:
    """Pass sets on generated tests: one sandbox run per (candidate, distinct test)."""
    from codescaler import data

    tests_by_task: dict[str, list[str]] = {}
    for task_id, tests in data.load_generated_tests(args.generated_tests).items():
        distinct = list(dict.fromkeys(t.strip() for t in tests if t.strip()))
        tests_by_task[task_id] = distinct[: args.max_generated_tests] if args.max_generated_tests else distinct
    has = {t for t, tests in tests_by_task.items() if tests and t in problems}
    path = args.output_dir / "generated.jsonl"
    done = _load_rows(path)
    todo = [c for c in cands if c.task_id in has and (c.task_id, c.candidate_id) not in done]
    if todo:
        jobs: list[tuple[Problem, Candidate]] = []
        for c in todo:
            for i, test in enumerate(tests_by_task[c.task_id]):
                copy = replace(problems[c.task_id], tests=TestSuite(functional=test))
                jobs.append((copy, replace(c, candidate_id=f"{c.candidate_id}\x1f{i}")))
        runs = _execute_cached(jobs, args.output_dir / "generated_runs.jsonl", args, "generated tests")
        rows = []
        for c in todo:
            mine = [runs[(c.task_id, f"{c.candidate_id}\x1f{i}")] for i in range(len(tests_by_task[c.task_id]))]
            rows.append({"task_id": c.task_id, "candidate_id": c.candidate_id,
                         "passed_tests": [str(i) for i, r in enumerate(mine) if r["status"] == Status.PASSED.value],
                         "seconds": sum(r["seconds"] for r in mine), "cpu_seconds": sum(r["cpu_seconds"] for r in mine)})
        _append(path, rows, done)
    return done, has


# -- composition -----------------------------------------------------------------------------------

def _signals(args: argparse.Namespace, problems: dict[str, Problem], cands: list[Candidate],
             strategies: set[Any]) -> tuple[list[Any], dict[str, Any]]:
    from codescaler.rerank import NEEDS_GENERATED, NEEDS_REWARD, NEEDS_VISIBLE, CandidateSignals, pools_from

    truth = _truth(args, problems, cands)
    missing = [c for c in cands if (c.task_id, c.candidate_id) not in truth]
    if missing:
        raise InputError(f"{len(missing)} candidates have no ground-truth verdict, e.g. "
                         f"{missing[0].task_id}/{missing[0].candidate_id}", path=str(args.verdicts),
                         fix="execute every candidate on the hidden tests, or drop --verdicts to compute them")
    info: dict[str, Any] = {}
    scores: dict[Key, dict[str, Any]] = {}
    if strategies & NEEDS_REWARD:
        scores, scorer_info = _scores(args, problems, cands)
        info["scorer"] = scorer_info
    visible = _visible(args, problems, cands) if strategies & NEEDS_VISIBLE else {}
    generated: dict[Key, dict[str, Any]] = {}
    gen_tasks: set[str] = set()
    if strategies & NEEDS_GENERATED:
        if args.generated_tests is None:
            raise InputError("generated-tests needs --generated-tests", field="--generated-tests",
                             fix="pass a CodeT test_case JSONL, or drop the strategy")
        generated, gen_tasks = _generated(args, problems, cands)

    def signals(c: Candidate) -> CandidateSignals:
        key = (c.task_id, c.candidate_id)
        s, v, g = scores.get(key), visible.get(key), generated.get(key)
        passed = None
        if v is not None:
            passed = v["total"] if v["status"] == Status.PASSED.value and v["passed"] is None else (v["passed"] or 0)
        return CandidateSignals(
            candidate_id=c.candidate_id, correct=truth[key], reward=s["reward"] if s else None,
            visible_passed=passed, visible_all=v["status"] == Status.PASSED.value if v is not None else None,
            generated_passed=frozenset(g["passed_tests"]) if g else None,
            model_seconds=float(s.get("seconds") or 0.0) if s else 0.0,
            exec_wall_seconds=v["seconds"] if v else 0.0, exec_cpu_seconds=v["cpu_seconds"] if v else 0.0,
            generated_wall_seconds=g["seconds"] if g else 0.0, generated_cpu_seconds=g["cpu_seconds"] if g else 0.0)

    pools = pools_from(((c.task_id, signals(c)) for c in cands),
                       visible=[t for t, p in problems.items() if _has_visible(p)], generated=gen_tasks,
                       generation_seconds={t: args.test_generation_seconds for t in gen_tasks})
    return pools, info


def _read_inputs(args: argparse.Namespace) -> tuple[dict[str, Problem], list[Candidate]]:
    from codescaler import data

    problems: dict[str, Problem] = {}
    for problem in data.read_problems(args.problems):
        if problem.task_id in problems:
            raise InputError(f"task {problem.task_id!r} appears twice", path=str(args.problems), field="task_id")
        problems[problem.task_id] = problem
    cands = data.read_candidates(args.candidates, prompts={t: p.prompt for t, p in problems.items()})
    unknown = sorted({c.task_id for c in cands} - set(problems))
    if unknown:
        raise InputError(f"{len(unknown)} task ids are not in --problems, e.g. {unknown[0]!r}",
                         path=str(args.candidates), field="task_id", fix="pass the matching problems file")
    seen: set[Key] = set()
    for c in cands:
        if (c.task_id, c.candidate_id) in seen:
            raise InputError(f"candidate {c.task_id}/{c.candidate_id} appears twice", path=str(args.candidates),
                             field="candidate_id", fix="give candidates of a task distinct ids")
        seen.add((c.task_id, c.candidate_id))
    return problems, cands


def _validate(args: argparse.Namespace) -> None:
    for flag, value in (("--seeds", args.seeds), ("--top-k", args.top_k), ("--batch-size", args.batch_size)):
        if value < 1:
            raise InputError(f"must be >= 1, got {value}", field=flag)
    if args.cascade_max is not None and args.cascade_max < 1:
        raise InputError(f"must be >= 1, got {args.cascade_max}", field="--cascade-max",
                         fix="leave it out to let cascade run up to N candidates")
    if min(args.n) < 1:
        raise InputError(f"N values must be >= 1, got {args.n}", field="--n")
    if args.test_generation_seconds < 0:
        raise InputError("must be >= 0", field="--test-generation-seconds")
    if args.max_generated_tests < 0:
        raise InputError("must be >= 0", field="--max-generated-tests")


def _command_line(args: argparse.Namespace) -> str:
    """The flags this run resolved to, as a command (args, not sys.argv: main() may be called from code)."""
    parts = ["codescaler", "bon"]
    for key, value in vars(args).items():
        if key in ("func", "verb", "verbose") or value is None or value is False:
            continue
        flag = "--" + key.replace("_", "-")
        parts += [flag] + ([str(v) for v in value] if isinstance(value, list) else [str(value)])
    return " ".join(parts)


def run(args: argparse.Namespace) -> int:
    from codescaler.report import describe_hardware, write_bon_report
    from codescaler.rerank import Settings, Strategy, evaluate

    _validate(args)
    strategies = tuple(dict.fromkeys(Strategy(s) for s in args.strategies))
    problems, cands = _read_inputs(args)
    if not cands:
        raise InputError("no candidates", path=str(args.candidates), fix="give at least one candidate")
    if args.verdicts is not None:  # validated before anything is written into --output-dir
        from codescaler import data

        args.verdict_index = data.index_verdicts(args.verdicts)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    _check_inputs(args.output_dir, args)
    started = time.monotonic()
    pools, info = _signals(args, problems, cands, set(strategies))
    settings = Settings(n_values=tuple(sorted(set(args.n))), strategies=strategies, seeds=args.seeds,
                        base_seed=args.base_seed, top_k=args.top_k,
                        cascade_max=args.cascade_max)
    results = evaluate(pools, settings)
    for r in results:
        if r.n_skipped and r.n == settings.n_values[0]:
            logger.warning("%s: %d of %d problems skipped (no tests for it)", r.strategy.value, r.n_skipped,
                           r.n_skipped + r.n_problems)
    for n in settings.n_values:
        short = max(r.n_short for r in results if r.n == n)
        if short:
            logger.warning("N=%d: up to %d problems have fewer than %d candidates; all of theirs were used "
                           "(n_short per strategy in report.md)", n, short, n)
    device = (info.get("scorer") or {}).get("device")
    meta = {"command": _command_line(args),
            "problems": str(args.problems), "candidates": str(args.candidates), "model": args.model,
            "seeds": args.seeds, "base_seed": args.base_seed, "top_k": args.top_k, "cascade_max": args.cascade_max,
            "n_values": list(settings.n_values),
            "n_problems_total": len(pools), "n_candidates": len(cands), "scorer": info.get("scorer"),
            "signals_seconds": round(time.monotonic() - started, 2)}
    paths = write_bon_report(args.output_dir, results, hardware=describe_hardware(device), meta=meta)
    for r in results:
        if r.n == settings.n_values[-1]:
            print(f"{r.strategy.value:>16} N={r.n:<3} pass@1 {100 * r.pass_at_1:5.1f} ± {100 * r.std:.1f}  "
                  f"({r.n_problems} problems, {r.seconds_per_problem:.3f} s/problem)")
    print(f"wrote {', '.join(str(p) for p in paths.values())}")
    return 0

