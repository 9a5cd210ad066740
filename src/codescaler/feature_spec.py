"""What a feature vector is: the columns and the backbone they come from (layer L2).

``FeatureSpec`` is the identity of a feature row (backbone weights hash, RM input format and length,
layers, poolings, optional groups) and names its columns in row order; ``codescaler.features`` computes
the rows. ``rm_scores`` adds the raw scores of other reward-model checkpoints (``rm:{name}`` columns,
each pinned by the sha256 of its weight files): a head over them *stacks* those RMs with the backbone's
features (docs/reward_model.md "Stacked RMs"). ``from_dict`` refuses specs this version cannot compute (unknown fields, another
``SPEC_VERSION``) with an ``InputError``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Any

from codescaler.errors import InputError
from codescaler.rm_checkpoint import InputFormat

SPEC_VERSION = 1
POOLINGS = ("last", "mean")
LIKELIHOOD_NAMES = ("lp_mean", "lp_min", "lp_q05", "lp_q25", "lp_q50", "lp_sum", "entropy_mean",
                    "frac_lp_below_-3", "log_tokens")
WITHOUT_PROBLEM_NAMES = ("np_lp_mean", "np_lp_sum", "pmi_mean", "pmi_sum")
FACT_NAMES = ("log_chars", "log_lines", "parses")

@dataclass(frozen=True)
class FeatureSpec:
    """What to compute, and for which backbone: the identity of a feature vector.

    ``backbone_sha256`` is the hash of the backbone's weight files, so a cache or a head can never be
    mixed with features of other weights. ``input_format``/``max_length`` fix the RM input.
    """

    backbone: str
    backbone_sha256: str
    hidden_size: int
    input_format: str = InputFormat.CHAT_TEMPLATE.value
    max_length: int = 1024
    layers: tuple[int, ...] = (24,)
    pooling: tuple[str, ...] = POOLINGS
    likelihood: bool = True
    without_problem: bool = False
    facts: bool = True
    version: int = SPEC_VERSION
    rm_scores: tuple[str, ...] = ()          # checkpoints (short names or folders) whose raw score is a column
    rm_scores_sha256: tuple[str, ...] = ()   # sha256 of each one's weight files, in the same order

    def __post_init__(self) -> None:
        object.__setattr__(self, "layers", tuple(int(x) for x in self.layers))
        object.__setattr__(self, "pooling", tuple(self.pooling))
        object.__setattr__(self, "rm_scores", tuple(str(x) for x in self.rm_scores))
        object.__setattr__(self, "rm_scores_sha256", tuple(str(x) for x in self.rm_scores_sha256))
        if len(self.rm_scores) != len(self.rm_scores_sha256):
            raise InputError(f"{len(self.rm_scores)} rm_scores but {len(self.rm_scores_sha256)} hashes",
                             field="features.rm_scores_sha256", fix="give one sha256 per checkpoint")
        if len(set(self.rm_scores)) != len(self.rm_scores):
            raise InputError(f"rm_scores names a checkpoint twice: {list(self.rm_scores)}", field="features.rm_scores")
        unknown = [p for p in self.pooling if p not in POOLINGS]
        if unknown:
            raise InputError(f"unknown pooling {unknown}", field="features.pooling", fix=f"use {POOLINGS}")
        if self.version != SPEC_VERSION:
            raise InputError(f"feature spec version {self.version} is not computable by this codescaler "
                             f"(it computes version {SPEC_VERSION})", field="features.version",
                             fix="use the codescaler version that trained this head, or retrain the head")
        if self.without_problem and not self.likelihood:
            raise InputError("without_problem needs likelihood", field="features.without_problem")

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["layers"], out["pooling"] = list(self.layers), list(self.pooling)
        if self.rm_scores:
            out["rm_scores"], out["rm_scores_sha256"] = list(self.rm_scores), list(self.rm_scores_sha256)
        else:  # specs without stacked RMs keep the keys (cache folders) they had before the field existed
            del out["rm_scores"], out["rm_scores_sha256"]
        return out

    @classmethod
    def from_dict(cls, data: Any, *, path: str | None = None) -> FeatureSpec:
        """Validate a spec read from a checkpoint or a cache; unknown keys are refused (a newer spec)."""
        if not isinstance(data, dict):
            raise InputError("feature spec must be a JSON object", path=path, field="features")
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InputError(f"this codescaler cannot compute feature fields {unknown}", path=path,
                             field=f"features.{unknown[0]}", fix="upgrade codescaler, or retrain the head")
        try:
            return cls(**data)
        except TypeError as err:
            raise InputError(f"bad feature spec: {err}", path=path, field="features") from None

    @property
    def key(self) -> str:
        """Content hash of the spec (cache folder name)."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()

    @property
    def deepest_layer(self) -> int:
        return max(self.layers, default=0)

    def names(self) -> list[str]:
        """Column names, in the order of the feature rows."""
        return [n for group in self.groups().values() for n in group]

    def groups(self) -> dict[str, list[str]]:
        """Column names by group: ``h{L}.{pool}`` per layer and pooling, then likelihood, ... facts."""
        out: dict[str, list[str]] = {}
        for layer in self.layers:
            for pool in self.pooling:
                out[f"h{layer}.{pool}"] = [f"h{layer}.{pool}.{i}" for i in range(self.hidden_size)]
        if self.likelihood:
            out["likelihood"] = list(LIKELIHOOD_NAMES)
        if self.without_problem:
            out["without_problem"] = list(WITHOUT_PROBLEM_NAMES)
        if self.facts:
            out["facts"] = list(FACT_NAMES)
        if self.rm_scores:
            out["rm_scores"] = [f"rm:{name}" for name in self.rm_scores]
        return out

    def without_rm_scores(self) -> FeatureSpec:
        """The same spec without the stacked RMs' columns (what the backbone pass computes)."""
        from dataclasses import replace

        return replace(self, rm_scores=(), rm_scores_sha256=())
