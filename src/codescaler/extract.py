"""Response text -> code, or no code (layer L1: pure, no I/O).

``extract_code`` reads the program out of a model response in one of two modes (docs/extraction.md has
the exact rules and the measured rates on real responses):

- strict, the paper's rule (RL rewards, RM training and scoring): exactly one fenced block, closed,
  non-empty, and syntactically valid in the problem's language; anything else is no code.
- lenient, best effort (evaluation, weaker models): the best fenced block that parses, an unclosed final
  block that parses, or unfenced code; then, for Python with an ``entry_point``, top-level junk (example
  calls, prints, asserts, ``if __name__ == "__main__"``) is trimmed away.

``is_valid_syntax`` decides validity: Python with ``ast.parse``; C++, Java, JavaScript, TypeScript, Go
and Rust with tree-sitter (a tree with any ERROR or MISSING node is invalid). Neither ever raises for any
input text, and the fence scan is linear in the response length (it walks lines, no regexes).
"""

from __future__ import annotations

import logging
import textwrap
import threading
from dataclasses import dataclass
from typing import Any

from codescaler.python_source import entry_name, parse_python, strip_blank_lines, trim_python_junk
from codescaler.records import Candidate, Extraction, ExtractMode, ExtractStatus, Language, Problem, ScoreItem

logger = logging.getLogger(__name__)

# Lenient mode parses at most this many fenced blocks (best-ranked first), so that a response with
# 100k fences costs a bounded number of parses.
MAX_LENIENT_BLOCKS = 64
# Lenient search for unfenced code: at most this many prose-free runs of lines are parsed.
MAX_UNFENCED_RUNS = 8

_TREE_SITTER_NAMES: dict[Language, str] = {
    Language.CPP: "cpp",
    Language.JAVA: "java",
    Language.JAVASCRIPT: "javascript",
    Language.TYPESCRIPT: "typescript",
    Language.GO: "go",
    Language.RUST: "rust",
}
# Characters at least one of which any real program contains; keeps one-word prose ("Sure") from
# counting as unfenced Python or JavaScript code.
_CODE_CHARS = frozenset("(){}[]=;:")


@dataclass(frozen=True)
class Block:
    """One fenced block: ``tag`` is the info string's first word, lowercased ("" when none)."""

    tag: str
    body: str
    closed: bool
    index: int


def extract_code(
    response: str,
    language: Language | str = "python",
    mode: ExtractMode | str = "strict",
    entry_point: str | None = None,
) -> Extraction:
    """Read the code out of one model response.

    ``language`` is the problem's language (a name or alias, see ``Language.parse``); ``mode`` is
    ``strict`` or ``lenient``; ``entry_point`` (a function name, or ``Solution().twoSum``) is used only
    by lenient mode to rank blocks and trim Python top-level junk. Returns ``Extraction(code, status)``
    with ``code`` None unless ``status`` is OK. Raises ``ValueError`` only for an unknown language or
    mode; any response text, however malformed or large, gives an Extraction.
    """
    lang = Language.parse(language)
    chosen_mode = ExtractMode(mode)
    text = normalise_newlines(response)
    if chosen_mode is ExtractMode.STRICT:
        return _extract_strict(text, lang)
    return _extract_lenient(text, lang, entry_point)


def item_extraction(item: ScoreItem, mode: ExtractMode | str = "strict") -> Extraction:
    """The program an RM scores for ``item`` and why: ``Extraction(program, OK)``, or no code and the reason.

    The one rule every scoring path uses (Scorer, best-of-N, pairwise evaluation) and the executor runs
    (with ``candidate_item``): ``is_code`` text is the program without leading/trailing blank lines (as a
    fenced block's body), unless blank (``EMPTY``); otherwise ``extract_code`` with the item's language
    and entry point. Raises ``ValueError`` for an unknown language or mode.
    """
    if item.is_code:
        # The same trim a fenced block's body gets, so a program scores the same given as code (evalplus
        # samples, bon candidates) or fenced in a response: the RM sees every token, a trailing "\n" too.
        code = strip_blank_lines(normalise_newlines(item.text))
        return Extraction(code, ExtractStatus.OK) if code.strip() else Extraction(None, ExtractStatus.EMPTY)
    return extract_code(item.text, Language.parse(item.language), mode, entry_point=item.entry_point)


def item_program(item: ScoreItem, mode: ExtractMode | str = "strict") -> str | None:
    """The program of ``item_extraction``, or None when it has none (invalid: reward 0)."""
    found = item_extraction(item, mode)
    return found.code if found.valid else None


def candidate_item(problem: Problem, candidate: Candidate) -> ScoreItem:
    """A candidate as a score item: its ``code`` as is, else its response; with neither, blank code (no
    program). With ``item_extraction``, the one candidate -> program rule of scoring and execution."""
    if candidate.code is not None or candidate.response is None:
        return ScoreItem(problem.prompt, candidate.code or "", problem.language, is_code=True)
    return ScoreItem(problem.prompt, candidate.response, problem.language, entry_point=problem.entry_point)


def normalise_newlines(text: str) -> str:
    """CRLF and lone CR become LF; nothing else changes (U+2028 is not a line break here)."""
    if "\r" not in text:
        return text
    return text.replace("\r\n", "\n").replace("\r", "\n")


def scan_blocks(text: str, limit: int | None = None) -> list[Block]:
    """Fenced blocks of ``text`` (LF newlines) in order; the last one may be unclosed.

    ``limit`` stops the scan once that many blocks are found (strict mode needs at most two).

    An opening fence is a line whose first non-blank characters are 3 or more backticks followed by an
    info string without backticks (so inline ```code``` on one line is not a fence). The block closes
    at the next line made of at least as many backticks and optional blanks. Any indentation is
    allowed; body lines lose up to the opening fence's indentation. ``~~~`` fences are not fences.
    """
    blocks: list[Block] = []
    pos = 0
    while limit is None or len(blocks) < limit:
        fence = _next_fence_line(text, pos)
        if fence is None:
            break
        start, at, end = fence
        line = text[at:end]
        ticks = len(line) - len(line.lstrip("`"))
        info = line[ticks:]
        pos = end + 1
        if "`" in info:
            continue
        words = info.split()
        closed, body_end = False, len(text)
        search = pos
        while (close := _next_fence_line(text, search)) is not None:
            close_start, close_at, close_end = close
            run = text[close_at:close_end]
            count = len(run) - len(run.lstrip("`"))
            if count >= ticks and not run[count:].strip():
                closed, body_end = True, close_start - 1  # the body stops before the closing line's LF
                break
            search = close_end + 1
        body = text[end + 1 : body_end] if body_end > end else ""
        indent = at - start
        if indent and body:
            body = "\n".join(_unindent(body_line, indent) for body_line in body.split("\n"))
        tag = words[0].lower() if words else ""
        blocks.append(Block(tag=tag, body=strip_blank_lines(body), closed=closed, index=len(blocks)))
        pos = close_end + 1 if closed else len(text) + 1
    return blocks


def _next_fence_line(text: str, pos: int) -> tuple[int, int, int] | None:
    """(line start, first backtick, line end) of the next line from ``pos`` (a line start) whose first
    non-blank characters are three backticks. Uses str.find, so each character is looked at O(1) times."""
    while True:
        at = text.find("```", pos)
        if at < 0:
            return None
        start = text.rfind("\n", pos, at) + 1 or pos
        end = text.find("\n", at)
        end = len(text) if end < 0 else end
        if not text[start:at].strip(" \t"):
            return start, at, end
        pos = end + 1  # a fence must start its line: nothing later on this line can open one


def _unindent(line: str, indent: int) -> str:
    inner = line.lstrip(" \t")
    return line[min(indent, len(line) - len(inner)) :]


def is_valid_syntax(code: str, language: Language | str = "python") -> bool:
    """True when ``code`` parses in ``language``. Never raises for any text (only for a bad language).

    Python: ``ast.parse`` of this interpreter's grammar; SyntaxError, null bytes, unencodable
    surrogates and pathological nesting (RecursionError/MemoryError) all mean invalid. Other languages:
    tree-sitter; a tree with an ERROR or MISSING node (``root.has_error``) means invalid. Code made only
    of comments parses (True) although extraction calls it ``empty``.
    """
    return judge_code(code, Language.parse(language)) is not ExtractStatus.SYNTAX_ERROR


def judge_code(code: str, language: Language) -> ExtractStatus:
    """OK, SYNTAX_ERROR, or EMPTY when the code parses but holds nothing but comments and blanks."""
    if language is Language.PYTHON:
        tree = parse_python(code)
        if tree is None:
            return ExtractStatus.SYNTAX_ERROR
        return ExtractStatus.OK if tree.body else ExtractStatus.EMPTY
    try:
        data = code.encode("utf-8", "surrogatepass")
        root = _parser(_TREE_SITTER_NAMES[language]).parse(data).root_node
    except (ValueError, RecursionError, MemoryError):
        return ExtractStatus.SYNTAX_ERROR
    if root.has_error:
        return ExtractStatus.SYNTAX_ERROR
    if all("comment" in child.type for child in root.named_children):
        return ExtractStatus.EMPTY
    return ExtractStatus.OK


# -- strict ----------------------------------------------------------------------------------------


def _extract_strict(text: str, lang: Language) -> Extraction:
    blocks = scan_blocks(text, limit=2)
    if not blocks:
        return Extraction(None, ExtractStatus.NO_BLOCK)
    if len(blocks) > 1:
        return Extraction(None, ExtractStatus.MULTIPLE_BLOCKS)
    block = blocks[0]
    if not block.closed:
        return Extraction(None, ExtractStatus.UNCLOSED_BLOCK)
    if not block.body.strip():
        return Extraction(None, ExtractStatus.EMPTY)
    status = judge_code(block.body, lang)
    return Extraction(block.body if status is ExtractStatus.OK else None, status)


# -- lenient ---------------------------------------------------------------------------------------


def _extract_lenient(text: str, lang: Language, entry_point: str | None) -> Extraction:
    blocks = scan_blocks(text)
    if blocks:
        found = _best_block(blocks, lang, entry_point)
    else:
        code = _unfenced_code(text, lang)
        found = (
            Extraction(code, ExtractStatus.OK)
            if code is not None
            else Extraction(None, ExtractStatus.NO_BLOCK)
        )
    if found.code is not None and lang is Language.PYTHON and entry_point:
        return Extraction(trim_python_junk(found.code, entry_point), ExtractStatus.OK)
    return found


def _best_block(blocks: list[Block], lang: Language, entry_point: str | None) -> Extraction:
    """The best-ranked block that parses; the status of the failure when none does."""
    candidates = [b for b in blocks if b.body.strip()]
    if not candidates:
        return Extraction(None, ExtractStatus.EMPTY)
    name = entry_name(entry_point)

    def rank(block: Block) -> tuple[bool, bool, int, int]:
        return (
            _mentions_definition(block.body, name, lang),
            _tag_fits(block.tag, lang),
            len(block.body.strip()),
            block.index,
        )

    failures: set[tuple[bool, ExtractStatus]] = set()
    for block in sorted(candidates, key=rank, reverse=True)[:MAX_LENIENT_BLOCKS]:
        code, status = _judge_variants(block.body, lang)
        if code is not None:
            return Extraction(code, ExtractStatus.OK)
        failures.add((block.closed, status))
    if (True, ExtractStatus.SYNTAX_ERROR) in failures:
        return Extraction(None, ExtractStatus.SYNTAX_ERROR)
    if (False, ExtractStatus.SYNTAX_ERROR) in failures:
        return Extraction(None, ExtractStatus.UNCLOSED_BLOCK)
    return Extraction(None, ExtractStatus.EMPTY)


def _judge_variants(code: str, lang: Language) -> tuple[str | None, ExtractStatus]:
    """(code, OK) if it is valid, else (Python) its dedented form if that is; else (None, why not)."""
    status = judge_code(code, lang)
    if status is ExtractStatus.OK:
        return code, status
    if lang is Language.PYTHON and status is ExtractStatus.SYNTAX_ERROR:
        dedented = textwrap.dedent(code)
        if dedented != code and judge_code(dedented, lang) is ExtractStatus.OK:
            return dedented, ExtractStatus.OK
    return None, status


def _unfenced_code(text: str, lang: Language) -> str | None:
    """Code in a response without fences: the whole text if it parses, else the longest prose-free run.

    A run is a maximal stretch of lines without a prose line (see ``_is_prose``), blank lines allowed,
    trimmed of blank edge lines. Runs are tried longest first, at most ``MAX_UNFENCED_RUNS`` of them;
    they are disjoint, so all the parsing together reads each character at most twice.
    """
    whole = strip_blank_lines(text)
    edges = whole.partition("\n")[0], whole.rpartition("\n")[2]
    if (
        _looks_like_code(whole)
        and not any(map(_is_prose, edges))
        and judge_code(whole, lang) is ExtractStatus.OK
    ):
        return whole
    spans: list[tuple[int, int]] = []  # [start, end) of the prose-free runs
    run_start = pos = 0
    while pos <= len(text):
        end = text.find("\n", pos)
        end = len(text) if end < 0 else end
        if _is_prose(text[pos:end]):
            spans.append((run_start, pos))
            run_start = end + 1
        pos = end + 1
    spans.append((run_start, len(text)))
    spans.sort(key=lambda span: span[1] - span[0], reverse=True)
    attempts = 0
    for a, b in spans:
        run = strip_blank_lines(text[a:b])
        if run == whole or not _looks_like_code(run):
            continue
        if judge_code(run, lang) is ExtractStatus.OK:
            return run
        attempts += 1
        if attempts >= MAX_UNFENCED_RUNS:
            break
    return None


def _is_prose(line: str) -> bool:
    """A markdown sentence, heading or list item, never a line of code outside comments or strings.

    Prose: a ``**bold**`` or ``##`` heading line; or a list item (``-``/``+`` at any indentation,
    ``*`` unindented, or ``2.``/``2)``) or an unindented line starting with a capital letter, that
    either ends with ``:`` (unindented lines only) or has three plain words in a row ("Here is the").
    Indented capitalised lines are not prose: they are docstring or comment text inside code.
    """
    stripped = line.strip()
    if not stripped:
        return False
    if stripped.startswith(("**", "## ", "### ", "#### ")):
        return True
    words = stripped.split()
    first = words[0]
    indented = line[0].isspace()
    if (
        first in ("-", "+")
        or (first == "*" and not indented)
        or (first[:-1].isdigit() and first[-1:] in ".)")
    ):
        words = words[1:]
    elif indented or not first[0].isupper():
        return False
    elif stripped.endswith(":"):
        return True
    run = 0
    for word in words:
        run = run + 1 if word.rstrip(",.:;!?").isalpha() else 0
        if run >= 3:
            return True
    return False


def _looks_like_code(code: str) -> bool:
    return bool(code.strip()) and not _CODE_CHARS.isdisjoint(code)


def _tag_fits(tag: str, lang: Language) -> bool:
    """An empty tag or one naming the problem's language; ``text``, ``bash`` or another language do not."""
    if not tag:
        return True
    try:
        return Language.parse(tag) is lang
    except ValueError:
        return False


def _mentions_definition(body: str, name: str | None, lang: Language) -> bool:
    """Cheap textual test that a block defines the entry point (ranking only; parsing decides validity)."""
    if name is None:
        return False
    if lang is Language.PYTHON:
        return f"def {name}" in body or f"class {name}" in body
    return name in body


# -- helpers ---------------------------------------------------------------------------------------


_PARSERS = threading.local()  # tree-sitter parsers are not shared between threads


def _parser(name: str) -> Any:
    """A cached tree-sitter parser for ``name`` (created on first use, one per thread)."""
    cache: dict[str, Any] | None = getattr(_PARSERS, "cache", None)
    if cache is None:
        cache = _PARSERS.cache = {}
    if name not in cache:
        from tree_sitter_language_pack import get_parser  # heavy native import: only when needed

        cache[name] = get_parser(name)  # type: ignore[arg-type]
    return cache[name]
