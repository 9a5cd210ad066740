"""Tests for codescaler.batching: every item once, prefixes only where shared and allowed."""

from __future__ import annotations

import pytest

from codescaler.batching import Batch, common_prefix_length, plan_batches


def _covered(plan: list[Batch]) -> list[int]:
    return sorted(j for b in plan for j in b.members)


def test_every_item_is_planned_exactly_once_longest_first():
    encoded = [[1] * n for n in (5, 9, 2, 7, 3)]
    plan = plan_batches(["a", "b", "c", "d", "e"], encoded, batch_size=2)
    assert _covered(plan) == [0, 1, 2, 3, 4]
    assert [b.members for b in plan] == [(1, 3), (0, 4), (2,)]
    assert all(b.prefix == 0 for b in plan)


def test_items_of_one_problem_share_their_common_prefix_but_keep_a_token_each():
    shared = list(range(40))
    encoded = [shared + [100, 101], shared + [200], shared + [300, 301, 302], list(range(50, 90))]
    plan = plan_batches(["p", "p", "p", "q"], encoded, batch_size=8)
    assert _covered(plan) == [0, 1, 2, 3]
    by_members = {b.members: b.prefix for b in plan}
    assert by_members[(3,)] == 0
    assert by_members[(2, 0, 1)] == 40
    short = [shared, shared + [7]]                      # the shortest item IS the prefix: one token back
    assert plan_batches(["p", "p"], short, batch_size=4)[0].prefix == 39


def test_a_limit_caps_the_shared_prefix_and_short_prefixes_are_not_shared():
    shared = list(range(40))
    encoded = [shared + [1], shared + [2]]
    assert plan_batches(["p", "p"], encoded, 4, limit=[30, 35])[0].prefix == 30
    assert plan_batches(["p", "p"], encoded, 4, limit=[10, 35])[0].prefix == 0      # below the minimum
    assert plan_batches(["p", "p"], encoded, 4, prefix_sharing=False)[0].prefix == 0
    assert common_prefix_length([[1, 2, 3], [1, 2], [1, 2, 4]]) == 2
    with pytest.raises(ValueError):
        plan_batches(["p"], [[1]], 0)
