"""The one extract -> score -> shape path, over any scoring function (layer L1: pure, no torch, no I/O).

Every consumer of RM scores goes through ``iter_item_scores``: ``Scorer.iter_score`` (with the loaded
model's batched ``iter_score_codes``), best-of-N (``codescaler.bon``) and the pairwise benchmarks
(``codescaler.bench.pairwise``, with a Scorer's ``score_codes`` or a no-training baseline). So the same
(problem, response-or-code) items get the same programs (``extract.item_program``), the same raw scores
and the same shaped rewards on every path.

Contract: items are independent (any order, any batch); an item without valid code gets
``Score(raw_score=None, valid=False, reward=shape_reward(None, False))`` and never reaches the scoring
function; the scoring function sees the valid programs in item order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence

from codescaler.errors import InputError
from codescaler.extract import item_program
from codescaler.records import ExtractMode, Score, ScoreItem
from codescaler.shaping import Shaping, shape_reward

ScoreFn = Callable[[Sequence[str], Sequence[str]], Sequence[float]]
"""``(prompts, codes) -> raw scores``, one per code, in order."""
CodeBatches = Callable[[Sequence[str], Sequence[str]], Iterable[tuple[list[int], list[float]]]]
"""``(prompts, codes) -> (indices, raw scores)`` per batch, every index once (``Scorer.iter_score_codes``)."""


def iter_item_scores(items: Sequence[ScoreItem], mode: ExtractMode | str, score_batches: CodeBatches,
                     shaping: Shaping = Shaping.SOFTPLUS) -> Iterator[tuple[list[int], list[Score]]]:
    """Yield (item indices, Scores): first every item without valid code (one group, no model work),
    then one group per batch of ``score_batches``. Raises ``InputError`` for an unknown mode or language."""
    try:
        chosen = ExtractMode(mode)
    except ValueError:
        raise InputError(f"unknown extraction mode {mode!r}", field="extract_mode", fix="use strict or lenient") from None
    codes: list[str | None] = []
    for item in items:
        try:
            codes.append(item_program(item, chosen))
        except ValueError as err:
            raise InputError(str(err), field="language") from None
    invalid = [i for i, code in enumerate(codes) if code is None]
    if invalid:
        yield invalid, [Score(raw_score=None, valid=False, reward=shape_reward(None, False, shaping))] * len(invalid)
    valid = [i for i, code in enumerate(codes) if code is not None]
    if not valid:
        return
    for done, raws in score_batches([items[i].prompt for i in valid], [codes[i] or "" for i in valid]):
        yield [valid[j] for j in done], [Score(raw_score=float(r), valid=True,
                                               reward=shape_reward(float(r), True, shaping)) for r in raws]


def in_chunks(score_fn: ScoreFn, on_scored: Callable[[int], object], chunk: int = 256) -> ScoreFn:
    """``score_fn`` called ``chunk`` programs at a time, ``on_scored(k)`` after each call (for a progress
    bar). Same scores in the same order; a chunk of consecutive items keeps a problem's candidates
    together, so prefix sharing still applies within it."""
    if chunk < 1:
        raise InputError(f"chunk must be >= 1, got {chunk}", field="chunk")

    def scored(prompts: Sequence[str], codes: Sequence[str]) -> list[float]:
        out: list[float] = []
        for start in range(0, len(codes), chunk):
            out.extend(score_fn(prompts[start:start + chunk], codes[start:start + chunk]))
            on_scored(len(codes[start:start + chunk]))
        return out

    return scored


def one_batch(score_fn: ScoreFn) -> CodeBatches:
    """A plain scoring function (a baseline, ``Scorer.score_codes``) as one batch."""
    def batches(prompts: Sequence[str], codes: Sequence[str]) -> Iterator[tuple[list[int], list[float]]]:
        yield list(range(len(codes))), [float(v) for v in score_fn(prompts, codes)]
    return batches


def score_items(items: Sequence[ScoreItem], mode: ExtractMode | str, score_fn: ScoreFn,
                shaping: Shaping = Shaping.SOFTPLUS) -> list[Score]:
    """One Score per item, in order. With a Scorer's ``score_codes`` this equals ``Scorer.score_items``
    (the same valid programs reach the model in the same order)."""
    return gather(len(items), iter_item_scores(items, mode, one_batch(score_fn), shaping))


def gather(n: int, stream: Iterable[tuple[list[int], list[Score]]]) -> list[Score]:
    """The ``n`` Scores of a ``iter_item_scores`` stream, in item order."""
    out: list[Score | None] = [None] * n
    for indices, scores in stream:
        for i, score in zip(indices, scores, strict=True):
            out[i] = score
    missing = [i for i, s in enumerate(out) if s is None]
    if missing:  # a scoring function that skipped an item is our bug, not the user's input
        raise RuntimeError(f"no score for items {missing[:5]}")
    return [s for s in out if s is not None]
