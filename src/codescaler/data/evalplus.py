"""HumanEval+ and MBPP+ (EvalPlus releases): tests from base+plus inputs and the reference's outputs.

The releases ship inputs, not outputs: expected outputs come from RUNNING the trusted canonical
solution, in a child Python process per problem with a timeout (never in our process). Results are
cached as JSON under ``cache_dir / evalplus / <name>-<sha256 of the input file>.json``, so only the
first load pays (HumanEval+ runs 123K inputs). The test source embeds inputs and outputs as literals
in a ``check(candidate)`` that compares with tolerance for floats.
"""

from __future__ import annotations

import ast
import json
import logging
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from codescaler.data.artifacts import atomic_write_json, file_sha256, read_jsonl
from codescaler.data.benchmarks import asserts_as_check
from codescaler.data.locate import require_file
from codescaler.records import Language, Problem, TestSuite

logger = logging.getLogger(__name__)

EVALPLUS_FILES = {"humaneval-plus": "humanevalplus_release/HumanEvalPlus.jsonl.gz",
                  "mbpp-plus": "mbppplus_release/MbppPlus.jsonl.gz"}
MAX_TEST_CHARS = 1_000_000   # per problem: drop the largest inputs beyond this so tests stay loadable
FLOAT_ATOL = 1e-6            # EvalPlus compares floats with this tolerance when the task gives none
CACHE_ENV = "CODESCALER_CACHE"
RUNNER_VERSION = 2
# MBPP+ functions whose reference returns a set converted to a list/tuple: its order depends on the hash
# seed, so (as EvalPlus does for these) outputs are compared as sets.
SET_EQUAL_FUNCTIONS = frozenset({"similar_elements", "find_char_long", "common_in_nested_lists", "extract_singly",
                                 "larg_nnum", "intersection_array", "find_dissimilar", "Diff"})           # part of the cache key: bump when _RUNNER computes outputs differently
SECONDS_PER_INPUT = 5.0      # a reference call slower than this gives no expected output for that input
MAX_OUTPUT_CHARS = 100_000   # an expected output longer than this (as repr) is not embedded
REFERENCE_MEMORY_BYTES = 2 << 30

# Runs in the child: exec the reference, call it on each input under a per-input alarm and a memory cap,
# print one JSON line per input with the repr of the output (null when it raised, ran past the alarm,
# or its repr is too long or not a literal). Some plus inputs are explosive (combinations of 20 colours).
_RUNNER = r"""
import ast, copy, json, resource, signal, sys
job = json.loads(sys.stdin.read())
limit = job["memory_bytes"]
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
class Slow(Exception):
    pass
def alarm(signum, frame):
    raise Slow()
signal.signal(signal.SIGALRM, alarm)
ns = {"__name__": "__reference__"}
exec(compile(job["code"], "<reference>", "exec"), ns)
fn = ns[job["entry_point"]]
for args in job["inputs"]:
    text, ok = None, False
    try:
        signal.setitimer(signal.ITIMER_REAL, job["seconds_per_input"])
        out = fn(*copy.deepcopy(args))
        signal.setitimer(signal.ITIMER_REAL, 0)
        if isinstance(out, dict) and type(out) is not dict:  # Counter, defaultdict: compare as a dict
            out = dict(out)
        text = repr(out)
        ok = len(text) <= job["max_output_chars"] and ast.literal_eval(text) == out
    except BaseException:  # raised, too slow, too big, or no literal repr: no expected output
        signal.setitimer(signal.ITIMER_REAL, 0)
        ok = False
    print(json.dumps(text if ok else None), flush=True)
"""

_CHECK = '''
import copy as _cs_copy
import math as _cs_math

# repr() of infinite/NaN floats in the cases below reads back through these names.
inf = float("inf")
nan = float("nan")
_CS_ATOL = {atol!r}
_CS_UNORDERED = {unordered!r}


def _cs_equal(got, want):
    if _CS_UNORDERED:
        try:
            return set(got) == set(want)
        except TypeError:
            return False
    if isinstance(want, float) or isinstance(got, float):
        try:
            return _cs_math.isclose(got, want, rel_tol=0.0, abs_tol=_CS_ATOL) or got == want
        except TypeError:
            return False
    if isinstance(want, (list, tuple)):
        return (type(got) is type(want) and len(got) == len(want)
                and all(_cs_equal(g, w) for g, w in zip(got, want)))
    return got == want


_CS_CASES = [
{cases}
]


def check(candidate):
    for args, want in _CS_CASES:
        got = candidate(*_cs_copy.deepcopy(args))
        assert _cs_equal(got, want), f"input {{args!r:.200}}: expected {{want!r:.200}}, got {{got!r:.200}}"
'''


def default_cache_dir() -> Path:
    """``$CODESCALER_CACHE`` or ``~/.cache/codescaler`` (read when called, not at import)."""
    env = os.environ.get(CACHE_ENV)
    return Path(env) if env else Path.home() / ".cache" / "codescaler"



def run_reference(code: str, entry_point: str, inputs: list, timeout: float) -> list[str | None]:
    """Expected outputs (``repr`` strings) of a trusted reference on each input, in a child process.

    ``None`` for an input whose call raised, took over ``SECONDS_PER_INPUT``, whose output repr is over
    ``MAX_OUTPUT_CHARS`` or not a literal, or that was not reached before ``timeout`` seconds for the
    whole problem (outputs already printed are kept).
    """
    job = json.dumps({"code": code, "entry_point": entry_point, "inputs": inputs,
                      "seconds_per_input": SECONDS_PER_INPUT, "max_output_chars": MAX_OUTPUT_CHARS,
                      "memory_bytes": REFERENCE_MEMORY_BYTES})
    with tempfile.TemporaryFile("w+", encoding="utf-8") as out:
        proc = subprocess.Popen([sys.executable, "-I", "-c", _RUNNER], stdin=subprocess.PIPE, stdout=out,
                                stderr=subprocess.DEVNULL, text=True)
        try:
            proc.communicate(job, timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            logger.warning("reference %s timed out after %.0fs", entry_point, timeout)
        out.seek(0)
        results: list[str | None] = [json.loads(line) for line in out.read().split("\n") if line.strip()]
    return results + [None] * (len(inputs) - len(results))


def _inputs(row: dict) -> list:
    # Mbpp/793 ships plus_input as {} (empty): anything that is not a list counts as no inputs.
    return [x for key in ("base_input", "plus_input") if isinstance(row.get(key), list) for x in row[key]]


def _reference_code(name: str, row: dict) -> str:
    if name == "humaneval-plus":
        return row["prompt"] + row["canonical_solution"]
    return row["canonical_solution"]


def expected_outputs(name: str, path: Path, rows: list[dict], cache_dir: Path, *, timeout: float = 300.0,
                     workers: int = 2, progress: Callable[[int, int], None] | None = None) -> dict[str, list]:
    """``{task_id: [repr | None per input]}`` for base+plus inputs, from the cache or by running references."""
    cache = cache_dir / "evalplus" / f"{name}-{file_sha256(path)[:16]}-r{RUNNER_VERSION}.json"
    if cache.is_file():
        try:
            cached = json.loads(cache.read_text(encoding="utf-8"))
            if set(cached) == {r["task_id"] for r in rows}:
                return cached
        except (OSError, json.JSONDecodeError):
            logger.warning("ignoring unreadable cache %s", cache)
    logger.info("%s: computing expected outputs of %d references (cached afterwards in %s)", name, len(rows), cache)

    def one(row: dict) -> tuple[str, list[str | None]]:
        inputs = _inputs(row)
        return row["task_id"], run_reference(_reference_code(name, row), row["entry_point"], inputs, timeout)

    result: dict[str, list] = {}
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for done, (task_id, outputs) in enumerate(pool.map(one, rows), 1):
            result[task_id] = outputs
            if progress:
                progress(done, len(rows))
    atomic_write_json(cache, result, indent=None)
    return result


def build_check(inputs: list, outputs: list[str | None], atol: float, unordered: bool = False
                ) -> tuple[str, int, int]:
    """Functional test source embedding (input, expected) cases; returns (source, kept, dropped).

    Inputs without an expected output are dropped; so are the largest inputs once the embedded cases
    exceed ``MAX_TEST_CHARS`` (logged by the caller through the returned counts).
    """
    cases = [(repr(tuple(args)), want) for args, want in zip(inputs, outputs, strict=True) if want is not None]
    dropped = len(inputs) - len(cases)
    if sum(len(a) + len(w) for a, w in cases) > MAX_TEST_CHARS:
        order = sorted(range(len(cases)), key=lambda i: len(cases[i][0]) + len(cases[i][1]))
        keep, total = set(), 0
        for i in order:
            size = len(cases[i][0]) + len(cases[i][1])
            if total + size > MAX_TEST_CHARS:
                break
            keep.add(i)
            total += size
        dropped += len(cases) - len(keep)
        cases = [c for i, c in enumerate(cases) if i in keep]
    body = "\n".join(f"    ({a}, {w})," for a, w in cases)
    source = _CHECK.format(atol=max(float(atol or 0.0), FLOAT_ATOL), unordered=unordered, cases=body)
    return source, len(cases), dropped


def load_evalplus(data_dir: Path, name: str, cache_dir: Path | None = None, *, timeout: float = 300.0,
                  workers: int = 2, progress: Callable[[int, int], None] | None = None) -> list[Problem]:
    """HumanEval+ (164) or MBPP+ (378) problems with tests over base+plus inputs (see module docstring).
    ``progress(done, total)`` is called as reference solutions finish (not at all when cached)."""
    path = require_file(data_dir, EVALPLUS_FILES[name])
    rows = [row for _, row in read_jsonl(path)]
    outputs = expected_outputs(name, path, rows, cache_dir or default_cache_dir(), timeout=timeout, workers=workers,
                               progress=progress)
    problems, dropped_total = [], 0
    for row in rows:
        inputs = _inputs(row)
        unordered = name == "mbpp-plus" and row["entry_point"] in SET_EQUAL_FUNCTIONS
        tests, kept, dropped = build_check(inputs, outputs[row["task_id"]], row.get("atol") or 0.0, unordered)
        dropped_total += dropped
        if kept == 0:
            logger.warning("%s %s: no input has an expected output; skipped", name, row["task_id"])
            continue
        visible = None
        if name == "mbpp-plus":
            first = [a for a in str(row.get("assertion", "")).split("\n") if a.strip().startswith("assert")][:1]
            visible = TestSuite(functional=asserts_as_check(first, row["entry_point"])) if first else None
        reference = _reference_code(name, row)
        problems.append(Problem(
            task_id=row["task_id"], prompt=row["prompt"], language=Language.PYTHON,
            tests=TestSuite(functional=tests), entry_point=row["entry_point"], visible_tests=visible,
            reference=reference, source=f"{name}/test" if name == "humaneval-plus" else f"{name}/train"))
    if dropped_total:
        logger.info("%s: %d inputs left out (no expected output, or over the size cap)", name, dropped_total)
    return problems


def parse_case_literals(source: str) -> int:
    """How many cases a ``build_check`` source embeds (for checks and manifests)."""
    tree = ast.parse(source)
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "_CS_CASES":
            return len(node.value.elts) if isinstance(node.value, ast.List) else 0
    return 0
