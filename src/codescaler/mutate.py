"""Reference solution -> synthetic near-miss candidates by AST mutation (layer L2; executes nothing).

``mutate_program`` parses a Python program, lists every place one of the ``MutationKind`` operators
applies (a "site"), and applies ONE operator per mutant to a fresh copy of the tree, then ``ast.unparse``s
it. Every mutant parses, and no two mutants (nor a mutant and the original) are equal after
``pairs.normalize_code``. Sites are drawn round-robin over kinds in a seeded order, so a handful of
mutants covers many kinds instead of ten comparison swaps.

The mutants are NOT labelled here: a mutant can be equivalent to the original (``x[i]`` vs ``x[i+1]``
in dead code) or still pass weak tests. Labels come from execution (``codescaler mutate --execute``):
failing mutants become near-miss negatives, passing ones extra positives. Type annotations are never
mutated (``List[int + 1]`` would crash at definition time and teach nothing).

The operators themselves (``MutationKind``, ``Mutant``, finding and applying sites) live in
``mutation_sites``; their public names are re-exported here.
"""

from __future__ import annotations

import ast
import logging
import random
import warnings
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from codescaler.errors import InputError
from codescaler.mutation_sites import Mutant, MutationKind, Site, apply_site, find_sites
from codescaler.pair_labels import normalize_code
from codescaler.python_source import parse_python
from codescaler.records import Candidate, Problem, Status, Verdict

__all__ = ["MutateResult", "MutateSettings", "Mutant", "MutationKind", "canonical_code", "kill_summary",
           "mutant_candidates", "mutant_ids", "mutate_problems", "mutate_program", "mutation_of", "reference_id"]

logger = logging.getLogger(__name__)

_KIND_VALUES = frozenset(k.value for k in MutationKind)


@dataclass(frozen=True)
class MutateSettings:
    """What ``codescaler mutate`` makes of each problem with a reference (resolved once by the CLI)."""

    per_problem: int = 8                     # mutants per problem, at most
    kinds: tuple[str, ...] | None = None     # MutationKind values to use; None = every kind
    include_reference: bool = True           # the reference itself is a candidate too
    limit: int | None = None                 # only the first N problems that have a reference
    seed: int = 0

    def validate(self) -> None:
        """Raise ``InputError`` naming the setting (as its CLI flag) and what is accepted."""
        if self.per_problem < 1:
            raise InputError(f"--per-problem must be >= 1, got {self.per_problem}", field="--per-problem",
                             fix="pass e.g. --per-problem 8")
        if self.limit is not None and self.limit < 1:
            raise InputError(f"--limit must be >= 1, got {self.limit}", field="--limit")
        unknown = [k for k in self.kinds or () if k not in _KIND_VALUES]
        if unknown or self.kinds == ():
            raise InputError(f"unknown mutation kind(s) {unknown or self.kinds!r}", field="--kinds",
                             fix="use some of: " + ", ".join(k.value for k in MutationKind))


@dataclass(frozen=True)
class MutateResult:
    candidates: list[Candidate]      # per problem: the reference (unless excluded), then its mutants
    descriptions: dict[str, str]     # mutant candidate_id -> what was changed, e.g. "line 7: i < n -> i <= n"
    with_reference: int              # problems with a reference (after ``limit``)
    unparsable: list[str]            # task_ids whose reference does not parse (skipped)


def mutate_problems(problems: Sequence[Problem], settings: MutateSettings | None = None,
                    path: str | None = None) -> MutateResult:
    """Reference + mutants of every problem that has a reference, per ``settings``.

    Each problem's mutants are drawn with the seed ``f"{seed}:{task_id}"``; the reference is printed like
    the mutants (``canonical_code``) so that formatting cannot tell them apart. Raises ``InputError`` for
    bad settings or when no problem has a reference (``path`` only names the file in the message).
    """
    s = settings or MutateSettings()
    s.validate()
    with_ref = [p for p in problems if p.reference and p.reference.strip()]
    if not with_ref:
        raise InputError(f"none of the {len(problems)} problems has a reference solution", path=path,
                         field="reference", fix="use a dataset with reference programs, e.g. LeetCodeDataset train")
    with_ref = with_ref[: s.limit] if s.limit is not None else with_ref
    candidates: list[Candidate] = []
    descriptions: dict[str, str] = {}
    unparsable: list[str] = []
    for problem in with_ref:
        reference = problem.reference or ""
        try:
            mutants = mutate_program(reference, seed=f"{s.seed}:{problem.task_id}", max_mutants=s.per_problem,
                                     kinds=s.kinds)
        except ValueError as err:
            unparsable.append(problem.task_id)
            logger.warning("%s: reference skipped: %s", problem.task_id, err)
            continue
        if s.include_reference:
            candidates.append(Candidate(problem.task_id, reference_id(problem.task_id),
                                        code=canonical_code(reference)))
        for candidate, mutant in zip(mutant_candidates(problem.task_id, mutants), mutants, strict=True):
            candidates.append(candidate)
            descriptions[candidate.candidate_id] = mutant.description
    return MutateResult(candidates, descriptions, len(with_ref), unparsable)


def mutate_program(
    code: str,
    seed: int | str = 0,
    max_mutants: int = 10,
    kinds: Iterable[MutationKind | str] | None = None,
) -> list[Mutant]:
    """Up to ``max_mutants`` distinct single-site mutants of ``code``, deterministic given ``seed``.

    Pass a per-problem seed (the CLI uses ``f"{seed}:{task_id}"``): with one seed for every problem, the
    kinds would be visited in the same order everywhere and the same kinds left out at small caps.

    ``kinds`` restricts the operators (default: all). Returns fewer mutants when the program has fewer
    distinct sites (possibly none). Raises ``ValueError`` if ``code`` is not valid Python or a kind is
    unknown.
    """
    allowed = list(MutationKind) if kinds is None else [MutationKind(k) for k in kinds]
    tree = _parse_or_explain(code, "cannot mutate: the program")
    sites = [s for s in find_sites(tree) if s[0] in allowed]
    rng = random.Random(seed)
    by_kind: dict[MutationKind, list[Site]] = {}
    for site in sites:
        by_kind.setdefault(site[0], []).append(site)
    order = sorted(by_kind)
    rng.shuffle(order)
    for kind in order:
        rng.shuffle(by_kind[kind])
    seen = {normalize_code(code, strip_docstrings=False)}
    mutants: list[Mutant] = []
    while len(mutants) < max_mutants and any(by_kind.values()):
        for kind in order:
            if len(mutants) >= max_mutants:
                break
            while by_kind[kind]:
                made = apply_site(code, by_kind[kind].pop())
                if made is None:
                    continue
                key = normalize_code(made.code, strip_docstrings=False)
                if key not in seen:
                    seen.add(key)
                    mutants.append(made)
                    break
    return mutants


def canonical_code(code: str) -> str:
    """``code`` printed the way every mutant is printed (``ast.unparse``: comments dropped, quotes and
    spacing normalised). Use it for the reference candidate so that an RM trained on reference-vs-mutant
    pairs cannot tell them apart by formatting. Raises ``ValueError`` if ``code`` does not parse."""
    tree = _parse_or_explain(code, "the program")
    try:
        return ast.unparse(tree)
    except (ValueError, RecursionError) as err:
        raise ValueError(f"the program cannot be printed back ({type(err).__name__})") from err


def _parse_or_explain(code: str, what: str) -> ast.Module:
    """``python_source.parse_python``, or a ValueError saying why ``code`` does not parse."""
    tree = parse_python(code)
    if tree is not None:
        return tree
    try:  # parse again only to say why (the failure path; parse_python keeps no error)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ast.parse(code)
    except SyntaxError as err:
        raise ValueError(f"{what} does not parse (line {err.lineno}: {err.msg})") from None
    except (ValueError, RecursionError, MemoryError) as err:
        raise ValueError(f"{what} does not parse ({type(err).__name__})") from None
    raise ValueError(f"{what} does not parse")


def mutant_ids(task_id: str, mutants: Sequence[Mutant]) -> list[str]:
    """Candidate ids ``{task_id}/mut-{k}-{kind}`` for a problem's mutants, in order (the kind is in the
    id for people reading files; programs read ``Candidate.mutation``)."""
    return [f"{task_id}/mut-{k}-{m.kind.value}" for k, m in enumerate(mutants)]


def reference_id(task_id: str) -> str:
    """The candidate id of a problem's reference solution: ``{task_id}/reference``."""
    return f"{task_id}/reference"


def mutant_candidates(task_id: str, mutants: Sequence[Mutant]) -> list[Candidate]:
    """A problem's mutants as candidates (``code`` and ``mutation`` set), ids from ``mutant_ids``."""
    return [Candidate(task_id, cid, code=m.code, mutation=m.kind.value)
            for cid, m in zip(mutant_ids(task_id, mutants), mutants, strict=True)]


def mutation_of(candidate: Candidate) -> str | None:
    """The mutation kind of a candidate: its ``mutation`` field, else (files written before the field
    existed) the kind named in a ``{task_id}/mut-{k}-{kind}`` id; None for other candidates."""
    if candidate.mutation is not None:
        return candidate.mutation
    head, sep, tail = candidate.candidate_id.rpartition("/mut-")
    if not sep or not head:
        return None
    kind = tail.partition("-")[2]
    return kind if kind in _KIND_VALUES else None


def kill_summary(verdicts: Iterable[Verdict], candidates: Iterable[Candidate]) -> dict[str, Any]:
    """Kill rate of mutants (any status but passed), counted only on problems whose reference passes
    (a failing reference means broken tests or harness, which would inflate the rate). A problem
    without a reference verdict counts all its mutants. Verdicts of candidates that are neither a
    reference nor a mutant are ignored."""
    kinds = {(c.task_id, c.candidate_id): mutation_of(c) for c in candidates}
    verdicts = list(verdicts)
    refs = {v.task_id: v.status is Status.PASSED for v in verdicts if v.candidate_id == reference_id(v.task_id)}
    by_kind: dict[str, list[int]] = {}
    statuses: Counter[str] = Counter()
    for v in verdicts:
        kind = kinds.get((v.task_id, v.candidate_id))
        if kind is None or (refs and not refs.get(v.task_id, False)):
            continue
        entry = by_kind.setdefault(kind, [0, 0])
        entry[0] += int(v.status is not Status.PASSED)
        entry[1] += 1
        statuses[v.status.value] += 1
    killed = sum(k for k, _ in by_kind.values())
    counted = sum(n for _, n in by_kind.values())
    return {
        "references": len(refs), "references_passed": sum(refs.values()),
        "mutants_counted": counted, "mutants_killed": killed,
        "kill_rate": round(killed / counted, 4) if counted else None,
        "kill_rate_by_kind": {k: {"killed": a, "total": n, "rate": round(a / n, 4)}
                              for k, (a, n) in sorted(by_kind.items())},
        "mutant_statuses": dict(statuses),
    }
