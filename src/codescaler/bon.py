"""Best-of-N selection accuracy and cost per strategy, as a library (layer L3).

``run_bon(settings)`` gathers the signals the chosen strategies need (``codescaler.bon_signals``), caches
them in ``settings.output_dir`` (append-only JSONL, one flushed line per candidate: an interrupted run
resumes where it stopped), hands them to ``codescaler.rerank`` and writes report.json, report.md,
pass_at_n.png and frontier.png (``codescaler.report``). It returns a ``BonRun``: one ``CandidateRecord``
per candidate (ground truth, raw score, reward, validity, visible-test results, timings) and the
``rerank.StrategyResult`` of every strategy and N (pass@1 mean and std over seeds).

Signal files in the output folder:

- ``truth.jsonl``: hidden-test verdicts (only when ``settings.verdicts`` is None);
- ``scores-<key>.jsonl``: raw score, validity, reward and scoring seconds per candidate (a model batch's
  time split evenly over its candidates). The key hashes the checkpoint's CONTENT (every top-level file
  of its folder, and its base model's for an adapter), the input format, the extraction mode and the
  dtype, so retraining into the same folder starts a new file. Rows of ``settings.scores``
  (task_id, candidate_id, reward[, raw_score, valid, seconds]) are used as given and the model is only
  resolved when some candidate has none;
- ``logprob-<key>.jsonl``: mean token log-prob of each candidate's program under ``logprob_model`` (the
  ``logprob`` strategy; the key hashes that model's weights, the extraction mode and the dtype);
- ``visible.jsonl``: visible-test verdicts with wall and CPU seconds;
- ``generated.jsonl``, ``generated_runs.jsonl``: generated-test pass sets and the runs behind them;
- ``inputs.json``: sha256 of the inputs; a folder made from other problems or candidates is refused.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from codescaler.errors import InputError
from codescaler.records import Candidate, ExtractMode, Problem
from codescaler.rerank import CandidateSignals, Pool, Settings, Strategy, StrategyResult

logger = logging.getLogger(__name__)

Key = tuple[str, str]
ALL_STRATEGIES = (Strategy.RANDOM, Strategy.ORACLE, Strategy.RM, Strategy.TESTS, Strategy.HYBRID,
                  Strategy.CASCADE, Strategy.TESTS_RM)


@dataclass(frozen=True)
class BonSettings:
    """What ``run_bon`` measures and where it caches. Paths are files; ``None`` = not given.

    ``model``: the RM (``default``, a folder, a short name or hub id); ``scores``: a JSONL of rewards to
    reuse; ``verdicts``: hidden-test verdicts (else computed with the executor); ``dtype``/``device``/
    ``batch_size``/``extract_mode`` (None = the checkpoint's): how the RM scores; ``workers``: sandbox
    runs in parallel (None = CPU count); the rest: see ``rerank.Settings`` and docs/best_of_n.md.
    """

    problems: Path
    candidates: Path
    output_dir: Path = Path("runs/bon")
    model: str = "default"
    verdicts: Path | None = None
    scores: Path | None = None
    n_values: tuple[int, ...] = (4, 8, 16, 32)
    strategies: tuple[Strategy, ...] = ALL_STRATEGIES
    seeds: int = 20
    base_seed: int = 0
    top_k: int = 3
    cascade_max: int | None = None
    generated_tests: Path | None = None
    max_generated_tests: int = 0
    test_generation_seconds: float = 0.0
    workers: int | None = None
    device: str | None = None
    dtype: str | None = None
    batch_size: int = 16
    extract_mode: ExtractMode | None = None
    logprob_model: str = "qwen2.5-coder-0.5b-instruct"

    def validate(self) -> None:
        """Raise ``InputError`` naming the flag for any value that cannot work; nothing is read.

        The selection settings (N, seeds, top-k, cascade cap, strategies) are ``rerank.Settings``'s to
        check; this adds what only best-of-N has (batch size, workers, generated tests)."""
        self.rerank_settings().validate()
        if self.batch_size < 1:
            raise InputError(f"must be >= 1, got {self.batch_size}", field="--batch-size")
        if not self.strategies:
            raise InputError("no strategies", field="--strategies", fix="name at least one strategy")
        if self.test_generation_seconds < 0:
            raise InputError("must be >= 0", field="--test-generation-seconds")
        if self.max_generated_tests < 0:
            raise InputError("must be >= 0", field="--max-generated-tests")
        if self.workers is not None and self.workers < 1:
            raise InputError(f"must be >= 1, got {self.workers}", field="--workers")
        if Strategy.GENERATED_TESTS in self.strategies and self.generated_tests is None:
            raise InputError("generated-tests needs --generated-tests", field="--generated-tests",
                             fix="pass a CodeT test_case JSONL, or drop the strategy")

    def rerank_settings(self) -> Settings:
        return Settings(n_values=tuple(sorted(set(self.n_values))), strategies=tuple(dict.fromkeys(self.strategies)),
                        seeds=self.seeds, base_seed=self.base_seed, top_k=self.top_k, cascade_max=self.cascade_max)


@dataclass(frozen=True)
class CandidateRecord:
    """Every signal known about one candidate; None = not gathered (no strategy needed it). Seconds."""

    task_id: str
    candidate_id: str
    correct: bool                               # ground truth: passes the hidden tests
    raw_score: float | None = None              # RM score (None: no valid code, or not in a --scores row)
    valid: bool | None = None                   # the RM found valid code
    reward: float | None = None                 # shaped reward
    visible_status: str | None = None           # Status value of the visible-test run
    visible_passed: int | None = None
    visible_all: bool | None = None
    generated_passed: frozenset[str] | None = None
    model_seconds: float = 0.0
    exec_wall_seconds: float = 0.0
    exec_cpu_seconds: float = 0.0
    generated_wall_seconds: float = 0.0
    generated_cpu_seconds: float = 0.0
    logprob: float | None = None                # mean token log-prob of the program (None: no valid code)
    logprob_seconds: float = 0.0

    def signals(self) -> CandidateSignals:
        return CandidateSignals(
            candidate_id=self.candidate_id, correct=self.correct, reward=self.reward,
            visible_passed=self.visible_passed, visible_all=self.visible_all, generated_passed=self.generated_passed,
            model_seconds=self.model_seconds, exec_wall_seconds=self.exec_wall_seconds,
            exec_cpu_seconds=self.exec_cpu_seconds, generated_wall_seconds=self.generated_wall_seconds,
            generated_cpu_seconds=self.generated_cpu_seconds, logprob=self.logprob,
            logprob_seconds=self.logprob_seconds)


@dataclass(frozen=True)
class BonRun:
    """What ``run_bon`` measured: per-candidate records, per-problem pools, per-(strategy, N) results."""

    settings: BonSettings
    candidates: tuple[CandidateRecord, ...]
    pools: tuple[Pool, ...]
    results: tuple[StrategyResult, ...]
    scorer: dict[str, Any] | None = None        # Scorer.info of the run that made the cached scores
    signals_seconds: float = 0.0
    paths: dict[str, Path] = field(default_factory=dict)

    def result(self, strategy: Strategy | str, n: int) -> StrategyResult:
        for r in self.results:
            if r.strategy == Strategy(strategy) and r.n == n:
                return r
        raise KeyError(f"no result for {strategy} at N={n}")


def run_bon(settings: BonSettings, *, command: str | None = None) -> BonRun:
    """Validate, gather (or reuse) the signals, evaluate every strategy at every N, write the report.

    ``command``: the command line to record in the report (default: a Python call). Raises
    ``InputError`` for bad settings or inputs before anything is written into ``output_dir``.
    """
    from codescaler import bon_signals
    from codescaler.report import describe_hardware, write_bon_report
    from codescaler.rerank import evaluate, pools_from

    settings.validate()
    problems, cands = read_inputs(settings)
    verdicts = None
    if settings.verdicts is not None:  # validated before anything is written into output_dir
        from codescaler import data

        verdicts = data.index_verdicts(settings.verdicts)
    settings.output_dir.mkdir(parents=True, exist_ok=True)
    _check_inputs(settings)
    started = time.monotonic()
    records, scorer_info, gen_tasks = bon_signals.gather(settings, problems, cands, verdicts)
    pools = pools_from(((r.task_id, r.signals()) for r in records),
                       visible=[t for t, p in problems.items() if bon_signals.has_visible(p)], generated=gen_tasks,
                       generation_seconds={t: settings.test_generation_seconds for t in gen_tasks})
    signals_seconds = round(time.monotonic() - started, 2)
    chosen = settings.rerank_settings()
    results = evaluate(pools, chosen)
    _warn_skipped(results, chosen)
    meta = {"command": command or f"codescaler.bon.run_bon({settings!r})",
            "problems": str(settings.problems), "candidates": str(settings.candidates), "model": settings.model,
            "seeds": settings.seeds, "base_seed": settings.base_seed, "top_k": settings.top_k,
            "cascade_max": settings.cascade_max, "n_values": list(chosen.n_values), "n_problems_total": len(pools),
            "n_candidates": len(cands), "scorer": scorer_info, "signals_seconds": signals_seconds}
    device = (scorer_info or {}).get("device")
    paths = write_bon_report(settings.output_dir, results, hardware=describe_hardware(device), meta=meta)
    return BonRun(settings, tuple(records), tuple(pools), tuple(results), scorer_info, signals_seconds, paths)


def _warn_skipped(results: Iterable[StrategyResult], chosen: Settings) -> None:
    results = list(results)
    for r in results:
        if r.n_skipped and r.n == chosen.n_values[0]:
            logger.warning("%s: %d of %d problems skipped (no tests for it)", r.strategy.value, r.n_skipped,
                           r.n_skipped + r.n_problems)
    for n in chosen.n_values:
        short = max(r.n_short for r in results if r.n == n)
        if short:
            logger.warning("N=%d: up to %d problems have fewer than %d candidates; all of theirs were used "
                           "(n_short per strategy in report.md)", n, short, n)


def read_inputs(settings: BonSettings) -> tuple[dict[str, Problem], list[Candidate]]:
    """Problems by task id and candidates; unknown tasks, duplicates and an empty file are errors."""
    from codescaler import data

    problems: dict[str, Problem] = {}
    for problem in data.read_problems(settings.problems):
        if problem.task_id in problems:
            raise InputError(f"task {problem.task_id!r} appears twice", path=str(settings.problems), field="task_id")
        problems[problem.task_id] = problem
    cands = data.read_candidates(settings.candidates, prompts={t: p.prompt for t, p in problems.items()})
    if not cands:
        raise InputError("no candidates", path=str(settings.candidates), fix="give at least one candidate")
    unknown = sorted({c.task_id for c in cands} - set(problems))
    if unknown:
        raise InputError(f"{len(unknown)} task ids are not in --problems, e.g. {unknown[0]!r}",
                         path=str(settings.candidates), field="task_id", fix="pass the matching problems file")
    seen: set[Key] = set()
    for c in cands:
        if (c.task_id, c.candidate_id) in seen:
            raise InputError(f"candidate {c.task_id}/{c.candidate_id} appears twice", path=str(settings.candidates),
                             field="candidate_id", fix="give candidates of a task distinct ids")
        seen.add((c.task_id, c.candidate_id))
    return problems, cands


def _check_inputs(settings: BonSettings) -> None:
    def digest(path: Path | None) -> str | None:
        if path is None:
            return None
        try:
            return hashlib.sha256(path.read_bytes()).hexdigest()
        except OSError as err:
            raise InputError(f"cannot read: {err.strerror}", path=str(path), fix="check the path") from None

    current = {"problems": digest(settings.problems), "candidates": digest(settings.candidates),
               "verdicts": digest(settings.verdicts), "generated_tests": digest(settings.generated_tests)}
    marker = settings.output_dir / "inputs.json"
    if marker.is_file():
        before = json.loads(marker.read_text(encoding="utf-8"))
        changed = [k for k in ("problems", "candidates") if before.get(k) != current[k]]
        if changed:
            raise InputError(f"{settings.output_dir} holds signals computed from other {' and '.join(changed)}",
                             path=str(marker), fix="use a new --output-dir (or delete the old one)")
    from codescaler.report import write_atomic

    write_atomic(marker, json.dumps(current, indent=2) + "\n")


# -- the signal row store: bon's cache files through the artifact layer ---------------------------------

def signal_store(path: Path) -> Any:
    """A cache file of rows keyed by (task_id, candidate_id): ``data.AppendStore`` (a torn last line left
    by a killed run is cut off; every appended row is one flushed line)."""
    from codescaler.data import AppendStore, task_candidate_key

    return AppendStore(path, task_candidate_key, fix="delete the file to recompute it")
