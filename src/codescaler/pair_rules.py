"""The pairing rules and the curation of one problem's pairs (layer L1: pure, no I/O).

``PairSettings`` say how pairs are formed (``PairRule``: codescaler or pass-rate) and curated; the
functions here apply them to ``Labelled`` candidates: ``eligible_pairs`` (positives, negatives and
every allowed (chosen, rejected, margin) of a problem, after dedup), ``select_pairs`` (the per-problem
cap, filled by a seeded greedy that uses every candidate as evenly as possible),
``trim_to_length_balance`` and ``length_stats`` (the length direction of pairs), and
``cross_problem_pairs`` (rejected programs that solve another problem). The rules in full are in the
docstring of ``codescaler.pairs``.
"""

from __future__ import annotations

import heapq
import logging
import math
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from codescaler.errors import InputError
from codescaler.pair_labels import Labelled
from codescaler.records import ExtractMode, Pair, Problem, StrEnum

logger = logging.getLogger(__name__)


class PairRule(StrEnum):
    CODESCALER = "codescaler"
    PASS_RATE = "pass-rate"


@dataclass(frozen=True)
class PairSettings:
    """How pairs are formed and curated. Defaults follow the paper plus light curation."""

    rule: PairRule = PairRule.CODESCALER
    min_pass_rate: float = 0.8           # pass-rate rule: the better candidate's rate at least this
    min_gap: float = 0.4                 # pass-rate rule: rate gap at least this
    include_invalid_rejected: bool = True  # responses without valid code may be rejected
    dedup: bool = True                   # keep one candidate per normalised program and side
    strip_docstrings: bool = True        # dedup ignores docstrings (comments/formatting always ignored)
    max_pairs_per_problem: int | None = 8  # None = every eligible pair
    length_balance: bool = False         # as many pairs with the longer rejected as with the shorter
    cross_problem_fraction: float = 0.0  # share of all pairs whose rejected solves another problem
    extract_mode: ExtractMode = ExtractMode.STRICT
    seed: int = 0

    def validate(self) -> None:
        """Raise ``InputError`` naming the option and the accepted range."""
        checks = [
            ("min_pass_rate", 0.0 <= self.min_pass_rate <= 1.0, "a number in [0, 1]"),
            ("min_gap", 0.0 < self.min_gap <= 1.0, "a number in (0, 1]"),
            ("cross_problem_fraction", 0.0 <= self.cross_problem_fraction < 1.0, "a number in [0, 1)"),
            ("max_pairs_per_problem", self.max_pairs_per_problem is None or self.max_pairs_per_problem >= 1,
             "a positive integer or None"),
        ]
        for name, ok, accepted in checks:
            if not ok:
                raise InputError(f"got {getattr(self, name)!r}", field=name, fix=f"use {accepted}")


def _dedup(items: list[Labelled], on: bool) -> list[Labelled]:
    if not on:
        return items
    seen: set[str] = set()
    out = []
    for item in items:
        if item.key not in seen:
            seen.add(item.key)
            out.append(item)
    return out


def eligible_pairs(labelled: list[Labelled], opts: PairSettings
              ) -> tuple[list[Labelled], list[Labelled], list[tuple[Labelled, Labelled, float]]]:
    """Positives, negatives and every eligible (chosen, rejected, margin) of one problem."""
    def may_reject(x: Labelled) -> bool:
        return x.valid or opts.include_invalid_rejected

    if opts.rule is PairRule.CODESCALER:
        pos = _dedup([x for x in labelled if x.passed and x.valid], opts.dedup)
        neg = _dedup([x for x in labelled if not x.passed and may_reject(x)], opts.dedup)
        candidates = [(c, r) for c in pos for r in neg]
    else:
        pos = _dedup([x for x in labelled if x.valid and x.rate >= opts.min_pass_rate], opts.dedup)
        pool = _dedup([x for x in labelled if may_reject(x)], opts.dedup)
        # tolerance: 0.8 - 0.4 must count as a gap of 0.4 despite float rounding
        candidates = [(c, r) for c in pos for r in pool if c.rate - r.rate >= opts.min_gap - 1e-9]
        neg = _dedup([r for _, r in candidates], True)
    eligible = [(c, r, round(c.rate - r.rate, 6)) for c, r in candidates
                if c.key != r.key and c.shown != r.shown]
    return pos, neg, eligible


def _direction(c: Labelled, r: Labelled) -> int:
    """+1 when the rejected is longer than the chosen, -1 when shorter, 0 when equal."""
    return (r.length > c.length) - (r.length < c.length)


def select_pairs(eligible: list[tuple[Labelled, Labelled, float]], opts: PairSettings,
            rng: random.Random) -> list[tuple[Labelled, Labelled, float]]:
    """Up to the cap, greedily: least-used candidates first, then (with length balance) the length
    direction that is behind within the problem, then a seeded shuffle order."""
    order = list(eligible)
    rng.shuffle(order)
    cap = opts.max_pairs_per_problem
    if cap is None or cap >= len(order):
        return order
    uses: dict[int, int] = {}
    balance = 0  # (# rejected longer) - (# rejected shorter) among the picked
    taken = [False] * len(order)
    picked = []
    for _ in range(cap):
        best_i, best_score = -1, (math.inf, math.inf, math.inf)
        for i, (c, r, _m) in enumerate(order):
            if taken[i]:
                continue
            uc, ur = uses.get(id(c), 0), uses.get(id(r), 0)
            d = _direction(c, r)
            behind = 1 if opts.length_balance and balance and d * balance > 0 else 0
            score = (max(uc, ur), behind, uc + ur)
            if score < best_score:
                best_i, best_score = i, score
        taken[best_i] = True
        c, r, m = order[best_i]
        uses[id(c)] = uses.get(id(c), 0) + 1
        uses[id(r)] = uses.get(id(r), 0) + 1
        balance += _direction(c, r)
        picked.append(order[best_i])
    return picked


def _lookup(grouped: Mapping[str, list[Labelled]]) -> dict[tuple[str, str], Labelled]:
    return {(x.candidate.task_id, x.candidate.candidate_id): x for xs in grouped.values() for x in xs}


def _pair_direction(p: Pair, table: Mapping[tuple[str, str], Labelled]) -> int:
    c = table[(p.task_id, p.chosen_id)]
    r = table[(p.task_id, p.rejected_id)]
    return _direction(c, r)


def length_stats(pairs: list[Pair], grouped: Mapping[str, list[Labelled]]) -> dict[str, Any]:
    table = _lookup(grouped)
    dirs = [_pair_direction(p, table) for p in pairs]
    longer, shorter = dirs.count(1), dirs.count(-1)
    return {"rejected_longer": longer, "rejected_shorter": shorter, "equal": dirs.count(0),
            "fraction_rejected_longer": round(longer / (longer + shorter), 4) if longer + shorter else None}


def trim_to_length_balance(pairs: list[Pair], grouped: Mapping[str, list[Labelled]],
                            rng: random.Random) -> list[Pair]:
    """Drop pairs of the majority length direction, globally, until both directions are equally common.

    Drops are taken from the problems that hold the most majority-direction pairs first (so small
    problems keep theirs), and within a problem from the end of its selection order.
    """
    table = _lookup(grouped)
    dirs = [_pair_direction(p, table) for p in pairs]
    excess = dirs.count(1) - dirs.count(-1)
    if excess == 0:
        return pairs
    major = 1 if excess > 0 else -1
    by_problem: dict[str, list[int]] = {}
    for i, d in enumerate(dirs):
        if d == major:
            by_problem.setdefault(pairs[i].task_id, []).append(i)
    drop: set[int] = set()
    heap = [(-len(idxs), rng.random(), task) for task, idxs in sorted(by_problem.items())]
    heapq.heapify(heap)
    for _ in range(abs(excess)):
        _count, tie, task = heapq.heappop(heap)
        drop.add(by_problem[task].pop())
        if by_problem[task]:
            heapq.heappush(heap, (-len(by_problem[task]), tie, task))
    return [p for i, p in enumerate(pairs) if i not in drop]


def cross_problem_pairs(pairs: list[Pair], pools: Mapping[str, list[Labelled]],
                         by_task: Mapping[str, Problem], opts: PairSettings) -> list[Pair]:
    """Pairs whose rejected is a passing program of ANOTHER problem, so that cross pairs make up
    ``cross_problem_fraction`` of all pairs. Chosen problems and programs are visited round-robin in a
    seeded order; the rejected problem is drawn at random among the others."""
    f = opts.cross_problem_fraction
    tasks = sorted(pools)
    if f <= 0 or not pairs:
        return []
    if len(tasks) < 2:
        logger.warning("cross-problem negatives need passing programs for at least 2 problems; got %d",
                       len(tasks))
        return []
    want = round(f * len(pairs) / (1 - f))
    rng = random.Random(f"{opts.seed}:cross")
    rng.shuffle(tasks)
    out: list[Pair] = []
    for k in range(want):
        at = k % len(tasks)
        task = tasks[at]
        pool = pools[task]
        chosen = pool[(k // len(tasks)) % len(pool)]
        other = tasks[(at + 1 + rng.randrange(len(tasks) - 1)) % len(tasks)]
        rejected = rng.choice(pools[other])
        if rejected.shown == chosen.shown:
            continue
        out.append(Pair(task_id=task, prompt=by_task[task].prompt, chosen=chosen.shown,
                        rejected=rejected.shown, chosen_id=chosen.candidate.candidate_id,
                        rejected_id=rejected.candidate.candidate_id, margin=1.0,
                        language=by_task[task].language, group=task))
    return out
