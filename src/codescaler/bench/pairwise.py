"""Pairwise reward-model accuracy: preference pairs, HumanEvalPack (hep-*), RM-Bench code (layer L3).

Contract
--------
- A scorer is any ``ScoreFn``: ``(prompts, texts) -> raw scores`` (e.g. ``Scorer.score_codes``); the
  text is what the RM's assistant turn holds. Everything here is measured through that one function,
  so a trained RM and the no-training baselines are compared on identical inputs.
- ``input_mode``: ``code`` (default; the paper's RM input) extracts the code from each response with
  ``extract_mode`` and scores ONLY the code; a response without valid code is invalid and loses to any
  valid one (validity-preserving shaping), and two invalid responses tie. ``response`` scores the whole
  response text (the usual RewardBench/RM-Bench protocol, for RMs trained on full responses); a blank
  text is invalid in both modes. Extraction and scoring go through ``codescaler.scoring``, the path the
  Scorer and best-of-N use, so the same items get the same scores everywhere.
- Accuracy: a pair counts 1 when chosen scores higher, 0 when lower, 0.5 on a tie (equal scores or
  both invalid). Reported with ``n`` and per group (language or subset).
- HumanEvalPack (RewardBench hep-* style): prompt = ``instruction``, chosen = ``declaration +
  canonical_solution``, rejected = ``declaration + buggy_solution``, already code (no extraction).
- RM-Bench code: each prompt has ``chosen[3]``/``rejected[3]`` in increasing style (0 concise, 1 detailed,
  2 detailed with Markdown). Matrix ``M[i][j]`` = accuracy of chosen style i vs rejected style j.
  As in RM-Bench's official ``compute_accuracy``: hard = upper triangle (i < j: chosen LESS styled than
  rejected, style bias works against the RM), normal = diagonal, easy = lower triangle (i > j),
  average = mean of all 9 cells. (RM-Bench counts ties as losses; we count them half, as everywhere.)
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from codescaler.errors import InputError
from codescaler.extract import item_program
from codescaler.records import ExtractMode, Language, Pair, Score, ScoreItem
from codescaler.scoring import ScoreFn, score_items

logger = logging.getLogger(__name__)

INPUT_MODES = ("code", "response")
HEP_LANGUAGES = ("python", "js", "java", "go", "cpp", "rust")
_HEP_TO_LANGUAGE = {"python": Language.PYTHON, "js": Language.JAVASCRIPT, "java": Language.JAVA,
                    "go": Language.GO, "cpp": Language.CPP, "rust": Language.RUST}
_FENCE = {Language.PYTHON: "python", Language.JAVASCRIPT: "javascript", Language.JAVA: "java",
          Language.GO: "go", Language.CPP: "cpp", Language.RUST: "rust", Language.TYPESCRIPT: "typescript"}


@dataclass(frozen=True)
class RMBenchItem:
    prompt: str
    chosen: tuple[str, ...]
    rejected: tuple[str, ...]
    language: Language
    group: str


def pair_credit(chosen: float | None, rejected: float | None) -> float:
    """1 / 0.5 / 0 for one comparison; None = no valid code (loses to any valid, ties with None)."""
    if chosen is None and rejected is None:
        return 0.5
    if chosen is None:
        return 0.0
    if rejected is None:
        return 1.0
    return 1.0 if chosen > rejected else 0.5 if chosen == rejected else 0.0


def _items(rows: Sequence[tuple[str, str, Language, bool]], input_mode: str) -> list[ScoreItem]:
    """(prompt, text, language, is_code) rows as score items: ``response`` mode scores the text as is."""
    if input_mode not in INPUT_MODES:
        raise InputError(f"unknown input mode {input_mode!r}", field="input", fix="use code or response")
    return [ScoreItem(prompt, text, language.value, is_code or input_mode == "response")
            for prompt, text, language, is_code in rows]


def program_texts(rows: Sequence[tuple[str, str, Language, bool]], input_mode: str, extract_mode: ExtractMode
           ) -> list[str | None]:
    """What the RM sees for each (prompt, text, language, is_code): code, the response, or None."""
    return [item_program(item, extract_mode) for item in _items(rows, input_mode)]


def score_rows(score_fn: ScoreFn, rows: Sequence[tuple[str, str, Language, bool]], input_mode: str,
               extract_mode: ExtractMode) -> list[Score]:
    """One Score per (prompt, text, language, is_code) row through the shared path
    (``codescaler.scoring``): the scores ``Scorer.score_items`` and best-of-N give the same items."""
    return score_items(_items(rows, input_mode), extract_mode, score_fn)


def _summary(credits: Iterable[tuple[str, float]]) -> dict[str, Any]:
    by_group: dict[str, list[float]] = defaultdict(list)
    everything: list[float] = []
    for group, credit in credits:
        by_group[group].append(credit)
        everything.append(credit)
    if not everything:
        return {"accuracy": None, "n": 0, "per_group": {}}
    return {
        "accuracy": sum(everything) / len(everything),
        "n": len(everything),
        "ties": sum(1 for c in everything if c == 0.5),
        "per_group": {g: {"accuracy": sum(v) / len(v), "n": len(v)} for g, v in sorted(by_group.items())},
    }


def evaluate_pairs(pairs: Sequence[Pair], score_fn: ScoreFn, *, input_mode: str = "code",
                   extract_mode: ExtractMode = ExtractMode.STRICT) -> dict[str, Any]:
    """Pairwise accuracy (ties half) over ``pairs``, overall and per ``group`` ("all" when unset), plus
    validity counts. Pairs with ``is_code`` are scored as they are; others by ``input_mode``."""
    rows = [(p.prompt, p.chosen, p.language, p.is_code) for p in pairs]
    rows += [(p.prompt, p.rejected, p.language, p.is_code) for p in pairs]
    scores = score_rows(score_fn, rows, input_mode, extract_mode)
    chosen, rejected = scores[: len(pairs)], scores[len(pairs):]
    result = _summary((p.group or "all", pair_credit(c.raw_score, r.raw_score))
                      for p, c, r in zip(pairs, chosen, rejected, strict=True))
    result["chosen_invalid"] = sum(1 for c in chosen if not c.valid)
    result["rejected_invalid"] = sum(1 for r in rejected if not r.valid)
    return result


def evaluate_rm_bench(items: Sequence[RMBenchItem], score_fn: ScoreFn, *, input_mode: str = "response",
                      extract_mode: ExtractMode = ExtractMode.STRICT) -> dict[str, Any]:
    """RM-Bench 3x3 style matrix -> hard/normal/easy/average accuracy, overall and per language."""
    flat: list[tuple[str, str, Language, bool]] = []
    for item in items:
        flat += [(item.prompt, text, item.language, False) for text in (*item.chosen, *item.rejected)]
    scores = [s.raw_score for s in score_rows(score_fn, flat, input_mode, extract_mode)]
    matrices: dict[str, list[list[list[float]]]] = defaultdict(lambda: [[[] for _ in range(3)] for _ in range(3)])
    for k, item in enumerate(items):
        block = scores[6 * k: 6 * k + 6]
        for i in range(3):
            for j in range(3):
                credit = pair_credit(block[i], block[3 + j])
                matrices["all"][i][j].append(credit)
                matrices[item.group][i][j].append(credit)
    out = {group: _rm_bench_summary(cells) for group, cells in sorted(matrices.items())}
    result = out.pop("all", {"n": 0})
    result["per_group"] = out
    result["invalid_responses"] = sum(1 for s in scores if s is None)
    return result


def _rm_bench_summary(cells: list[list[list[float]]]) -> dict[str, Any]:
    m = [[sum(c) / len(c) for c in row] for row in cells]
    upper = [m[i][j] for i in range(3) for j in range(3) if i < j]
    lower = [m[i][j] for i in range(3) for j in range(3) if i > j]
    return {"hard": sum(upper) / 3, "normal": (m[0][0] + m[1][1] + m[2][2]) / 3, "easy": sum(lower) / 3,
            "average": sum(map(sum, m)) / 9, "matrix": m, "n": len(cells[0][0])}


# --------------------------------------------------------------------------------------------------
# Loaders (public files; see ../shared/data/README.md)


def _jsonl_rows(path: Path) -> Iterable[tuple[int, dict[str, Any]]]:
    from codescaler.data import read_jsonl

    return read_jsonl(path, fix="pass a UTF-8 JSONL file with one JSON object per line (or check --data-dir)")


def read_eval_pairs(path: Path) -> list[Pair]:
    """A pairs JSONL (``data.read_pairs``: raw responses, optional ``language``), grouped by language."""
    from dataclasses import replace

    from codescaler.data import read_pairs

    return [replace(p, group=p.language.value) for p in read_pairs(path)]


def hep_path(data_dir: Path, language: str) -> Path:
    return Path(data_dir) / "octopack/evaluation/create/humaneval-x/data" / language / "data/humanevalpack.jsonl"


def load_hep(data_dir: Path, languages: Sequence[str] = ("python",)) -> list[Pair]:
    """HumanEvalPack canonical vs buggy per language (RewardBench hep-*). EVAL ONLY: never train on it."""
    pairs = []
    for name in languages:
        if name not in HEP_LANGUAGES:
            raise InputError(f"unknown HumanEvalPack language {name!r}", field="languages",
                             fix=f"use some of: {','.join(HEP_LANGUAGES)}")
        path = hep_path(data_dir, name)
        for number, row in _jsonl_rows(path):
            for field in ("instruction", "declaration", "canonical_solution", "buggy_solution"):
                if not isinstance(row.get(field), str):
                    raise InputError("missing", path=str(path), line=number, field=field)
            pairs.append(Pair(row["instruction"], row["declaration"] + row["canonical_solution"],
                              row["declaration"] + row["buggy_solution"], task_id=str(row.get("task_id", "")),
                              language=_HEP_TO_LANGUAGE[name], is_code=True, group=f"hep-{name}", line=number))
    return pairs


def load_rm_bench(path: Path) -> list[RMBenchItem]:
    """RM-Bench ``code_filtered.json`` (a JSON list). EVAL ONLY (its prompts are HumanEvalPack tasks)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError("file not found", path=str(path), fix="check the path (or --data-dir)") from None
    except json.JSONDecodeError as err:
        raise InputError(f"not valid JSON: {err.msg}", path=str(path), line=err.lineno) from None
    if not isinstance(data, list):
        raise InputError("expected a JSON list of prompts", path=str(path))
    items = []
    for k, row in enumerate(data):
        chosen, rejected = row.get("chosen"), row.get("rejected")
        if not (isinstance(chosen, list) and isinstance(rejected, list) and len(chosen) == len(rejected) == 3):
            raise InputError(f"item {k}: chosen and rejected must be lists of 3 responses", path=str(path),
                             field="chosen")
        try:
            language = Language.parse(row.get("language"))
        except ValueError:
            language = Language.PYTHON
        items.append(RMBenchItem(str(row.get("prompt", "")), tuple(chosen), tuple(rejected), language,
                                 str(row.get("language", "unknown"))))
    return items


def fenced(code: str, language: Language) -> str:
    """``code`` as a Markdown response with one fenced block (how a model would answer)."""
    return f"```{_FENCE.get(language, '')}\n{code.rstrip()}\n```"
