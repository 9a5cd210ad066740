"""codescaler.scoring: the pure glue between items, a score function and shaping."""

from __future__ import annotations

import pytest

from codescaler.errors import InputError
from codescaler.records import ScoreItem
from codescaler.scoring import in_chunks, score_items


def _length_score(prompts, codes):  # noqa: ANN001, ANN202
    return [float(len(p) + 10 * len(c)) for p, c in zip(prompts, codes, strict=True)]


def test_chunked_scoring_gives_the_same_scores_and_reports_every_program_once() -> None:
    items = [ScoreItem(f"problem {k % 3}", f"```python\nx = {'1' * k}\n```") for k in range(1, 12)]
    items.append(ScoreItem("p", "no code"))
    reported: list[int] = []
    calls: list[int] = []

    def counted(prompts, codes):  # noqa: ANN001, ANN202
        calls.append(len(codes))
        return _length_score(prompts, codes)

    chunked = score_items(items, "strict", in_chunks(counted, reported.append, chunk=4))
    assert chunked == score_items(items, "strict", _length_score)
    assert calls == [4, 4, 3] and reported == calls        # 11 valid programs; the invalid one costs nothing
    with pytest.raises(InputError, match="chunk must be >= 1"):
        in_chunks(_length_score, print, chunk=0)
