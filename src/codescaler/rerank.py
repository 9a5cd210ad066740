"""Best-of-N selection: draw N candidates per problem, pick one by a strategy, score it (layer L1, pure).

Values in, values out: no torch, no I/O. The CLI (``codescaler bon``) gathers the signals (RM rewards,
visible-test pass counts, generated-test pass sets, timings) and hands them here as ``Pool`` records.

Contract
--------
- Draws: for seed ``s`` and problem ``task_id``, the pool's candidate indices are shuffled once by
  ``random.Random(f"{s}:{task_id}")`` (Python's string seeding is a SHA-512 of the text, so it does not
  depend on PYTHONHASHSEED, the platform or the order of problems) and the first ``N`` are the draw.
  Draws are therefore nested across N (the N=4 draw is the start of the N=8 draw) and identical for
  every strategy, so strategies are compared on the same candidates.
- Fewer candidates than N: all of them are used; ``StrategyResult.n_short`` counts such problems.
- Accuracy of one selection = the EXPECTED hidden-test correctness over the set of candidates the
  strategy cannot tell apart (the tied set), never the luck of an ordering. Per seed, the accuracy is
  the mean over problems; the result is the mean over seeds with the sample std (ddof=1) across seeds.
- Strategies (``Strategy``):
  ``rm``: highest shaped reward. ``tests``: most visible tests passed. ``tests+rm``: among those with
  the most visible tests passed, highest reward. ``hybrid``: the ``top_k`` highest-reward candidates
  (ties at the cut broken by draw order, which is random per seed) are executed on the visible tests;
  most passed wins, reward breaks ties. ``cascade``: the same RM ranking, but candidates are executed
  one at a time in that order and the first that passes ALL visible tests is taken, so the cost adapts
  to the problem; at most ``cascade_max`` are run (None: up to N), and when none of those passes all,
  the pick is hybrid's over the executed ones (most passed, reward breaks ties). With ``top_k`` equal
  to the cap, ``cascade`` picks what ``hybrid`` picks (the highest-reward candidate passing all is the
  first one met; exact reward ties aside) while executing no more; uncapped, what ``tests+rm`` picks.
  ``generated-tests``: CodeT dual agreement: candidates are grouped by the exact set of generated tests they pass; a group scores (#candidates) x (#tests in the set);
  the tied set is every candidate of the best-scoring groups. ``random``: mean correctness of the N.
  ``oracle``: 1 if any of the N is correct. ``logprob``: highest mean token log-prob of the code under
  the backbone LM, no training (the baseline every RM must beat); candidates without valid code rank last.
- Problems a strategy cannot handle (no visible tests for tests/tests+rm/hybrid, no generated tests for
  generated-tests) are skipped and counted in ``n_skipped``; if every problem would be skipped the
  strategy raises ``InputError``. ``n_problems`` is the denominator actually used; a strategy that
  skipped problems also reports random and oracle on the same problems and draws
  (``random_same_problems``, ``oracle_same_problems``), its fair floor and ceiling.
- Cost per problem, from per-candidate inputs: model seconds = RM scoring time of the candidates the
  strategy scored (plus the pool's test-generation time for generated-tests); execution seconds (wall
  and CPU) = execution time of the candidates it ran (all N for tests and tests+rm, top-k for hybrid,
  those run before stopping for cascade, all N on the generated tests for generated-tests); random and
  oracle cost nothing.
"""

from __future__ import annotations

import random
import statistics
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from codescaler.errors import InputError
from codescaler.records import StrEnum


class Strategy(StrEnum):
    """How one candidate is chosen out of N."""

    RM = "rm"
    TESTS = "tests"
    GENERATED_TESTS = "generated-tests"
    HYBRID = "hybrid"
    CASCADE = "cascade"
    TESTS_RM = "tests+rm"
    RANDOM = "random"
    ORACLE = "oracle"
    LOGPROB = "logprob"


NEEDS_REWARD = frozenset({Strategy.RM, Strategy.HYBRID, Strategy.CASCADE, Strategy.TESTS_RM})
NEEDS_VISIBLE = frozenset({Strategy.TESTS, Strategy.HYBRID, Strategy.CASCADE, Strategy.TESTS_RM})
NEEDS_GENERATED = frozenset({Strategy.GENERATED_TESTS})
NEEDS_LOGPROB = frozenset({Strategy.LOGPROB})


@dataclass(frozen=True)
class CandidateSignals:
    """What is known about one candidate. Times are seconds; None = signal not available."""

    candidate_id: str
    correct: bool                                  # ground truth: passes the hidden tests
    reward: float | None = None                    # shaped RM reward (invalid code: 0)
    visible_passed: int | None = None              # visible tests passed
    visible_all: bool | None = None                # passed ALL visible tests (needed by cascade)
    generated_passed: frozenset[str] | None = None  # ids of the generated tests it passes
    model_seconds: float = 0.0                     # RM scoring time of this candidate
    exec_wall_seconds: float = 0.0                 # visible-test execution, wall clock
    exec_cpu_seconds: float = 0.0                  # visible-test execution, CPU
    generated_wall_seconds: float = 0.0            # generated-test execution, wall clock
    generated_cpu_seconds: float = 0.0             # generated-test execution, CPU
    logprob: float | None = None                   # mean token log-prob of the code (None: no valid code)
    logprob_seconds: float = 0.0                   # time to compute it


@dataclass(frozen=True)
class Pool:
    """All candidates of one problem. ``generation_seconds``: cost of generating its tests, if known."""

    task_id: str
    candidates: tuple[CandidateSignals, ...]
    has_visible_tests: bool = False
    has_generated_tests: bool = False
    generation_seconds: float = 0.0


@dataclass(frozen=True)
class Selection:
    """Outcome of one strategy on one draw of one problem."""

    expected_correct: float   # expected hidden-test correctness of the pick, in [0, 1]
    tied: int                 # size of the set the pick is uniform over
    scored: int               # candidates a model scored (the RM; the LM for logprob)
    executed: int             # candidates executed (visible or generated tests)
    model_seconds: float
    exec_wall_seconds: float
    exec_cpu_seconds: float

    @property
    def seconds(self) -> float:
        """Latency of the selection: model plus execution (wall) seconds."""
        return self.model_seconds + self.exec_wall_seconds


@dataclass(frozen=True)
class Settings:
    """What to measure: N values, strategies, seeds 0..seeds-1 offset by ``base_seed``, hybrid's k,
    cascade's cap on executions (None: up to N)."""

    n_values: tuple[int, ...] = (4, 8, 16, 32)
    strategies: tuple[Strategy, ...] = (Strategy.RANDOM, Strategy.ORACLE, Strategy.RM, Strategy.TESTS)
    seeds: int = 20
    base_seed: int = 0
    top_k: int = 3
    cascade_max: int | None = None

    def validate(self) -> None:
        """Raise ``InputError`` naming the setting for a value no strategy can run with."""
        if self.seeds < 1:
            raise InputError(f"seeds must be >= 1, got {self.seeds}", field="seeds", fix="use --seeds 20")
        if not self.n_values:
            raise InputError("no N values given", field="n", fix="use --n 4 8 16 32")
        if min(self.n_values) < 1:
            raise InputError(f"N must be >= 1, got {min(self.n_values)}", field="n",
                             fix="use --n with values such as 4 8 16 32")
        if self.top_k < 1:
            raise InputError(f"top_k must be >= 1, got {self.top_k}", field="top_k", fix="use --top-k 3")
        if self.cascade_max is not None and self.cascade_max < 1:
            raise InputError(f"cascade_max must be >= 1, got {self.cascade_max}", field="cascade_max",
                             fix="use --cascade-max 5, or leave it out (up to N)")
        for strategy in self.strategies:
            if strategy not in tuple(Strategy):
                raise InputError(f"unknown strategy {strategy!r}", field="strategies",
                                 fix=f"use one of: {', '.join(Strategy)}")


@dataclass(frozen=True)
class StrategyResult:
    """Accuracy (fractions in [0, 1]) and cost (seconds per problem) of one strategy at one N."""

    strategy: Strategy
    n: int
    pass_at_1: float
    std: float
    per_seed: tuple[float, ...]
    n_problems: int               # problems in the denominator
    n_skipped: int                # problems the strategy could not handle (see module docstring)
    n_short: int                  # problems with fewer than n candidates (all were used)
    mean_drawn: float             # candidates drawn per problem, on average
    model_seconds_per_problem: float
    exec_seconds_per_problem: float      # wall clock
    exec_cpu_seconds_per_problem: float
    scored_per_problem: float
    executed_per_problem: float
    # When the strategy skipped problems: random and oracle on the SAME problems and draws (else None),
    # so that its accuracy is compared with the floor and ceiling of the problems it actually ran on.
    random_same_problems: float | None = None
    oracle_same_problems: float | None = None

    @property
    def seconds_per_problem(self) -> float:
        return self.model_seconds_per_problem + self.exec_seconds_per_problem


def draw(pool: Pool, n: int, seed: int) -> list[CandidateSignals]:
    """The first ``n`` candidates of the pool's shuffle for ``seed`` (all of them if fewer)."""
    if n < 1:
        raise InputError(f"N must be >= 1, got {n}", field="n", fix="use --n with values such as 4 8 16 32")
    order = list(range(len(pool.candidates)))
    random.Random(f"{seed}:{pool.task_id}").shuffle(order)
    return [pool.candidates[i] for i in order[:n]]


def _mean_correct(cands: Sequence[CandidateSignals]) -> float:
    return sum(1.0 for c in cands if c.correct) / len(cands)


def _argmax_set(cands: Sequence[CandidateSignals], key: Callable[[CandidateSignals], float]) -> list[CandidateSignals]:
    values = [key(c) for c in cands]
    best = max(values)
    return [c for c, v in zip(cands, values, strict=True) if v == best]


def _reward(c: CandidateSignals) -> float:
    if c.reward is None:
        raise InputError(f"candidate {c.candidate_id!r} has no RM reward", field="reward",
                         fix="score every candidate before using rm, hybrid or tests+rm")
    return c.reward


def _logprob(c: CandidateSignals) -> float:
    return float("-inf") if c.logprob is None else c.logprob


def _visible(c: CandidateSignals) -> int:
    if c.visible_passed is None:
        raise InputError(f"candidate {c.candidate_id!r} has no visible-test result", field="visible_passed",
                         fix="execute every candidate of a problem with visible tests")
    return c.visible_passed


def _by_reward(cands: Sequence[CandidateSignals]) -> list[CandidateSignals]:
    """Highest reward first; sorted() is stable, so equal rewards keep draw order (random per seed)."""
    return sorted(cands, key=lambda c: -_reward(c))


def _most_passed_then_reward(cands: Sequence[CandidateSignals]) -> list[CandidateSignals]:
    """The tied set of tests+rm (and of hybrid/cascade over what they ran)."""
    return _argmax_set(_argmax_set(cands, _visible), _reward)


def _passes_all(c: CandidateSignals) -> bool:
    if c.visible_all is None:
        raise InputError(f"candidate {c.candidate_id!r} does not say whether it passed all visible tests",
                         field="visible_all", fix="execute every candidate of a problem with visible tests")
    return c.visible_all


def _cascade(ranked: Sequence[CandidateSignals], limit: int) -> tuple[list[CandidateSignals], list[CandidateSignals]]:
    """(executed, tied): run in rank order until one passes all visible tests, at most ``limit``."""
    executed: list[CandidateSignals] = []
    for c in ranked[:limit]:
        executed.append(c)
        if _passes_all(c):
            return executed, [c]
    return executed, _most_passed_then_reward(executed)


def _generated(c: CandidateSignals) -> frozenset[str]:
    if c.generated_passed is None:
        raise InputError(f"candidate {c.candidate_id!r} has no generated-test result",
                         field="generated_passed", fix="execute every candidate on the generated tests")
    return c.generated_passed


def _dual_agreement(cands: Sequence[CandidateSignals]) -> list[CandidateSignals]:
    clusters: dict[frozenset[str], list[CandidateSignals]] = {}
    for c in cands:
        clusters.setdefault(_generated(c), []).append(c)
    scores = {tests: len(members) * len(tests) for tests, members in clusters.items()}
    best = max(scores.values())
    return [c for tests, members in clusters.items() if scores[tests] == best for c in members]


def select(strategy: Strategy, cands: Sequence[CandidateSignals], *, top_k: int = 3,
           cascade_max: int | None = None, generation_seconds: float = 0.0) -> Selection:
    """Apply ``strategy`` to one drawn set (in draw order). See the module docstring for the rules."""
    if not cands:
        raise InputError("no candidates to select from", fix="give every problem at least one candidate")
    strategy = Strategy(strategy)
    n = len(cands)
    scored: Sequence[CandidateSignals] = ()
    executed: Sequence[CandidateSignals] = ()
    extra_model = 0.0
    if strategy is Strategy.RANDOM:
        tied: Sequence[CandidateSignals] = cands
    elif strategy is Strategy.ORACLE:
        hit = any(c.correct for c in cands)
        return Selection(1.0 if hit else 0.0, 1, 0, 0, 0.0, 0.0, 0.0)
    elif strategy is Strategy.RM:
        scored, tied = cands, _argmax_set(cands, _reward)
    elif strategy is Strategy.TESTS:
        executed, tied = cands, _argmax_set(cands, _visible)
    elif strategy is Strategy.TESTS_RM:
        scored = executed = cands
        tied = _most_passed_then_reward(cands)
    elif strategy is Strategy.HYBRID:
        if top_k < 1:
            raise InputError(f"top_k must be >= 1, got {top_k}", field="top_k", fix="use --top-k 3")
        scored, executed = cands, _by_reward(cands)[: min(top_k, n)]
        tied = _most_passed_then_reward(executed)
    elif strategy is Strategy.CASCADE:
        if cascade_max is not None and cascade_max < 1:
            raise InputError(f"cascade_max must be >= 1, got {cascade_max}", field="cascade_max",
                             fix="use --cascade-max 5, or leave it out (up to N)")
        scored = cands
        executed, tied = _cascade(_by_reward(cands), n if cascade_max is None else min(cascade_max, n))
    elif strategy is Strategy.LOGPROB:
        tied = _argmax_set(cands, _logprob)
        return Selection(_mean_correct(tied), len(tied), len(cands), 0, sum(c.logprob_seconds for c in cands),
                         0.0, 0.0)
    elif strategy is Strategy.GENERATED_TESTS:
        extra_model = generation_seconds
        tied = _dual_agreement(cands)
        # Executions are charged per candidate on the generated tests (not the visible ones).
        return Selection(_mean_correct(tied), len(tied), 0, n, extra_model,
                         sum(c.generated_wall_seconds for c in cands),
                         sum(c.generated_cpu_seconds for c in cands))
    else:  # pragma: no cover - every enum member is handled above
        raise InputError(f"unknown strategy {strategy!r}")
    return Selection(
        expected_correct=_mean_correct(tied),
        tied=len(tied),
        scored=len(scored),
        executed=len(executed),
        model_seconds=extra_model + sum(c.model_seconds for c in scored),
        exec_wall_seconds=sum(c.exec_wall_seconds for c in executed),
        exec_cpu_seconds=sum(c.exec_cpu_seconds for c in executed),
    )


def usable(strategy: Strategy, pool: Pool) -> bool:
    """Whether ``strategy`` can run on ``pool`` (has the tests it needs and at least one candidate)."""
    if not pool.candidates:
        return False
    if strategy in NEEDS_VISIBLE and not pool.has_visible_tests:
        return False
    return not (strategy in NEEDS_GENERATED and not pool.has_generated_tests)


def evaluate(pools: Sequence[Pool], settings: Settings) -> list[StrategyResult]:
    """One ``StrategyResult`` per (strategy, N), strategies in settings order, N ascending.

    Raises ``InputError`` when a strategy can use no problem at all, when a needed signal is missing
    on a usable problem, for duplicate task ids, or for bad settings (``Settings.validate``).
    """
    settings.validate()
    seen: set[str] = set()
    for pool in pools:
        if pool.task_id in seen:
            raise InputError(f"task {pool.task_id!r} appears twice", field="task_id",
                             fix="merge its candidates into one pool")
        seen.add(pool.task_id)
    results = []
    for strategy in settings.strategies:
        strategy = Strategy(strategy)
        used = [p for p in pools if usable(strategy, p)]
        if not used:
            need = "visible tests" if strategy in NEEDS_VISIBLE else "generated tests" \
                if strategy in NEEDS_GENERATED else "candidates"
            raise InputError(f"strategy {strategy.value!r}: none of the {len(pools)} problems has {need}",
                             field="strategies", fix=f"drop {strategy.value!r} or supply {need}")
        for n in sorted(set(settings.n_values)):
            results.append(_evaluate_one(strategy, n, used, len(pools) - len(used), settings))
    return results


def _evaluate_one(strategy: Strategy, n: int, used: Sequence[Pool], skipped: int,
                  settings: Settings) -> StrategyResult:
    per_seed: list[float] = []
    totals = [0.0] * 6  # model, wall, cpu, scored, executed, drawn
    floor = ceiling = 0.0
    for offset in range(settings.seeds):
        seed = settings.base_seed + offset
        hits = 0.0
        for pool in used:
            cands = draw(pool, n, seed)
            sel = select(strategy, cands, top_k=settings.top_k, cascade_max=settings.cascade_max,
                         generation_seconds=pool.generation_seconds)
            hits += sel.expected_correct
            if skipped:
                floor += select(Strategy.RANDOM, cands).expected_correct
                ceiling += select(Strategy.ORACLE, cands).expected_correct
            for i, value in enumerate((sel.model_seconds, sel.exec_wall_seconds, sel.exec_cpu_seconds,
                                       sel.scored, sel.executed, len(cands))):
                totals[i] += value
        per_seed.append(hits / len(used))
    count = settings.seeds * len(used)
    model, wall, cpu, scored, executed, drawn = (t / count for t in totals)
    return StrategyResult(
        strategy=strategy, n=n, pass_at_1=statistics.fmean(per_seed),
        std=statistics.stdev(per_seed) if len(per_seed) > 1 else 0.0, per_seed=tuple(per_seed),
        n_problems=len(used), n_skipped=skipped, n_short=sum(1 for p in used if len(p.candidates) < n),
        mean_drawn=drawn, model_seconds_per_problem=model, exec_seconds_per_problem=wall,
        exec_cpu_seconds_per_problem=cpu, scored_per_problem=scored, executed_per_problem=executed,
        random_same_problems=floor / count if skipped else None,
        oracle_same_problems=ceiling / count if skipped else None,
    )


def pools_from(rows: Iterable[tuple[str, CandidateSignals]], *, visible: Iterable[str] = (),
               generated: Iterable[str] = (), generation_seconds: dict[str, float] | None = None) -> list[Pool]:
    """Group (task_id, signals) rows into Pools in first-seen order.

    ``visible``/``generated``: task ids that have visible / generated tests. ``generation_seconds``:
    per task id, the cost of generating its tests.
    """
    grouped: dict[str, list[CandidateSignals]] = {}
    for task_id, signals in rows:
        grouped.setdefault(task_id, []).append(signals)
    vis, gen, cost = set(visible), set(generated), generation_seconds or {}
    return [Pool(task_id, tuple(cands), task_id in vis, task_id in gen, cost.get(task_id, 0.0))
            for task_id, cands in grouped.items()]
