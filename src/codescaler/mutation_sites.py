"""The mutation operators: where each applies in a Python AST, and applying one (layer L2; executes nothing).

``MutationKind`` names the operators; ``find_sites`` lists every site of a parsed program (type
annotations excluded: ``List[int + 1]`` would crash at definition time and teach nothing), and
``apply_site`` applies ONE site to a fresh parse and prints it back (``ast.unparse``), returning ``None``
when the result is not valid Python. Choosing sites and keeping mutants distinct is ``mutate``'s job.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass

from codescaler.python_source import parse_python
from codescaler.records import StrEnum


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


@dataclass(frozen=True)
class Mutant:
    """One single-site mutant: its program, operator and what changed."""

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
Site = tuple[MutationKind, int, object]


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


def find_sites(tree: ast.Module) -> list[Site]:
    """Every place in ``tree`` where one operator applies (annotations excluded), in ``ast.walk`` order."""
    skip = _annotation_ids(tree)
    local_names = _function_names(tree)
    sites: list[Site] = []
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


def apply_site(code: str, site: Site) -> Mutant | None:
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
    else:  # not a site of this kind: cannot happen for sites from find_sites
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
