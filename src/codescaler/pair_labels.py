"""One labelled candidate as the pairing rules see it (layer L1: pure, no I/O).

``label_candidate`` turns a candidate and its verdict into a ``Labelled``: the text a pair shows
(``shown_text``: the raw response, else the code in a fence), the dedup identity (``normalize_code`` of
the program, else the whitespace-normalised response), the length the RM sees, the pass rate and whether
the candidate has valid code under the extraction mode.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass

from codescaler.extract import extract_code
from codescaler.python_source import parse_python
from codescaler.records import Candidate, ExtractMode, Language, Problem, Status, Verdict


@dataclass
class Labelled:
    """A candidate with a verdict, reduced to what the pairing rules compare."""

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
        return normalize_whitespace(code)
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
        return normalize_whitespace(code)


def normalize_whitespace(text: str) -> str:
    """Lines stripped, blank lines dropped, runs of blanks collapsed."""
    lines = (" ".join(line.split()) for line in text.split("\n"))
    return "\n".join(line for line in lines if line)


def shown_text(candidate: Candidate, language: Language) -> str:
    """The response a pair carries: the raw response, else the code in a fenced block."""
    if candidate.response is not None:
        return candidate.response
    return f"```{language.value}\n{(candidate.code or '').rstrip()}\n```"


def label_candidate(cand: Candidate, verdict: Verdict, problem: Problem, extract_mode: ExtractMode,
                    strip_docstrings: bool) -> Labelled:
    """One candidate as pairing sees it: its shown text, dedup key, length, pass rate and validity.

    The code is the candidate's ``code``, else extracted from its response under ``extract_mode`` (not when
    the verdict is already ``NO_CODE``); ``strip_docstrings`` feeds ``normalize_code`` for the dedup key.
    """
    code: str | None = None
    if cand.code is not None:
        code = cand.code
    elif verdict.status is not Status.NO_CODE:  # the executor already found no code: skip extraction
        extraction = extract_code(cand.response or "", language=problem.language.value,
                                  mode=extract_mode.value, entry_point=problem.entry_point)
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
        key = "code:" + (normalize_code(code, strip_docstrings)
                         if problem.language is Language.PYTHON else normalize_whitespace(code))
    else:
        key = "text:" + normalize_whitespace(shown)
    length = len(code) if code is not None else len(shown)
    return Labelled(cand, shown, key, length, rate, verdict.status is Status.PASSED, valid)
