"""Raw reward-model score + validity -> reward (layer L1: pure, stdlib only).

The paper's validity-preserving shaping: a response with no valid code gets reward exactly ``0.0``; a
response with valid code gets ``softplus(raw) > 0``. So inside a GRPO group every valid program
outranks every invalid output, which stops a policy from gaming the RM with empty or malformed answers.

Contract and decisions
----------------------
- ``softplus`` is computed as ``log1p(exp(-|x|)) + max(x, 0)``: it never overflows (``softplus(1e300)``
  is ``1e300``), and is accurate for large negative ``x``.
- In float64 ``softplus(x)`` underflows to ``0.0`` below about ``x = -745``, which would tie a valid
  program with an invalid one. Valid rewards are therefore floored at ``VALID_FLOOR = 1e-12``. The value is
  chosen so that it stays a *normal* number after the conversion to float32/bfloat16 tensors that RL
  frameworks do (a floor such as ``5e-324`` would become ``0.0`` there and silently break the guarantee).
  The price: every raw score below about ``-27.6`` (where softplus falls under 1e-12) maps to the floor,
  so shaping is non-decreasing everywhere and strictly increasing above that point. (float16 flushes
  1e-12 to zero; do not keep rewards in float16.)
- A valid response must come with a finite raw score: ``None``, NaN or ±inf raise ``ValueError`` naming
  the value (an RM that emits NaN is broken, and hiding that as a reward of 0 would train on garbage).
  For an invalid response the raw score is ignored (it may be ``None`` or anything else).
- ``Shaping.NONE`` (identity) gives ``raw`` for valid and ``0.0`` for invalid responses in
  ``shape_reward``; that LOSES the guarantee (a valid program with a negative raw score ranks below an
  invalid output). ``shape_group`` restores it within the group: invalid entries keep
  ``0.0`` when every valid raw score is positive, else get ``min_valid - 1.0`` (nudged below
  ``min_valid`` if float rounding absorbs the ``- 1``).
- ``shape_group(..., normalize=True)`` applies GRPO's per-group normalisation ``(r - mean) / (std + eps)``
  with the sample standard deviation (ddof=1, as ``torch.std`` in TRL and verl; a group of one or a
  group of equal rewards gives all zeros). It is computed on rewards rescaled by their largest magnitude,
  so ±1e300 neither overflows the variance nor loses precision. The map is increasing, so order is kept;
  float rounding can still tie an invalid entry with the lowest valid one (e.g. 1e-12 vs 0.0 next to
  rewards of 1e4), so any invalid entry that is not strictly below every valid one is moved to the next
  float below the lowest valid value.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from codescaler.records import StrEnum

VALID_FLOOR = 1e-12
"""Smallest reward a valid response can get under ``Shaping.SOFTPLUS`` (strictly above the invalid 0.0)."""

INVALID_REWARD = 0.0
"""Reward of a response without valid code under ``Shaping.SOFTPLUS``."""

DEFAULT_STD_EPS = 1e-6
"""Added to the group standard deviation before dividing (verl's GRPO default)."""


class Shaping(StrEnum):
    """How a raw RM score becomes a reward. ``softplus`` is the paper's; ``none`` is the identity."""

    SOFTPLUS = "softplus"
    NONE = "none"


SOFTPLUS = Shaping.SOFTPLUS


def softplus(x: float) -> float:
    """``log(1 + exp(x))`` without overflow: exact to float precision for every finite ``x``.

    Returns ``0.0`` only where the true value is below the smallest float (``x < -745``); callers that
    need a strictly positive result use ``shape_reward``. ``x`` must be a real number (NaN gives NaN).
    """
    x = float(x)
    return math.log1p(math.exp(-abs(x))) + max(x, 0.0)


def _finite(raw: float | None, where: str) -> float:
    if raw is None:
        raise ValueError(
            f"{where}: a valid response needs a raw score, got None "
            "(pass valid=False when extraction found no code)"
        )
    try:
        value = float(raw)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{where}: raw score must be a number, got {raw!r}") from err
    if not math.isfinite(value):
        raise ValueError(
            f"{where}: raw score must be finite, got {value!r} (the reward model produced a non-finite "
            "score; check its dtype and inputs)"
        )
    return value


def shape_reward(raw: float | None, valid: bool, shaping: Shaping = SOFTPLUS) -> float:
    """Reward of one response.

    Not ``valid``: exactly ``0.0`` (``raw`` ignored, may be None). Valid: ``max(softplus(raw),
    VALID_FLOOR)`` under ``SOFTPLUS`` (always > 0), ``raw`` under ``NONE`` (no validity guarantee; see
    the module docstring). Raises ``ValueError`` if ``valid`` and ``raw`` is None, NaN or infinite.
    """
    shaping = Shaping(shaping)
    if not valid:
        return INVALID_REWARD
    value = _finite(raw, "shape_reward")
    if shaping is Shaping.NONE:
        return value
    return max(softplus(value), VALID_FLOOR)


def shape_group(
    raws: Sequence[float | None],
    valids: Sequence[bool],
    shaping: Shaping = SOFTPLUS,
    normalize: bool = False,
    eps: float = DEFAULT_STD_EPS,
) -> list[float]:
    """Rewards of one GRPO group (the rollouts of one prompt), in input order.

    Every valid entry gets a strictly larger reward than every invalid entry, for both shapings and with
    or without normalisation. ``normalize`` applies ``(r - mean) / (std + eps)`` (sample std, ddof=1).
    Raises ``ValueError`` if the lengths differ, ``eps`` is negative or not finite, or a valid entry has
    a missing or non-finite raw score (the message names the index and value).
    """
    if len(raws) != len(valids):
        raise ValueError(f"shape_group: {len(raws)} raw scores but {len(valids)} validity flags; pass one each")
    if not (math.isfinite(eps) and eps >= 0):
        raise ValueError(f"shape_group: eps must be a finite number >= 0, got {eps!r}")
    shaping = Shaping(shaping)
    flags = [bool(v) for v in valids]
    rewards: list[float] = []
    for i, (raw, valid) in enumerate(zip(raws, flags, strict=True)):
        if valid:
            _finite(raw, f"shape_group[{i}]")
        rewards.append(shape_reward(raw, valid, shaping))
    valid_rewards = [r for r, v in zip(rewards, flags, strict=True) if v]
    if shaping is Shaping.NONE and valid_rewards and not all(flags):
        low = min(valid_rewards)
        invalid = INVALID_REWARD if low > INVALID_REWARD else low - 1.0
        if invalid >= low:  # -1.0 absorbed by rounding at huge magnitudes
            invalid = math.nextafter(low, -math.inf)
        rewards = [r if v else invalid for r, v in zip(rewards, flags, strict=True)]
    if normalize:
        rewards = _normalize(rewards, eps)
    return _keep_valid_above_invalid(rewards, flags)


def _normalize(rewards: list[float], eps: float) -> list[float]:
    """``(r - mean) / (std + eps)`` computed on ``r / max|r|`` so that huge rewards cannot overflow."""
    n = len(rewards)
    scale = max((abs(r) for r in rewards), default=0.0)
    if n < 2 or scale == 0.0 or not math.isfinite(scale):
        return [0.0] * n if math.isfinite(scale) else _raise_non_finite(rewards)
    scaled = [r / scale for r in rewards]
    mean = math.fsum(scaled) / n
    std = math.sqrt(math.fsum((s - mean) ** 2 for s in scaled) / (n - 1))
    if std == 0.0:
        return [0.0] * n
    # (r - m) / (sd + eps) == (s - m_s) / (sd_s + eps / scale)
    denom = std + eps / scale
    return [(s - mean) / denom for s in scaled]


def _raise_non_finite(rewards: list[float]) -> list[float]:
    raise ValueError(f"shape_group: rewards must be finite to normalise, got {rewards!r}")


def _keep_valid_above_invalid(rewards: list[float], flags: list[bool]) -> list[float]:
    """Move invalid entries strictly below the lowest valid one if float rounding tied them."""
    valid_rewards = [r for r, v in zip(rewards, flags, strict=True) if v]
    if not valid_rewards or all(flags):
        return rewards
    low = min(valid_rewards)
    below = math.nextafter(low, -math.inf)
    return [r if v or r < low else below for r, v in zip(rewards, flags, strict=True)]
