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
from codescaler.pairs import normalize_code
from codescaler.python_source import parse_python
from codescaler.records import Candidate, Problem, Status, StrEnum, Verdict

logger = logging.getLogger(__name__)


class MutationKind(StrEnum):
    COMPARE = "compare"              # < <=, > >=, == !=, in / not in, is / is not
    ARITH = "arith"                  # + -, * //, / *, % //, << >>, & |, ^ |, ** *
    RANGE_OFF_BY_ONE = "range"       # range(a, b) -> range(a, b + 1) / b - 1
    INDEX_OFF_BY_ONE = "index"       # x[i] -> x[i + 1] / x[i - 1]
    CONSTANT = "constant"            # 0 <-> 1, n -> n + 1 / n - 1
    NEGATE = "negate"                # if c -> if not c (also while, ternary)
    DROP_STATEMENT = "drop"          # remove one statement (pass if it was the only one)
    DROP_ELSE = "drop_else"          # remove an else / elif branch
    SWAP_ARGS = "swap_args"          # f(a, b) -> f(b, a)
    WRONG_RETURN = "wrong_return"    # return x -> return y (another local name)
    BOOLOP = "boolop"                # and <-> or
    BOOL_CONSTANT = "bool"           # True <-> False


_KIND_VALUES = frozenset(k.value for k in MutationKind)


@dataclass(frozen=True)
class Mutant:
    code: str
    kind: MutationKind
    description: str  # e.g. "line 7: i < n -> i <= n"


_COMPARE_SWAP: dict[type, type] = {
    ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt, ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq, ast.In: ast.NotIn, ast.NotIn: ast.In, ast.Is: ast.IsNot, ast.IsNot: ast.Is,
}
_ARITH_SWAP: dict[type, type] = {
    ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.FloorDiv, ast.FloorDiv: ast.Mult, ast.Div: ast.Mult,
    ast.Mod: ast.FloorDiv, ast.LShift: ast.RShift, ast.RShift: ast.LShift, ast.BitAnd: ast.BitOr,
    ast.BitOr: ast.BitAnd, ast.BitXor: ast.BitOr, ast.Pow: ast.Mult,
}
_BODY_FIELDS = ("body", "orelse", "finalbody")
# Swapping the arguments of these changes nothing: such mutants would only be equivalent positives.
_SYMMETRIC_CALLS = frozenset({"min", "max", "gcd", "lcm", "hypot", "add", "mul", "and_", "or_", "xor", "eq", "ne",
                              "isclose", "union", "intersection", "symmetric_difference"})

# A site: (kind, index of the node in ast.walk order, parameter for the operator)
_Site = tuple[MutationKind, int, object]


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
    sites = [s for s in _find_sites(tree) if s[0] in allowed]
    rng = random.Random(seed)
    by_kind: dict[MutationKind, list[_Site]] = {}
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
                made = _apply(code, by_kind[kind].pop())
                if made is None:
                    continue
                key = normalize_code(made.code, strip_docstrings=False)
                if key not in seen:
                    seen.add(key)
                    mutants.append(made)
                    break
    return mutants


def _annotation_ids(tree: ast.AST) -> set[int]:
    """ids of every node inside a type annotation (never mutated)."""
    out: set[int] = set()
    for node in ast.walk(tree):
        parts: list[ast.AST | None] = []
        if isinstance(node, ast.arg | ast.AnnAssign):
            parts.append(node.annotation)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            parts.append(node.returns)
        for part in parts:
            if part is not None:
                out.update(id(n) for n in ast.walk(part))
    return out


def _function_names(tree: ast.AST) -> dict[int, list[str]]:
    """For each ``return`` node id: the other local names of its innermost function (args + assigned)."""
    out: dict[int, list[str]] = {}

    def visit(func: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        names: set[str] = {a.arg for a in func.args.args + func.args.kwonlyargs + func.args.posonlyargs}
        returns: list[ast.Return] = []
        stack: list[ast.AST] = list(func.body)
        while stack:
            node = stack.pop()
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                visit(node)
                names.add(node.name)
                continue
            if isinstance(node, ast.Lambda | ast.ClassDef):
                continue
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
            if isinstance(node, ast.Return):
                returns.append(node)
            stack.extend(ast.iter_child_nodes(node))
        names.discard("self")
        names.discard("cls")
        for ret in returns:
            out[id(ret)] = sorted(names)

    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            visit(node)  # nested functions are visited twice; the innermost visit wins (later write)
    return out


def _find_sites(tree: ast.Module) -> list[_Site]:
    skip = _annotation_ids(tree)
    local_names = _function_names(tree)
    sites: list[_Site] = []
    for idx, node in enumerate(ast.walk(tree)):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Compare):
            sites.extend((MutationKind.COMPARE, idx, j) for j, op in enumerate(node.ops)
                         if type(op) in _COMPARE_SWAP)
        elif isinstance(node, ast.BinOp | ast.AugAssign) and type(node.op) in _ARITH_SWAP:
            sites.append((MutationKind.ARITH, idx, None))
        elif isinstance(node, ast.BoolOp):
            sites.append((MutationKind.BOOLOP, idx, None))
        elif isinstance(node, ast.Constant):
            if isinstance(node.value, bool):
                sites.append((MutationKind.BOOL_CONSTANT, idx, None))
            elif isinstance(node.value, int):
                deltas = [1 - 2 * node.value] if node.value in (0, 1) else [1, -1]  # 0<->1, else n+-1
                sites.extend((MutationKind.CONSTANT, idx, d) for d in deltas)
        elif isinstance(node, ast.Subscript) and not isinstance(node.slice, ast.Slice | ast.Tuple) \
                and not (isinstance(node.slice, ast.Constant) and not isinstance(node.slice.value, int)):
            sites.extend((MutationKind.INDEX_OFF_BY_ONE, idx, d) for d in (1, -1))
        elif isinstance(node, ast.If | ast.While | ast.IfExp):
            sites.append((MutationKind.NEGATE, idx, None))
        elif isinstance(node, ast.Return) and isinstance(node.value, ast.Name):
            others = [n for n in local_names.get(id(node), []) if n != node.value.id]
            sites.extend((MutationKind.WRONG_RETURN, idx, n) for n in others[:4])
        if isinstance(node, ast.Call):
            positional = [a for a in node.args if not isinstance(a, ast.Starred)]
            if isinstance(node.func, ast.Name) and node.func.id == "range" and len(positional) == len(node.args):
                sites.extend((MutationKind.RANGE_OFF_BY_ONE, idx, (j, d))
                             for j in range(min(len(node.args), 2)) for d in (1, -1))
            if len(positional) == len(node.args) >= 2 and _callee(node) not in _SYMMETRIC_CALLS:
                sites.extend((MutationKind.SWAP_ARGS, idx, j) for j in range(len(node.args) - 1)
                             if ast.dump(node.args[j]) != ast.dump(node.args[j + 1]))
        if isinstance(node, ast.If) and node.orelse:
            sites.append((MutationKind.DROP_ELSE, idx, None))
        for name in _BODY_FIELDS:
            body = getattr(node, name, None)
            if not isinstance(body, list):
                continue
            for j, stmt in enumerate(body):
                droppable = not isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef
                                           | ast.Import | ast.ImportFrom | ast.Pass)
                is_docstring = j == 0 and isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant)
                if droppable and not is_docstring:
                    sites.append((MutationKind.DROP_STATEMENT, idx, (name, j)))
    return sites


def _callee(call: ast.Call) -> str:
    func = call.func
    return func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""


def _plus(node: ast.expr, delta: int) -> ast.expr:
    if isinstance(node, ast.Constant) and isinstance(node.value, int) and not isinstance(node.value, bool):
        return ast.Constant(node.value + delta)
    return ast.BinOp(node, ast.Add() if delta > 0 else ast.Sub(), ast.Constant(abs(delta)))


def _show(node: ast.AST) -> str:
    text = " ".join(ast.unparse(node).split())
    return text if len(text) <= 60 else text[:57] + "..."


def _apply(code: str, site: _Site) -> Mutant | None:
    """Apply one site to a fresh parse of ``code``; None when the result is not valid Python."""
    kind, idx, param = site
    tree = parse_python(code)
    if tree is None:  # cannot happen: the site was found in a parse of the same code
        return None
    node = list(ast.walk(tree))[idx]
    line = getattr(node, "lineno", 0)
    before = _show(node)
    after: str | None = None
    if kind is MutationKind.COMPARE and isinstance(node, ast.Compare) and isinstance(param, int):
        node.ops[param] = _COMPARE_SWAP[type(node.ops[param])]()
    elif kind is MutationKind.ARITH and isinstance(node, ast.BinOp | ast.AugAssign):
        node.op = _ARITH_SWAP[type(node.op)]()
    elif kind is MutationKind.BOOLOP and isinstance(node, ast.BoolOp):
        node.op = ast.Or() if isinstance(node.op, ast.And) else ast.And()
    elif kind is MutationKind.BOOL_CONSTANT and isinstance(node, ast.Constant):
        node.value = not node.value
    elif kind is MutationKind.CONSTANT and isinstance(node, ast.Constant) and isinstance(node.value, int) \
            and isinstance(param, int):
        node.value = node.value + param
    elif kind is MutationKind.INDEX_OFF_BY_ONE and isinstance(node, ast.Subscript) and isinstance(param, int):
        node.slice = _plus(node.slice, param)
    elif kind is MutationKind.NEGATE and isinstance(node, ast.If | ast.While | ast.IfExp):
        test = node.test
        if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
            node.test = test.operand
        else:
            node.test = ast.UnaryOp(ast.Not(), test)
    elif kind is MutationKind.WRONG_RETURN and isinstance(node, ast.Return) and isinstance(param, str):
        node.value = ast.Name(param, ast.Load())
    elif kind is MutationKind.RANGE_OFF_BY_ONE and isinstance(node, ast.Call) and isinstance(param, tuple):
        j, d = param
        node.args[j] = _plus(node.args[j], d)
    elif kind is MutationKind.SWAP_ARGS and isinstance(node, ast.Call) and isinstance(param, int):
        node.args[param], node.args[param + 1] = node.args[param + 1], node.args[param]
    elif kind is MutationKind.DROP_ELSE and isinstance(node, ast.If):
        before = f"if {_show(node.test)}: ... else: ..."
        after = f"if {_show(node.test)}: ... (else removed)"
        node.orelse = []
    elif kind is MutationKind.DROP_STATEMENT and isinstance(param, tuple):
        name, j = param
        body = getattr(node, name)
        before, line, after = _show(body[j]), getattr(body[j], "lineno", line), "(removed)"
        del body[j]
        if not body and name == "body":
            body.append(ast.Pass())
    else:  # not a site of this kind: cannot happen for sites from _find_sites
        return None
    ast.fix_missing_locations(tree)
    try:
        mutated = ast.unparse(tree)
        if after is None:
            after = _show(node)
    except (ValueError, RecursionError):
        return None
    if parse_python(mutated) is None:
        return None
    return Mutant(mutated, kind, f"line {line}: {before} -> {after}")


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
