"""The signals best-of-N selects on, computed once and cached per candidate (layer L3).

``gather`` returns one ``bon.CandidateRecord`` per candidate, from the cache files in the output folder
(``codescaler.bon`` lists them) or computed for the candidates they lack: hidden-test verdicts and
visible-test runs through the executor (with CPU accounting), RM scores through ``Scorer.iter_score``
(the extract -> score -> shape path every scorer shares), generated-test pass sets.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import resource
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from codescaler.bon import BonSettings, CandidateRecord, Key, signal_store
from codescaler.errors import InputError
from codescaler.extract import candidate_item, item_program
from codescaler.model_device import dtype_label
from codescaler.records import Candidate, Problem, Status, TestSuite, Verdict
from codescaler.rerank import NEEDS_GENERATED, NEEDS_LOGPROB, NEEDS_REWARD, NEEDS_VISIBLE

logger = logging.getLogger(__name__)

Rows = dict[Key, dict[str, Any]]
_SCORE_CHUNK = 256  # candidates per scoring call: rows are flushed at least this often


def gather(settings: BonSettings, problems: dict[str, Problem], cands: list[Candidate],
           verdicts: dict[Key, Verdict] | None) -> tuple[list[CandidateRecord], dict[str, Any] | None, set[str]]:
    """Records in candidate order, the scorer's info (None when no RM was needed), the tasks with
    generated tests. Raises ``InputError`` when a candidate has no ground truth."""
    strategies = set(settings.strategies)
    truth = _truth(settings, problems, cands, verdicts)
    missing = [c for c in cands if (c.task_id, c.candidate_id) not in truth]
    if missing:
        raise InputError(f"{len(missing)} candidates have no ground-truth verdict, e.g. "
                         f"{missing[0].task_id}/{missing[0].candidate_id}", path=str(settings.verdicts),
                         fix="execute every candidate on the hidden tests, or drop --verdicts to compute them")
    scores: Rows = {}
    info = None
    if strategies & NEEDS_REWARD:
        scores, info = score_candidates(settings, problems, cands,
                                        share_logprob=bool(strategies & NEEDS_LOGPROB))
    visible = _visible(settings, problems, cands) if strategies & NEEDS_VISIBLE else {}
    generated: Rows = {}
    gen_tasks: set[str] = set()
    if strategies & NEEDS_GENERATED:
        generated, gen_tasks = _generated(settings, problems, cands)
    logprobs = logprob_candidates(settings, problems, cands) if strategies & NEEDS_LOGPROB else {}
    return [_record(c, truth, scores, visible, generated, logprobs) for c in cands], info, gen_tasks


def _record(c: Candidate, truth: dict[Key, bool], scores: Rows, visible: Rows, generated: Rows,
            logprobs: Rows) -> CandidateRecord:
    key = (c.task_id, c.candidate_id)
    s, v, g, lp = scores.get(key), visible.get(key), generated.get(key), logprobs.get(key)
    passed = None
    if v is not None:
        passed = v["total"] if v["status"] == Status.PASSED.value and v["passed"] is None else (v["passed"] or 0)
    return CandidateRecord(
        task_id=c.task_id, candidate_id=c.candidate_id, correct=truth[key],
        raw_score=s.get("raw_score") if s else None, valid=s.get("valid") if s else None,
        reward=s["reward"] if s else None,
        visible_status=v["status"] if v else None, visible_passed=passed,
        visible_all=v["status"] == Status.PASSED.value if v is not None else None,
        generated_passed=frozenset(g["passed_tests"]) if g else None,
        model_seconds=float(s.get("seconds") or 0.0) if s else 0.0,
        exec_wall_seconds=v["seconds"] if v else 0.0, exec_cpu_seconds=v["cpu_seconds"] if v else 0.0,
        generated_wall_seconds=g["seconds"] if g else 0.0, generated_cpu_seconds=g["cpu_seconds"] if g else 0.0,
        logprob=lp.get("logprob") if lp else None, logprob_seconds=float(lp.get("seconds") or 0.0) if lp else 0.0)


def has_visible(problem: Problem) -> bool:
    return problem.visible_tests is not None and not problem.visible_tests.is_empty


# -- RM scores -----------------------------------------------------------------------------------------

def score_cache_key(settings: BonSettings) -> str:
    """sha256 of what decides a candidate's score: the checkpoint's content, input format, extraction
    mode, dtype (``model_device.dtype_label``: what "auto" picks on this machine). Hashing a model's
    weights is memoised per process and file state (``feature_backbone.weights_sha256``)."""
    from codescaler.rm_checkpoint import METADATA_FILE, adapter_base_model, checkpoint_sha256, read_metadata
    from codescaler.scorer import resolve_checkpoint

    path = Path(resolve_checkpoint(settings.model))
    if not path.is_dir():  # a hub id: its content is not here to hash
        return hashlib.sha256(json.dumps({"hub": str(path), "dtype": dtype_label(settings.dtype, settings.device),
                                          "extract_mode": settings.extract_mode}).encode()).hexdigest()
    meta = read_metadata(path) if (path / METADATA_FILE).is_file() else None
    content = [checkpoint_sha256(path)]
    if (path / "adapter_config.json").is_file():
        base = Path(resolve_checkpoint(adapter_base_model(str(path), meta)))
        content.append(checkpoint_sha256(base) if base.is_dir() else f"hub:{base}")
    material = {"checkpoint": content, "input_format": meta.input_format.value if meta else "auto",
                "extract_mode": (settings.extract_mode or (meta.extract_mode if meta else None) or "auto"),
                "dtype": dtype_label(settings.dtype, settings.device)}
    return hashlib.sha256(json.dumps(material, sort_keys=True, default=str).encode("utf-8")).hexdigest()


def _given_scores(path: Path) -> Rows:
    rows = dict(signal_store(path).rows)
    for key, row in rows.items():
        if not isinstance(row.get("reward"), (int, float)):
            raise InputError("missing or non-numeric reward", path=str(path), field="reward",
                             fix=f"row for {key[0]}/{key[1]}")
    return rows


def score_candidates(settings: BonSettings, problems: dict[str, Problem], cands: list[Candidate],
                     scorer: Any = None, *, share_logprob: bool = False) -> tuple[Rows, dict[str, Any] | None]:
    """Score rows per candidate: ``settings.scores`` rows as given, then the content-keyed cache, then
    the RM (loaded only when something is missing; ``scorer``: an already loaded one). ``share_logprob``:
    also keep the ``logprob`` strategy's value from the RM's own pass where it is the same number
    (``_logprob_listener``)."""
    done: Rows = _given_scores(settings.scores) if settings.scores is not None else {}
    if all((c.task_id, c.candidate_id) in done for c in cands):
        return done, None
    path = settings.output_dir / f"scores-{score_cache_key(settings)[:16]}.jsonl"
    store = signal_store(path)
    for key, row in store.rows.items():
        done.setdefault(key, row)
    todo = [c for c in cands if (c.task_id, c.candidate_id) not in done]
    info_path = path.with_suffix(".info.json")
    if not todo:
        return done, json.loads(info_path.read_text(encoding="utf-8")) if info_path.is_file() else None

    from codescaler.report import write_atomic
    from codescaler.scorer import Scorer

    if scorer is None:
        scorer = Scorer.load(settings.model, device=settings.device, dtype=settings.dtype,
                             batch_size=settings.batch_size, extract_mode=settings.extract_mode)
    write_atomic(info_path, json.dumps(scorer.info, indent=2) + "\n")  # device of the cached timings

    def rows_of(part: list[Candidate]) -> Iterator[list[dict[str, Any]]]:
        clock = time.perf_counter()
        for indices, scores in scorer.iter_score([candidate_item(problems[c.task_id], c) for c in part]):
            now = time.perf_counter()
            each = (now - clock) / max(1, [s.valid for s in scores].count(True))  # split over the batch
            clock = now
            yield [{"task_id": part[i].task_id, "candidate_id": part[i].candidate_id,
                    "raw_score": s.raw_score, "valid": s.valid, "reward": s.reward,
                    "seconds": each if s.valid else 0.0} for i, s in zip(indices, scores, strict=True)]

    if share_logprob:
        scorer.on_feature_rows = _logprob_listener(settings, problems, todo, scorer)
    try:
        _fill(store, todo, "RM scores", rows_of)
    finally:
        scorer.on_feature_rows = None
    for key, row in store.rows.items():
        done.setdefault(key, row)
    return done, scorer.info


def logprob_candidates(settings: BonSettings, problems: dict[str, Problem], cands: list[Candidate],
                       scorer: Any = None) -> Rows:
    """Mean token log-prob of each candidate's program under ``settings.logprob_model`` (the ``logprob``
    strategy), cached in ``logprob-<key>.jsonl``; the program is read by the same rule as RM scores."""
    store, mode = _logprob_store(settings)
    done: Rows = store.rows
    todo = [c for c in cands if (c.task_id, c.candidate_id) not in done]
    if not todo:
        return done

    if scorer is None:
        from codescaler.bench.baselines import LogProbScorer

        scorer = LogProbScorer(settings.logprob_model, device=settings.device, dtype=settings.dtype)
    def rows_of(part: list[Candidate]) -> Iterator[list[dict[str, Any]]]:
        programs = [item_program(candidate_item(problems[c.task_id], c), mode) for c in part]
        valid = [i for i, prog in enumerate(programs) if prog is not None]
        clock = time.perf_counter()
        values = scorer.score_codes([problems[part[i].task_id].prompt for i in valid],
                                    [programs[i] for i in valid]) if valid else []
        each = (time.perf_counter() - clock) / max(1, len(valid))
        found = dict(zip(valid, values, strict=True))
        yield [{"task_id": c.task_id, "candidate_id": c.candidate_id, "logprob": found.get(i),
                "seconds": each if i in found else 0.0} for i, c in enumerate(part)]

    _fill(store, todo, "log-probs", rows_of)
    return done


def _logprob_store(settings: BonSettings) -> tuple[Any, Any]:
    """The ``logprob-<key>.jsonl`` store (key: the log-prob model's weights, extraction mode, dtype) and
    the extraction mode its programs are read with."""
    from codescaler.feature_backbone import backbone_folder, weights_sha256
    from codescaler.records import ExtractMode

    mode = settings.extract_mode or ExtractMode.STRICT
    material = {"model": weights_sha256(backbone_folder(settings.logprob_model)), "extract_mode": str(mode),
                "dtype": dtype_label(settings.dtype, settings.device)}
    key = hashlib.sha256(json.dumps(material, sort_keys=True).encode("utf-8")).hexdigest()
    return signal_store(settings.output_dir / f"logprob-{key[:16]}.jsonl"), mode


def _logprob_listener(settings: BonSettings, problems: dict[str, Problem], cands: list[Candidate],
                      scorer: Any) -> Callable[[list[str], list[str], Any], None] | None:
    """A ``Scorer.on_feature_rows`` callback that appends the ``logprob`` strategy's rows from the RM's
    own forward pass, or None when that pass does not compute the same number.

    It does when the RM is a head checkpoint with likelihood features on the log-prob model's exact
    weights (same hash) and input format, in the same dtype (the RM is loaded with ``settings.dtype``):
    its ``lp_mean`` column is then the ``LogProbScorer``'s value (the baseline reads that column of the
    same extractor) for every program whose input the head's shorter max length does not cut
    (``FeatureExtractor.fits``). Those candidates cost no second pass; the rest, and every candidate
    when the RM scores came from the cache, get ``logprob_candidates``' own pass. Each shared row's
    ``seconds`` is the RM pass's time per program (an upper bound on a log-prob pass alone).
    """
    from codescaler.feature_backbone import backbone_folder, weights_sha256
    from codescaler.rm_checkpoint import InputFormat

    extractor = scorer.feature_extractor
    if extractor is None or not extractor.spec.likelihood \
            or extractor.spec.input_format != InputFormat.CHAT_TEMPLATE.value \
            or extractor.spec.backbone_sha256 != weights_sha256(backbone_folder(settings.logprob_model)):
        return None
    store, mode = _logprob_store(settings)
    wanted: dict[tuple[str, str], list[Candidate]] = {}
    for c in cands:
        prompt = problems[c.task_id].prompt
        program = item_program(candidate_item(problems[c.task_id], c), mode)
        if (c.task_id, c.candidate_id) not in store.rows and program is not None \
                and extractor.fits(prompt, program):
            wanted.setdefault((prompt, program), []).append(c)
    if not wanted:
        return None
    column = extractor.spec.names().index("lp_mean")
    clock = [time.perf_counter()]
    logger.info("logprob: %d programs read off the RM's pass (%s)", len(wanted), settings.model)

    def listen(prompts: list[str], codes: list[str], rows: Any) -> None:
        now = time.perf_counter()
        each, clock[0] = (now - clock[0]) / max(1, len(codes)), now
        store.extend([{"task_id": c.task_id, "candidate_id": c.candidate_id, "logprob": float(row[column]),
                       "seconds": each, "from_rm_pass": True}
                      for prompt, code, row in zip(prompts, codes, rows, strict=True)
                      for c in wanted.pop((prompt, code), [])])

    return listen


def _fill(store: Any, todo: list[Any], desc: str, rows_of: Callable[[list[Any]], Iterator[list[dict[str, Any]]]],
          *, chunk: int = _SCORE_CHUNK, unit: str = "cand") -> None:
    """Append a row for every job of ``todo`` to ``store`` (an ``AppendStore``, so a killed run keeps what
    it wrote), ``chunk`` jobs at a time behind a progress bar; ``rows_of(part)`` yields the rows of
    ``part`` in batches, each row carrying its own ``seconds``. The one loop of every cached signal."""
    from tqdm import tqdm

    with tqdm(total=len(todo), desc=desc, unit=unit, disable=None) as bar:
        for start in range(0, len(todo), chunk):
            for rows in rows_of(todo[start:start + chunk]):
                store.extend(rows)
                bar.update(len(rows))


# -- execution -----------------------------------------------------------------------------------------

def _execute_cached(jobs: list[tuple[Problem, Candidate]], path: Path, settings: BonSettings, what: str) -> Rows:
    """Execute the jobs not yet in ``path``; append one verdict row per job (with CPU seconds)."""
    from codescaler.executor import ExecuteOptions, execute

    store = signal_store(path)
    done: Rows = store.rows
    todo = [(p, c) for p, c in jobs if (p.task_id, c.candidate_id) not in done]
    if not todo:
        return done
    logger.info("%s: executing %d candidates (%d cached in %s)", what, len(todo), len(jobs) - len(todo), path)
    options = ExecuteOptions(workers=settings.workers)

    def rows_of(part: list[tuple[Problem, Candidate]]) -> Iterator[list[dict[str, Any]]]:
        cpu0 = children_cpu_seconds()
        verdicts = list(execute(part, options))
        cpu = max(0.0, children_cpu_seconds() - cpu0)
        wall = sum(v.seconds for v in verdicts) or 1.0
        yield [_verdict_row(v, v.seconds * cpu / wall) for v in verdicts]

    _fill(store, todo, what, rows_of, chunk=64 * options.worker_count(), unit="run")
    return done


def children_cpu_seconds() -> float:
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


def _truth(settings: BonSettings, problems: dict[str, Problem], cands: list[Candidate],
           verdicts: dict[Key, Verdict] | None) -> dict[Key, bool]:
    if verdicts is not None:
        return {key: v.status is Status.PASSED for key, v in verdicts.items()}
    rows = _execute_cached([(problems[c.task_id], c) for c in cands], settings.output_dir / "truth.jsonl",
                           settings, "hidden tests")
    return {k: r["status"] == Status.PASSED.value for k, r in rows.items()}


def _visible(settings: BonSettings, problems: dict[str, Problem], cands: list[Candidate]) -> Rows:
    copies = {t: replace(p, tests=p.visible_tests) for t, p in problems.items()
              if p.visible_tests is not None and has_visible(p)}
    jobs = [(copies[c.task_id], c) for c in cands if c.task_id in copies]
    return _execute_cached(jobs, settings.output_dir / "visible.jsonl", settings, "visible tests")


def _generated(settings: BonSettings, problems: dict[str, Problem], cands: list[Candidate]) -> tuple[Rows, set[str]]:
    """Pass sets on generated tests: one sandbox run per (candidate, distinct test)."""
    from codescaler import data

    assert settings.generated_tests is not None  # BonSettings.validate
    limit = settings.max_generated_tests
    tests_by_task: dict[str, list[str]] = {}
    for task_id, tests in data.load_generated_tests(settings.generated_tests).items():
        distinct = list(dict.fromkeys(t.strip() for t in tests if t.strip()))
        tests_by_task[task_id] = distinct[:limit] if limit else distinct
    has = {t for t, tests in tests_by_task.items() if tests and t in problems}
    path = settings.output_dir / "generated.jsonl"
    store = signal_store(path)
    done: Rows = store.rows
    todo = [c for c in cands if c.task_id in has and (c.task_id, c.candidate_id) not in done]
    if todo:
        jobs: list[tuple[Problem, Candidate]] = []
        for c in todo:
            for i, test in enumerate(tests_by_task[c.task_id]):
                copy = replace(problems[c.task_id], tests=TestSuite(functional=test))
                jobs.append((copy, replace(c, candidate_id=f"{c.candidate_id}\x1f{i}")))
        runs = _execute_cached(jobs, settings.output_dir / "generated_runs.jsonl", settings, "generated tests")
        rows = []
        for c in todo:
            mine = [runs[(c.task_id, f"{c.candidate_id}\x1f{i}")] for i in range(len(tests_by_task[c.task_id]))]
            rows.append({"task_id": c.task_id, "candidate_id": c.candidate_id,
                         "passed_tests": [str(i) for i, r in enumerate(mine) if r["status"] == Status.PASSED.value],
                         "seconds": sum(r["seconds"] for r in mine), "cpu_seconds": sum(r["cpu_seconds"] for r in mine)})
        store.extend(rows)
    return done, has
