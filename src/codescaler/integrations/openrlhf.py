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


@dataclass(frozen=True)
class _Template:
    name: str
    assistant: re.Pattern[str]   # the header that opens the assistant turn (last match is used)
    user: re.Pattern[str]        # group 1 = content of a user turn
    strip: bool = False          # strip the user content (templates whose separators are whitespace)


_TEMPLATES: tuple[_Template, ...] = (
    _Template("chatml", re.compile(r"<\|im_start\|>assistant[^\n]*\n?"),
              re.compile(r"<\|im_start\|>user[^\n]*\n(.*?)(?:<\|im_end\|>|<\|im_start\|>|\Z)", re.S)),
    _Template("llama3", re.compile(r"<\|start_header_id\|>assistant<\|end_header_id\|>\s*"),
              re.compile(r"<\|start_header_id\|>user<\|end_header_id\|>\s*(.*?)(?:<\|eot_id\|>|\Z)", re.S)),
    _Template("deepseek", re.compile(r"<｜Assistant｜>"),
              re.compile(r"<｜User｜>(.*?)(?=<｜Assistant｜>|<｜end▁of▁sentence｜>|\Z)", re.S)),
    _Template("inst", re.compile(r"\[/INST\]\s*"),
              re.compile(r"\[INST\]\s*(?:<<SYS>>.*?<</SYS>>\s*)?(.*?)\s*(?=\[/INST\]|\Z)", re.S), strip=True),
    _Template("plain", re.compile(r"(?:^|\n)\s*(?:Assistant|ASSISTANT|### Response):[ \t]*\n?"),
              re.compile(r"(?:^|\n)\s*(?:User|USER|Human|### Instruction):[ \t]*\n?(.*?)"
                         r"(?=\n\s*(?:Assistant|ASSISTANT|### Response):|\Z)", re.S), strip=True),
)


def strip_end_tokens(text: str) -> str:
    """Remove trailing end-of-turn/padding tokens and whitespace around them (repeatedly)."""
    out = text.rstrip()
    changed = True
    while changed:
        changed = False
        for token in END_TOKENS:
            if out.endswith(token):
                out = out[: -len(token)].rstrip()
                changed = True
    return out


def _last_user_turn(prompt_text: str) -> str | None:
    for template in _TEMPLATES:
        turns = template.user.findall(prompt_text)
        if turns:
            # Kept verbatim where the template keeps it (ChatML does not trim), so /get_reward scores
            # exactly what /score would for the same problem text.
            return str(turns[-1]).strip() if template.strip else str(turns[-1])
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
        headers = list(template.assistant.finditer(query))
        if not headers:
            continue
        last = headers[-1]
        head, response = query[: last.start()], query[last.end():]
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
