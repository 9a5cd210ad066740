"""Tests for codescaler.shaping: stable softplus, the validity floor, GRPO group normalisation."""

from __future__ import annotations

import math
import random

import pytest

from codescaler.shaping import (
    VALID_FLOOR,
    Shaping,
    shape_group,
    shape_reward,
    softplus,
)

EXTREMES = [-1e300, -1e4, -745.2, -40.0, -27.0, -1.0, 0.0, 1e-9, 1.0, 36.9, 800.0, 1e4, 1e300]


def _random_raws(rng: random.Random, n: int) -> list[float]:
    """Scores of mixed magnitude: typical RM range, large values, and the extremes."""
    out = []
    for _ in range(n):
        kind = rng.random()
        if kind < 0.6:
            out.append(rng.gauss(0.0, 5.0))
        elif kind < 0.85:
            out.append(rng.uniform(-1e4, 1e4))
        else:
            out.append(rng.choice(EXTREMES))
    return out


def test_softplus_matches_the_naive_formula_where_that_formula_is_safe():
    for x in [-30.0, -5.5, -1.0, 0.0, 0.3, 2.0, 15.0, 30.0]:
        assert softplus(x) == pytest.approx(math.log(1.0 + math.exp(x)), rel=1e-12)


def test_softplus_does_not_overflow_at_huge_inputs():
    assert softplus(1e4) == 1e4
    assert softplus(1e300) == 1e300
    assert softplus(-1e4) == 0.0  # underflow: the reason shape_reward has a floor
    assert softplus(-50.0) == pytest.approx(math.exp(-50.0), rel=1e-12)


def test_invalid_response_gets_exactly_zero_whatever_the_raw_score():
    for raw in [None, 5.0, -3.0, float("nan"), float("inf"), 1e300]:
        assert shape_reward(raw, valid=False) == 0.0
        assert shape_reward(raw, valid=False, shaping=Shaping.NONE) == 0.0


def test_valid_reward_is_strictly_positive_even_at_minus_1e300():
    for raw in EXTREMES:
        reward = shape_reward(raw, valid=True)
        assert reward > 0.0 and math.isfinite(reward), raw
    assert shape_reward(-1e4, valid=True) == VALID_FLOOR


def test_valid_floor_survives_float32_conversion():
    import struct

    as_float32 = struct.unpack("f", struct.pack("f", shape_reward(-1e300, valid=True)))[0]
    assert as_float32 > 0.0


def test_shaping_is_monotone_in_the_raw_score_on_random_values():
    rng = random.Random(1234)
    raws = sorted(_random_raws(rng, 2000))
    rewards = [shape_reward(r, valid=True) for r in raws]
    for (r0, a), (r1, b) in zip(zip(raws, rewards, strict=True), zip(raws[1:], rewards[1:], strict=True), strict=False):
        assert a <= b, (r0, r1, a, b)
    # strictly increasing above the floor region, at a resolution float64 can show
    for a, b in [(-20.0, -19.0), (-1.0, -0.5), (3.0, 3.001), (500.0, 501.0)]:
        assert shape_reward(a, True) < shape_reward(b, True)


def test_every_valid_program_outranks_every_invalid_output_on_random_values():
    rng = random.Random(99)
    for raw in _random_raws(rng, 3000):
        assert shape_reward(raw, True) > shape_reward(rng.choice([None, raw, 1e300]), False)


@pytest.mark.parametrize("bad", [None, float("nan"), float("inf"), -float("inf"), "3.5x"])
def test_valid_response_with_unusable_raw_score_raises_naming_the_value(bad):
    with pytest.raises(ValueError) as info:
        shape_reward(bad, valid=True)
    assert repr(bad if not isinstance(bad, float) else float(bad)) in str(info.value) or "None" in str(
        info.value
    )


def test_identity_shaping_returns_raw_and_loses_the_guarantee_for_single_rewards():
    assert shape_reward(-3.5, True, Shaping.NONE) == -3.5
    assert shape_reward(-3.5, True, Shaping.NONE) < shape_reward(None, False, Shaping.NONE)


def test_shaping_accepts_its_string_name():
    assert shape_reward(2.0, True, "none") == 2.0  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        shape_reward(2.0, True, "sigmoid")  # type: ignore[arg-type]


def test_group_without_normalisation_equals_per_response_shaping():
    raws = [1.5, None, -2.0, 40.0]
    valids = [True, False, True, True]
    assert shape_group(raws, valids) == [shape_reward(r, v) for r, v in zip(raws, valids, strict=True)]


def test_identity_group_puts_invalid_below_the_worst_valid_program():
    rewards = shape_group([-7.0, None, 3.0], [True, False, True], Shaping.NONE)
    assert rewards == [-7.0, -8.0, 3.0]
    rewards = shape_group([2.0, 0.5, None], [True, True, False], Shaping.NONE)
    assert rewards == [2.0, 0.5, 0.0]
    huge = shape_group([-1e300, None], [True, False], Shaping.NONE)
    assert huge[1] < huge[0]


def test_normalised_group_has_zero_mean_and_unit_sample_std():
    rewards = shape_group([1.0, 2.0, 3.0, 4.0], [True] * 4, Shaping.NONE, normalize=True, eps=0.0)
    assert math.fsum(rewards) == pytest.approx(0.0, abs=1e-12)
    var = math.fsum(r * r for r in rewards) / 3
    assert var == pytest.approx(1.0)


def test_group_of_equal_rewards_or_of_one_normalises_to_zeros():
    assert shape_group([3.0, 3.0, 3.0], [True] * 3, normalize=True) == [0.0, 0.0, 0.0]
    assert shape_group([3.0], [True], normalize=True) == [0.0]
    assert shape_group([None, None], [False, False], normalize=True) == [0.0, 0.0]
    assert shape_group([], [], normalize=True) == []


def test_normalisation_handles_1e300_without_overflow():
    rewards = shape_group([1e300, -1e300, None, 1e300], [True, True, False, True], normalize=True)
    assert all(math.isfinite(r) for r in rewards)
    assert min(rewards[0], rewards[1], rewards[3]) > rewards[2]


def test_normalisation_keeps_the_floor_valid_program_above_invalid_next_to_huge_rewards():
    # 1e-12 - 5000 rounds to the same float as 0 - 5000: the tie guard must separate them
    rewards = shape_group([-1e4, None, 1e4], [True, False, True], normalize=True)
    assert rewards[0] > rewards[1]
    assert rewards[2] > rewards[0]


def test_group_normalisation_preserves_order_and_validity_on_random_groups():
    rng = random.Random(7)
    for _ in range(600):
        size = rng.randint(1, 16)
        raws = _random_raws(rng, size)
        valids = [rng.random() < 0.7 for _ in range(size)]
        raws_in: list[float | None] = [
            r if v or rng.random() < 0.5 else None for r, v in zip(raws, valids, strict=True)
        ]
        for shaping in Shaping:
            plain = shape_group(raws_in, valids, shaping)
            normed = shape_group(raws_in, valids, shaping, normalize=True)
            assert all(math.isfinite(r) for r in normed)
            for i in range(size):
                for j in range(size):
                    if valids[i] and not valids[j]:
                        assert plain[i] > plain[j] and normed[i] > normed[j]
                    if plain[i] < plain[j]:
                        assert normed[i] <= normed[j]
                    if plain[i] == plain[j]:
                        assert normed[i] == normed[j]


def test_group_rejects_mismatched_lengths_negative_eps_and_nan_with_its_index():
    with pytest.raises(ValueError, match="2 raw scores but 3"):
        shape_group([1.0, 2.0], [True, True, False])
    with pytest.raises(ValueError, match="eps"):
        shape_group([1.0], [True], eps=-1.0)
    with pytest.raises(ValueError, match=r"shape_group\[1\].*nan"):
        shape_group([1.0, float("nan")], [True, True])
