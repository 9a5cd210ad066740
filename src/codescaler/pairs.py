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
"""

from __future__ import annotations

import ast
import heapq
import logging
import math
import random
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from codescaler.errors import InputError
from codescaler.extract import extract_code
from codescaler.python_source import parse_python
from codescaler.records import Candidate, ExtractMode, Language, Pair, Problem, Status, StrEnum, Verdict

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


@dataclass(frozen=True)
class PairResult:
    pairs: list[Pair]
    manifest: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Labelled:
    candidate: Candidate
    shown: str        # the text the pair carries
    key: str          # normalised program (or response, without valid code): the dedup identity
    length: int       # length the RM sees: the code, or the response when there is no code
    rate: float       # pass rate in [0, 1]
    passed: bool      # Status.PASSED
    valid: bool       # has valid code under the extraction mode


def normalize_code(code: str, strip_docstrings: bool = True) -> str:
    """Canonical text of a Python program: parsed and unparsed, so comments and formatting vanish.

    With ``strip_docstrings`` the docstrings of modules, classes and functions are removed as well. Text
    that does not parse (or other languages) falls back to whitespace normalisation: lines stripped,
    blank lines dropped, runs of blanks collapsed.
    """
    tree = parse_python(code)
    if tree is None:  # not Python, or too deep to parse: identity by text is still correct
        return _normalize_whitespace(code)
    if strip_docstrings:
        for node in ast.walk(tree):
            if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                body = node.body
                if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                        and isinstance(body[0].value.value, str):
                    node.body = body[1:] or [ast.Pass()]
    try:
        return ast.unparse(tree)
    except (ValueError, RecursionError):  # pathological trees; identity by text is still correct
        return _normalize_whitespace(code)


def _normalize_whitespace(text: str) -> str:
    lines = (" ".join(line.split()) for line in text.split("\n"))
    return "\n".join(line for line in lines if line)


def shown_text(candidate: Candidate, language: Language) -> str:
    """The response a pair carries: the raw response, else the code in a fenced block."""
    if candidate.response is not None:
        return candidate.response
    return f"```{language.value}\n{(candidate.code or '').rstrip()}\n```"


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
    grouped: dict[str, list[_Labelled]] = {t: [] for t in by_task}
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
            grouped[cand.task_id].append(_label(cand, verdict, by_task[cand.task_id], opts))

    if progress is not None and len(by_id) % 64:
        progress(len(by_id) % 64)
    pairs: list[Pair] = []
    chosen_pools: dict[str, list[_Labelled]] = {}
    for task_id, labelled in grouped.items():
        problem = by_task[task_id]
        pos, neg, eligible = _eligible(labelled, opts)
        stats = {"labelled": len(labelled), "positives": len(pos), "negatives": len(neg),
                 "eligible_pairs": len(eligible)}
        rng = random.Random(f"{opts.seed}:{task_id}")
        chosen = _select(eligible, opts, rng)
        stats["pairs"] = len(chosen)
        per_problem[task_id] = stats
        pairs.extend(_make_pair(problem, c, r, m) for c, r, m in chosen)
        if pos:
            chosen_pools[task_id] = pos

    before = _length_stats(pairs, grouped)
    if opts.length_balance:
        pairs = _trim_to_length_balance(pairs, grouped, random.Random(f"{opts.seed}:length"))
        for task_id in per_problem:
            per_problem[task_id]["pairs"] = 0
        for p in pairs:
            per_problem[p.task_id]["pairs"] += 1
    after = _length_stats(pairs, grouped)  # within-problem pairs only: cross pairs compare two problems
    cross = _cross_problem_pairs(pairs, chosen_pools, by_task, opts)
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


def _label(cand: Candidate, verdict: Verdict, problem: Problem, opts: PairSettings) -> _Labelled:
    code: str | None = None
    if cand.code is not None:
        code = cand.code
    elif verdict.status is not Status.NO_CODE:  # the executor already found no code: skip extraction
        extraction = extract_code(cand.response or "", language=problem.language.value,
                                  mode=opts.extract_mode.value, entry_point=problem.entry_point)
        code = extraction.code if extraction.valid else None
    valid = code is not None and verdict.status is not Status.NO_CODE
    if verdict.status is Status.PASSED:
        rate = 1.0
    elif verdict.total:
        rate = max(0.0, min(1.0, (verdict.passed or 0) / verdict.total))
    else:
        rate = 0.0
    shown = shown_text(cand, problem.language)
    if code is not None and valid:
        key = "code:" + (normalize_code(code, opts.strip_docstrings)
                         if problem.language is Language.PYTHON else _normalize_whitespace(code))
    else:
        key = "text:" + _normalize_whitespace(shown)
    length = len(code) if code is not None else len(shown)
    return _Labelled(cand, shown, key, length, rate, verdict.status is Status.PASSED, valid)


def _dedup(items: list[_Labelled], on: bool) -> list[_Labelled]:
    if not on:
        return items
    seen: set[str] = set()
    out = []
    for item in items:
        if item.key not in seen:
            seen.add(item.key)
            out.append(item)
    return out


def _eligible(labelled: list[_Labelled], opts: PairSettings
              ) -> tuple[list[_Labelled], list[_Labelled], list[tuple[_Labelled, _Labelled, float]]]:
    """Positives, negatives and every eligible (chosen, rejected, margin) of one problem."""
    def may_reject(x: _Labelled) -> bool:
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


def _direction(c: _Labelled, r: _Labelled) -> int:
    """+1 when the rejected is longer than the chosen, -1 when shorter, 0 when equal."""
    return (r.length > c.length) - (r.length < c.length)


def _select(eligible: list[tuple[_Labelled, _Labelled, float]], opts: PairSettings,
            rng: random.Random) -> list[tuple[_Labelled, _Labelled, float]]:
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


def _lookup(grouped: Mapping[str, list[_Labelled]]) -> dict[tuple[str, str], _Labelled]:
    return {(x.candidate.task_id, x.candidate.candidate_id): x for xs in grouped.values() for x in xs}


def _pair_direction(p: Pair, table: Mapping[tuple[str, str], _Labelled]) -> int:
    c = table[(p.task_id, p.chosen_id)]
    r = table[(p.task_id, p.rejected_id)]
    return _direction(c, r)


def _length_stats(pairs: list[Pair], grouped: Mapping[str, list[_Labelled]]) -> dict[str, Any]:
    table = _lookup(grouped)
    dirs = [_pair_direction(p, table) for p in pairs]
    longer, shorter = dirs.count(1), dirs.count(-1)
    return {"rejected_longer": longer, "rejected_shorter": shorter, "equal": dirs.count(0),
            "fraction_rejected_longer": round(longer / (longer + shorter), 4) if longer + shorter else None}


def _trim_to_length_balance(pairs: list[Pair], grouped: Mapping[str, list[_Labelled]],
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


def _cross_problem_pairs(pairs: list[Pair], pools: Mapping[str, list[_Labelled]],
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


def _make_pair(problem: Problem, c: _Labelled, r: _Labelled, margin: float) -> Pair:
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
