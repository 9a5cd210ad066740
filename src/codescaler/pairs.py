"""Labelled candidates -> preference pairs, by explicit seeded rules (layer L1: pure, no I/O).

Inputs are records: ``Problem``s, ``Candidate``s (a raw ``response`` and/or ready ``code``) and the
``Verdict``s that execution gave them. Output: ``Pair``s in TRL's prompt/chosen/rejected form plus a
JSON-ready manifest. Everything is deterministic given ``PairSettings.seed`` (per-problem random streams
are derived from ``(seed, task_id)``, so one problem's pairs do not depend on the others).

What a pair holds: ``chosen``/``rejected`` are the RESPONSES as the RM will see them: the candidate's raw
``response`` when it has one, else its ``code`` wrapped in a fenced block of the problem's language.
``prompt`` is the problem statement. ``margin`` is the pass-rate gap between chosen and rejected
(codescaler rule: ``1 - rejected pass rate``). Note: TRL's RewardTrainer subtracts a ``margin`` column
from the score difference when a dataset has one; drop it for the paper's plain Bradley–Terry loss.

Rules (``PairRule``)
- ``codescaler`` (the paper's): chosen passes every test (``Status.PASSED``); rejected fails any (failed,
  timeout, memory, crashed, output limit, and, with ``include_invalid_rejected``, no_code: the paper pairs
  raw rollouts, so responses without valid code are negatives too); same problem.
- ``pass-rate``: rate = passed/total (``PASSED`` counts 1.0; unknown counts give 0.0 for any other
  status); chosen rate >= ``min_pass_rate``, rate gap >= ``min_gap``.
Verdicts with ``Status.ERROR`` (our harness's fault) label nothing. A chosen response must contain valid
code under ``extract_mode`` (strict by default: the RM would give it reward 0 otherwise).

Curation (see ``PairSettings``): dedup of programs equal after ``normalize_code``; a per-problem cap
filled by a seeded greedy that uses every candidate as evenly as possible; optional length balancing;
optional cross-problem negatives. Pairs whose two programs normalise to the same text (a flaky program
labelled both ways) or whose shown texts are identical are never emitted.

This module checks and indexes the inputs and assembles the result and manifest; the rules and curation
live in ``pair_rules`` (``PairRule``, ``PairSettings``), the per-candidate labelling in ``pair_labels``
(``normalize_code``, ``shown_text``). Their public names are re-exported here.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from codescaler.errors import InputError
from codescaler.pair_labels import Labelled, label_candidate, normalize_code, shown_text
from codescaler.pair_rules import (
    PairRule,
    PairSettings,
    cross_problem_pairs,
    eligible_pairs,
    length_stats,
    select_pairs,
    trim_to_length_balance,
)
from codescaler.records import Candidate, Pair, Problem, Status, StrEnum, Verdict

__all__ = ["PairResult", "PairRule", "PairSettings", "build_pairs", "normalize_code", "shown_text"]


@dataclass(frozen=True)
class PairResult:
    pairs: list[Pair]
    manifest: dict[str, Any] = field(default_factory=dict)


def build_pairs(
    problems: Iterable[Problem],
    candidates: Iterable[Candidate],
    verdicts: Iterable[Verdict],
    settings: PairSettings | None = None,
    input_hashes: Mapping[str, str] | None = None,
    paths: Mapping[str, str] | None = None,
    progress: Callable[[int], object] | None = None,
) -> PairResult:
    """Form and curate pairs. See the module docstring for the rules.

    ``input_hashes`` (e.g. sha256 of the input files) are copied into the manifest; ``paths`` (keys
    ``problems``, ``candidates``, ``verdicts``) only name files in error messages. Raises ``InputError``
    for empty inputs, duplicate ids, candidates of unknown problems, verdicts of unknown candidates and
    bad settings. No pairs is not an error here: the manifest's ``empty_reason`` says why.
    ``progress(k)``: called as candidates are labelled (extracted, normalised), k at a time, for a bar.
    """
    opts = settings or PairSettings()
    opts.validate()
    where = dict(paths or {})
    problem_list = list(problems)
    candidate_list = list(candidates)
    verdict_list = list(verdicts)
    for name, items in (("problems", problem_list), ("candidates", candidate_list), ("verdicts", verdict_list)):
        if not items:
            raise InputError(f"no {name} given", path=where.get(name), fix=f"pass a non-empty {name} file")
    by_task = _index_problems(problem_list, where.get("problems"))
    by_id = _index_candidates(candidate_list, by_task, where.get("candidates"))
    labels, duplicates = _index_verdicts(verdict_list, by_id, where.get("verdicts"))

    per_problem: dict[str, dict[str, int]] = {}
    grouped: dict[str, list[Labelled]] = {t: [] for t in by_task}
    counts = {"candidates": len(by_id), "unlabelled": 0, "harness_errors": 0, "duplicate_verdicts": duplicates}
    for done, (key, cand) in enumerate(by_id.items(), 1):
        if progress is not None and done % 64 == 0:
            progress(64)
        verdict = labels.get(key)
        if verdict is None:
            counts["unlabelled"] += 1
        elif verdict.status is Status.ERROR:
            counts["harness_errors"] += 1
        else:
            grouped[cand.task_id].append(label_candidate(cand, verdict, by_task[cand.task_id], opts.extract_mode,
                                                               opts.strip_docstrings))

    if progress is not None and len(by_id) % 64:
        progress(len(by_id) % 64)
    pairs: list[Pair] = []
    chosen_pools: dict[str, list[Labelled]] = {}
    for task_id, labelled in grouped.items():
        problem = by_task[task_id]
        pos, neg, eligible = eligible_pairs(labelled, opts)
        stats = {"labelled": len(labelled), "positives": len(pos), "negatives": len(neg),
                 "eligible_pairs": len(eligible)}
        rng = random.Random(f"{opts.seed}:{task_id}")
        chosen = select_pairs(eligible, opts, rng)
        stats["pairs"] = len(chosen)
        per_problem[task_id] = stats
        pairs.extend(_make_pair(problem, c, r, m) for c, r, m in chosen)
        if pos:
            chosen_pools[task_id] = pos

    before = length_stats(pairs, grouped)
    if opts.length_balance:
        pairs = trim_to_length_balance(pairs, grouped, random.Random(f"{opts.seed}:length"))
        for task_id in per_problem:
            per_problem[task_id]["pairs"] = 0
        for p in pairs:
            per_problem[p.task_id]["pairs"] += 1
    after = length_stats(pairs, grouped)  # within-problem pairs only: cross pairs compare two problems
    cross = cross_problem_pairs(pairs, chosen_pools, by_task, opts)
    for task_id in per_problem:
        per_problem[task_id]["cross_pairs"] = 0
    for p in cross:
        per_problem[p.task_id]["cross_pairs"] += 1
    pairs = _order_by_problem(pairs + cross, list(by_task))

    manifest: dict[str, Any] = {
        "rule": opts.rule.value,
        "options": {k: (v.value if isinstance(v, StrEnum) else v) for k, v in asdict(opts).items()},
        "seed": opts.seed,
        "input_hashes": dict(input_hashes or {}),
        "totals": {**counts, "problems": len(by_task), "pairs": len(pairs), "cross_problem_pairs": len(cross),
                   "problems_with_pairs": sum(1 for s in per_problem.values() if s["pairs"] or s["cross_pairs"])},
        "length_balance": {"before": before, "after": after},
        "per_problem": per_problem,
    }
    if not pairs:
        manifest["empty_reason"] = _empty_reason(per_problem, counts, opts)
    return PairResult(pairs, manifest)


def _index_problems(problems: list[Problem], path: str | None) -> dict[str, Problem]:
    out: dict[str, Problem] = {}
    for i, p in enumerate(problems, 1):
        if p.task_id in out:
            raise InputError(f"duplicate task_id {p.task_id!r} (problem number {i})", path=path,
                             field="task_id", fix="give every problem a unique task_id")
        out[p.task_id] = p
    return out


def _index_candidates(candidates: list[Candidate], by_task: Mapping[str, Problem],
                      path: str | None) -> dict[tuple[str, str], Candidate]:
    out: dict[tuple[str, str], Candidate] = {}
    for i, c in enumerate(candidates, 1):
        if c.task_id not in by_task:
            raise InputError(f"candidate number {i} ({c.candidate_id!r}) belongs to unknown task_id "
                             f"{c.task_id!r}", path=path, field="task_id",
                             fix="pass the problems file these candidates were sampled for")
        if (c.task_id, c.candidate_id) in out:
            raise InputError(f"duplicate candidate_id {c.candidate_id!r} for task {c.task_id!r}", path=path,
                             field="candidate_id", fix="give every candidate of a problem a unique id")
        if c.response is None and c.code is None:
            raise InputError(f"candidate {c.candidate_id!r} has neither response nor code", path=path,
                             field="response", fix="give each candidate a response or a code field")
        out[(c.task_id, c.candidate_id)] = c
    return out


def _index_verdicts(verdicts: list[Verdict], by_id: Mapping[tuple[str, str], Candidate],
                    path: str | None) -> tuple[dict[tuple[str, str], Verdict], int]:
    out: dict[tuple[str, str], Verdict] = {}
    duplicates = 0
    for i, v in enumerate(verdicts, 1):
        key = (v.task_id, v.candidate_id)
        if key not in by_id:
            raise InputError(f"verdict number {i} is for unknown candidate {v.candidate_id!r} of task "
                             f"{v.task_id!r}", path=path, field="candidate_id",
                             fix="pass the candidates file these verdicts were computed from")
        if key in out:
            duplicates += 1  # a resumed run may repeat a job; the last verdict wins
        out[key] = v
    return out, duplicates


def _make_pair(problem: Problem, c: Labelled, r: Labelled, margin: float) -> Pair:
    return Pair(task_id=problem.task_id, prompt=problem.prompt, chosen=c.shown, rejected=r.shown,
                chosen_id=c.candidate.candidate_id, rejected_id=r.candidate.candidate_id, margin=margin,
                language=problem.language, group=problem.task_id)


def _order_by_problem(pairs: list[Pair], task_order: list[str]) -> list[Pair]:
    rank = {t: i for i, t in enumerate(task_order)}
    return sorted(pairs, key=lambda p: rank[p.task_id])  # stable: keeps selection order within a problem


def _empty_reason(per_problem: Mapping[str, Mapping[str, int]], counts: Mapping[str, int],
                  opts: PairSettings) -> str:
    only_pos = sum(1 for s in per_problem.values() if s["positives"] and not s["negatives"])
    only_neg = sum(1 for s in per_problem.values() if s["negatives"] and not s["positives"])
    none = sum(1 for s in per_problem.values() if not s["labelled"])
    better = "passes all tests" if opts.rule is PairRule.CODESCALER else \
        f"has pass rate >= {opts.min_pass_rate}"
    worse = "fails" if opts.rule is PairRule.CODESCALER else f"is at least {opts.min_gap} lower"
    return (f"no problem has both a candidate that {better} and one that {worse} "
            f"({only_pos} problems with only positives, {only_neg} with only negatives, {none} with no "
            f"usable verdicts; {counts['unlabelled']} candidates without verdicts, "
            f"{counts['harness_errors']} harness errors)")
