"""OpenRLHF remote reward model support (layer L3): split a templated query into problem + response.

OpenRLHF's ``--remote_rm_url http://host:port/get_reward`` posts ``{"query": [...], "prompts": [...],
"labels": [...]}``: each query is the policy's prompt + response rendered in the POLICY's chat template
(often followed by pad/eos tokens), each prompt the templated prompt alone. The CodeScaler RM needs the
bare problem statement and the bare response, because it re-formats them with ITS OWN template (the
policy's and the RM's tokenizers may differ). ``split_query`` recovers them.

Rules (first that applies):
1. A prompt is given and the query starts with it: response = the rest of the query; problem = the last
   user turn parsed out of the prompt (or the whole prompt when it has no known template markers).
2. Otherwise the query itself is parsed: the last assistant header of a known template (ChatML/Qwen
   ``<|im_start|>assistant``, Llama-3 ``<|start_header_id|>assistant<|end_header_id|>``, DeepSeek
   ``<｜Assistant｜>``, Llama-2/Mistral ``[/INST]``, plain ``Assistant:``) splits prompt from response, and
   the problem is the last user turn of the prompt part.
3. Nothing matches: ``InputError`` telling the caller to send ``prompts``.
Trailing end-of-turn and padding tokens (``<|im_end|>``, ``<|eot_id|>``, ``<|endoftext|>``, ``</s>``...)
are stripped from the response; they are template, not answer.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from codescaler.errors import InputError

# Tokens that end a turn or pad a sequence in common templates; stripped from the end of a response.
END_TOKENS: tuple[str, ...] = (
    "<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|end_of_text|>", "<|end|>", "</s>",
    "<｜end▁of▁sentence｜>", "<|EOT|>", "<eos>", "<end_of_turn>", "<pad>", "<|pad|>",
)


# Every scan below is linear in the text: a header is found with str.rfind or with a regex anchored at a
# line start whose leading-blank run cannot cross a newline, a turn's end with str.find, and what follows a
# header is matched once at one position. The old patterns (``(?:^|\n)\s*Assistant:`` tried at every
# newline, a lazy body followed by ``\s*`` and a lookahead) were quadratic: 65,536 newlines took 18 s.
_BLANKS = re.compile(r"\s*")
_ROLE_LINE = re.compile(r"[^\n]*\n?")      # the rest of a ChatML role line ("assistant", "user name=...")
_PLAIN_TAIL = re.compile(r"[ \t]*\n?")
_NOTHING = re.compile(r"")


@dataclass(frozen=True)
class _Header:
    """Where a turn starts: a literal marker, or (``line`` set) a regex matched at line starts only."""

    literal: str = ""
    line: re.Pattern[str] | None = None
    tail: re.Pattern[str] = _NOTHING   # what follows the marker and still belongs to the header
    words: tuple[str, ...] = ()        # with ``line``: a text holding none of these has no header (fast path)

    def last(self, text: str) -> tuple[int, int] | None:
        """(start, end) of the last header in ``text``, ``end`` past its tail; None if there is none."""
        if self.line is None:
            start = text.rfind(self.literal)
            if start < 0:
                return None
            marker_end = start + len(self.literal)
        else:
            found = None
            if any(word in text for word in self.words):
                for match in self.line.finditer(text):
                    found = match
            if found is None:
                return None
            start, marker_end = found.start(), found.end()
        tail = self.tail.match(text, marker_end)
        return start, (tail.end() if tail else marker_end)

    def first(self, text: str, pos: int) -> int:
        """Start of the first header at or after ``pos`` (``len(text)`` if none)."""
        if self.line is None:
            found = text.find(self.literal, pos)
            return found if found >= 0 else len(text)
        match = self.line.search(text, pos) if any(word in text for word in self.words) else None
        return match.start() if match else len(text)


def _plain(*words: str) -> _Header:
    # A line whose first non-blank text is one of ``words`` and a colon. [^\S\n] (blank but not newline)
    # keeps each attempt inside one line.
    return _Header(line=re.compile(rf"(?m)^[^\S\n]*(?:{'|'.join(map(re.escape, words))}):"), tail=_PLAIN_TAIL,
                   words=words)


@dataclass(frozen=True)
class _Template:
    name: str
    assistant: _Header                 # opens the assistant turn (the last one is used)
    user: _Header                      # opens a user turn (the last one is used)
    user_ends: tuple[_Header, ...]     # the first of these after a user header ends its turn
    strip: bool = False                # strip the user content (templates whose separators are blanks)
    system_block: bool = False         # a leading <<SYS>>...<</SYS>> block in the user turn is not the problem


_PLAIN_ASSISTANT = _plain("Assistant", "ASSISTANT", "### Response")
_TEMPLATES: tuple[_Template, ...] = (
    _Template("chatml", _Header("<|im_start|>assistant", tail=_ROLE_LINE), _Header("<|im_start|>user", tail=_ROLE_LINE),
              (_Header("<|im_end|>"), _Header("<|im_start|>"))),
    _Template("llama3", _Header("<|start_header_id|>assistant<|end_header_id|>", tail=_BLANKS),
              _Header("<|start_header_id|>user<|end_header_id|>", tail=_BLANKS), (_Header("<|eot_id|>"),)),
    _Template("deepseek", _Header("<｜Assistant｜>"), _Header("<｜User｜>"),
              (_Header("<｜Assistant｜>"), _Header("<｜end▁of▁sentence｜>"))),
    _Template("inst", _Header("[/INST]", tail=_BLANKS), _Header("[INST]", tail=_BLANKS), (_Header("[/INST]"),),
              strip=True, system_block=True),
    _Template("plain", _PLAIN_ASSISTANT, _plain("User", "USER", "Human", "### Instruction"), (_PLAIN_ASSISTANT,),
              strip=True),
)


def strip_end_tokens(text: str) -> str:
    """Remove trailing end-of-turn/padding tokens and the whitespace around them (repeatedly).

    Linear in the text: it walks back from the end and copies once (slicing per token was quadratic in
    the number of trailing tokens)."""
    end = len(text)
    while True:
        while end and text[end - 1].isspace():
            end -= 1
        for token in END_TOKENS:
            if text.endswith(token, 0, end):
                end -= len(token)
                break
        else:
            return text[:end]


def _user_turn(template: _Template, text: str) -> str | None:
    header = template.user.last(text)
    if header is None:
        return None
    begin = header[1]
    # A turn ends at the first terminator after its header; a line-start terminator must start on a later
    # line than the content (the content may itself begin at a line start).
    end = min(term.first(text, begin + (term.line is not None)) for term in template.user_ends)
    content = text[begin:max(begin, end)]
    if template.system_block and content.startswith("<<SYS>>"):
        close = content.find("<</SYS>>")
        if close >= 0:
            content = content[close + len("<</SYS>>"):]
    return content.strip() if template.strip else content


def _last_user_turn(prompt_text: str) -> str | None:
    for template in _TEMPLATES:
        turn = _user_turn(template, prompt_text)
        if turn is not None:
            # Kept verbatim where the template keeps it (ChatML does not trim), so /get_reward scores
            # exactly what /score would for the same problem text.
            return turn
    return None


def split_query(query: str, prompt: str | None = None, *, index: int | None = None) -> tuple[str, str]:
    """(problem statement, response) of one OpenRLHF query; see the module docstring for the rules.

    ``index`` only names the query in the error. Raises ``InputError`` when the query matches no known
    template and no usable prompt was given.
    """
    where = f"query[{index}]" if index is not None else "query"
    if prompt and query.startswith(prompt):
        response = strip_end_tokens(query[len(prompt):])
        problem = _last_user_turn(prompt)
        return (problem if problem is not None else prompt.strip()), response
    for template in _TEMPLATES:
        header = template.assistant.last(query)
        if header is None:
            continue
        head, response = query[: header[0]], query[header[1]:]
        problem = _last_user_turn(head)
        if problem is None:
            problem = strip_end_tokens(head).strip()
        return problem, strip_end_tokens(response)
    raise InputError(
        f"{where} matches no known chat template (ChatML, Llama-3, DeepSeek, [INST], 'Assistant:') and no "
        "prompt it starts with was given",
        field=where,
        fix="send OpenRLHF's 'prompts' list (the templated prompt of each query), or use POST /score "
        "with separate prompt and response",
    )


def split_queries(queries: Sequence[str], prompts: Sequence[str] | None = None) -> tuple[list[str], list[str]]:
    """``split_query`` over a batch: returns (problems, responses).

    ``prompts`` may be None (queries are parsed alone); raises ``InputError`` when its length differs
    from ``queries`` or a query cannot be split.
    """
    if prompts is not None and len(prompts) != len(queries):
        raise InputError(f"{len(queries)} queries but {len(prompts)} prompts", field="prompts",
                         fix="send one prompt per query, or omit prompts")
    problems: list[str] = []
    responses: list[str] = []
    for i, query in enumerate(queries):
        problem, response = split_query(query, prompts[i] if prompts is not None else None, index=i)
        problems.append(problem)
        responses.append(response)
    return problems, responses
