"""How a scoring call is cut into model batches: dedup, prefix sharing, length bucketing (L1: pure).

One plan serves every forward-pass consumer (the Scorer's sequence-classifier path and the feature
extractor), so they batch identically. No torch here: token ids in, index batches out.

Rules
-----
- The caller dedups identical inputs first; the plan works on unique items.
- Prefix sharing: items with the same ``group`` (the problem) whose token ids share at least
  ``min_shared`` leading tokens form one shared group; the prefix stops one token short of the
  shortest member, so every member keeps at least one token of its own (where a score is read), and
  never extends past ``limit[j]`` for any member (a caller that needs positions of its own, such as the
  feature extractor, which needs the position that predicts the first code token, passes it).
- Length bucketing: within the unshared items and within each shared group, items are sorted longest
  first and cut into batches of ``batch_size``, so padding stays within similar lengths.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

MIN_SHARED_PREFIX = 16   # tokens; below this a shared prefix saves less than its extra forward costs


@dataclass(frozen=True)
class Batch:
    """Unique-item indices run together; ``prefix`` tokens are shared from a cache (0 = none)."""

    members: tuple[int, ...]
    prefix: int = 0


def common_prefix_length(rows: Sequence[Sequence[int]]) -> int:
    """Length of the longest common prefix of token id lists."""
    first = rows[0]
    length = min(len(r) for r in rows)
    for other in rows[1:]:
        i = 0
        while i < length and other[i] == first[i]:
            i += 1
        length = i
    return length


def plan_batches(groups: Sequence[str], encoded: Sequence[Sequence[int]], batch_size: int, *,
                 prefix_sharing: bool = True, limit: Sequence[int] | None = None,
                 min_shared: int = MIN_SHARED_PREFIX) -> list[Batch]:
    """Batches covering every index of ``encoded`` exactly once (module rules).

    ``groups``: one key per item (items of different groups never share). ``limit``: per item, the
    longest prefix it may share (None: no limit beyond the one-token rule). Unshared batches come
    first, then each shared group's batches (all with that group's prefix length).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    alone: list[int] = []
    shared: list[tuple[int, list[int]]] = []
    if prefix_sharing:
        by_group: dict[str, list[int]] = {}
        for j, key in enumerate(groups):
            by_group.setdefault(key, []).append(j)
        for members in by_group.values():
            length = 0
            if len(members) > 1:
                length = common_prefix_length([encoded[j] for j in members])
                length = min(length, min(len(encoded[j]) for j in members) - 1)
                if limit is not None:
                    length = min(length, min(limit[j] for j in members))
            if length >= min_shared:
                shared.append((length, members))
            else:
                alone.extend(members)
    else:
        alone = list(range(len(encoded)))
    out: list[Batch] = []
    order = sorted(alone, key=lambda j: len(encoded[j]), reverse=True)
    out += [Batch(tuple(order[s:s + batch_size])) for s in range(0, len(order), batch_size)]
    for length, members in shared:
        members = sorted(members, key=lambda j: len(encoded[j]), reverse=True)
        out += [Batch(tuple(members[s:s + batch_size]), length) for s in range(0, len(members), batch_size)]
    return out
