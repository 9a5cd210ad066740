"""Pairs -> cached backbone features -> a Bradley–Terry head -> a codescaler RM checkpoint (L2).

The default way to train a reward model on a CPU (docs/reward_model.md): one forward pass per unique
program (``features``, cached by ``feature_cache``), then a head fitted on every pair in seconds
(``heads``). The checkpoint is a normal codescaler RM folder — ``codescaler.json`` (with a ``head``
block holding the feature spec), ``head.safetensors``, the backbone's tokenizer files and a model card
(README.md) — and every consumer loads it through ``Scorer.load`` unchanged. The backbone weights are
not copied: they are named (short name / hub id) and pinned by the sha256 of their files.

Killing a run loses nothing already computed: the feature cache keeps every finished chunk, and the
checkpoint folder is written to a temporary sibling and renamed into place at the end.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from codescaler.data import file_sha256
from codescaler.errors import InputError
from codescaler.feature_cache import FeatureCache
from codescaler.features import FeatureExtractor, FeatureSpec
from codescaler.heads import DEFAULT_L2_GRID, Head, HeadSettings, compose_stack, fit_head, pairwise_accuracy
from codescaler.records import ExtractMode
from codescaler.rm_checkpoint import InputFormat, RMMetadata, write_metadata
from codescaler.training_checkpoint import versions

logger = logging.getLogger(__name__)

DEFAULT_BACKBONE = "qwen2.5-coder-0.5b-instruct"
DEFAULT_LAYERS = (12, 18, 24)
DEFAULT_MAX_LENGTH = 1024
HUB_IDS = {"qwen2.5-coder-0.5b-instruct": "Qwen/Qwen2.5-Coder-0.5B-Instruct"}


@dataclass(frozen=True)
class HeadTrainSettings:
    """One head training run (``codescaler train --head``)."""

    pairs: tuple[Path, ...]
    output: Path
    backbone: str = DEFAULT_BACKBONE
    layers: tuple[int, ...] = DEFAULT_LAYERS
    pooling: tuple[str, ...] = ("last", "mean")
    likelihood: bool = True
    without_problem: bool = False
    facts: bool = True
    max_length: int = DEFAULT_MAX_LENGTH
    extract_mode: ExtractMode = ExtractMode.STRICT
    eval_pairs: Path | None = None
    cache_dir: Path = Path(".cache/codescaler/features")
    head: HeadSettings = field(default_factory=HeadSettings)
    batch_size: int = 8
    dtype: str | None = None
    command: str = ""
    stack: tuple[str, ...] = ()   # RM checkpoints whose raw scores are stacked with the head (on eval_pairs)

    def validate(self) -> None:
        self.head.validate()
        if self.stack and self.eval_pairs is None:
            raise InputError("--stack fits the stacking weights on held-out pairs, and none were given",
                             field="--stack", fix="pass --eval-pairs with pairs of problems that neither the "
                             "head nor the stacked RMs were trained on")
        if self.stack and self.head.kind != "linear":
            raise InputError("--stack composes linear heads only", field="--stack", fix="use --head linear")
        if not self.pairs:
            raise InputError("no pairs file given", field="--pairs")
        if self.max_length < 64:
            raise InputError(f"--max-length must be >= 64, got {self.max_length}", field="--max-length")
        if self.batch_size < 1:
            raise InputError(f"--batch-size must be >= 1, got {self.batch_size}", field="--batch-size")
        if not self.layers and not self.likelihood and not self.facts:
            raise InputError("no features selected", field="--layers", fix="keep at least one feature group")


@dataclass(frozen=True)
class PairRows:
    """Pairs with their feature rows: ``chosen``/``rejected`` are ``n x d`` arrays."""

    chosen: Any
    rejected: Any
    groups: list[str]
    columns: list[str]


def spec_for(settings: HeadTrainSettings, *, hidden_size: int, sha256: str) -> FeatureSpec:
    return FeatureSpec(backbone=settings.backbone, backbone_sha256=sha256, hidden_size=hidden_size,
                       input_format=InputFormat.CHAT_TEMPLATE.value, max_length=settings.max_length,
                       layers=settings.layers, pooling=settings.pooling, likelihood=settings.likelihood,
                       without_problem=settings.without_problem, facts=settings.facts)


class LazyExtractor:
    """The backbone is loaded only when a row is missing from the cache (a second head costs nothing)."""

    def __init__(self, backbone: str, spec_of: Callable[[int, str], FeatureSpec], *, batch_size: int,
                 dtype: str | None) -> None:
        from codescaler.feature_backbone import backbone_precision
        from codescaler.features import load_backbone

        self._load = lambda: load_backbone(backbone, dtype=dtype)
        self._spec_of = spec_of
        self._batch_size = batch_size
        self._extractor: FeatureExtractor | None = None
        self.spec = self._probe_spec(backbone)
        self.precision = backbone_precision(backbone, dtype=dtype)  # what get() will load in

    def _probe_spec(self, backbone: str) -> FeatureSpec:
        import json

        from codescaler.feature_backbone import backbone_folder, weights_sha256

        folder = backbone_folder(backbone)
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        return self._spec_of(int(config["hidden_size"]), weights_sha256(folder))

    def get(self) -> FeatureExtractor:
        if self._extractor is None:
            model, tokenizer, _sha = self._load()
            self._extractor = FeatureExtractor(model, tokenizer, self.spec, batch_size=self._batch_size)
        return self._extractor


def pair_rows(cache: FeatureCache, extractor: LazyExtractor, examples: Sequence[Any],
              progress: Callable[[int], None] | None = None) -> PairRows:
    """Feature rows of every pair's programs (computing the missing ones into the cache)."""
    prompts = [ex.prompt for ex in examples] * 2
    codes = [ex.chosen_code for ex in examples] + [ex.rejected_code for ex in examples]
    if cache.missing(prompts, codes):
        cache.fill(extractor.get(), prompts, codes, progress)
    rows = cache.get(prompts, codes)
    n = len(examples)
    return PairRows(rows[:n], rows[n:], [ex.group for ex in examples], cache.spec.names())


def read_all_pairs(paths: Sequence[Path], extract_mode: ExtractMode) -> tuple[list[Any], dict[str, Any]]:
    from codescaler.training import read_pairs

    examples: list[Any] = []
    counts: dict[str, Any] = {}
    for path in paths:
        found, c = read_pairs(path, extract_mode)
        examples += found
        counts[str(path)] = asdict(c)
    return examples, counts


def free_columns(names: tuple[str, ...], spec: FeatureSpec) -> tuple[str, ...]:
    """Column names for ``--free`` entries, each a column (``lp_mean``) or a group (``likelihood``)."""
    groups, columns = spec.groups(), spec.names()
    out: list[str] = []
    for name in names:
        if name in groups:
            out += groups[name]
        elif name in columns:
            out.append(name)
        else:
            raise InputError(f"--free {name!r} is neither a feature column nor a group of this spec",
                             field="--free", fix=f"use a group ({', '.join(groups)}) or a column such as lp_mean")
    return tuple(dict.fromkeys(out))


def train_head(settings: HeadTrainSettings, progress: Callable[[int], None] | None = None,
               on_total: Callable[[int], None] | None = None) -> tuple[Path, dict[str, Any]]:
    """Run the whole job; returns (checkpoint folder, manifest). Stage times are in the manifest."""
    settings.validate()
    times: dict[str, float] = {}
    started = time.monotonic()
    examples, counts = read_all_pairs(settings.pairs, settings.extract_mode)
    held, held_counts = read_all_pairs([settings.eval_pairs], settings.extract_mode) if settings.eval_pairs \
        else ([], None)
    extractor = LazyExtractor(settings.backbone, lambda width, sha: spec_for(settings, hidden_size=width, sha256=sha),
                              batch_size=settings.batch_size, dtype=settings.dtype)
    cache = FeatureCache(settings.cache_dir, extractor.spec, extractor.precision)
    free = free_columns(settings.head.free, extractor.spec)  # refused before any forward pass
    times["read_pairs"] = time.monotonic() - started
    t0 = time.monotonic()
    everything = list(examples) + list(held)
    if on_total is not None:
        prompts = [ex.prompt for ex in everything] * 2
        on_total(len(cache.missing(prompts, [ex.chosen_code for ex in everything]
                                   + [ex.rejected_code for ex in everything])))
    train = pair_rows(cache, extractor, examples, progress)
    heldout = pair_rows(cache, extractor, held, progress) if held else None
    times["features"] = time.monotonic() - t0
    t0 = time.monotonic()
    head = fit_head(train.chosen, train.rejected, train.groups, train.columns, replace(settings.head, free=free))
    times["fit_head"] = time.monotonic() - t0
    report = dict(head.report)
    if heldout is not None:
        report["heldout_accuracy"] = pairwise_accuracy(head.score(heldout.chosen), head.score(heldout.rejected))
        report["heldout_pairs"] = len(held)
    head.report = report
    spec = extractor.spec
    if settings.stack:
        t0 = time.monotonic()
        assert heldout is not None  # validate() requires eval_pairs
        head, spec = stack_head(head, spec, settings.stack, held, heldout, replace(settings.head, free=(), l2_grid=DEFAULT_L2_GRID),
                                batch_size=settings.batch_size, dtype=settings.dtype)
        times["stack"] = time.monotonic() - t0
    manifest = {
        "data": {"pairs": {str(p): file_sha256(p) for p in settings.pairs}, "counts": counts,
                 "eval_pairs": str(settings.eval_pairs) if settings.eval_pairs else None,
                 "eval_counts": held_counts, "train_pairs": len(examples),
                 "train_problems": len({ex.group for ex in examples})},
        "settings": _settings_dict(settings),
        "head": head.report,
        "stage_seconds": {k: round(v, 1) for k, v in times.items()},
        "versions": versions(),
        "reproduce": settings.command,
    }
    out = save_head_checkpoint(settings.output, head, spec, manifest, settings.extract_mode)
    return out, manifest


def stack_head(level1: Head, spec: FeatureSpec, members: Sequence[str], held: Sequence[Any], rows: PairRows,
               settings: HeadSettings, *, batch_size: int = 8, dtype: str | None = None,
               member_scores: Any = None) -> tuple[Head, FeatureSpec]:
    """Stack ``level1`` with the raw scores of RM checkpoints ``members``: a linear Bradley-Terry head
    over [level1's score, each member's score], fitted on the held-out pairs ``held`` (L2 by
    cross-validation grouped by problem, reported as the stack's ``cv_accuracy``), composed into one
    linear head over ``spec`` + ``rm_scores``. ``member_scores``: (chosen, rejected) arrays of the
    members' raw scores when already computed (else each member scores the held-out programs now, loaded in
    ``dtype``: the backbone's, as the stacked checkpoint will load it)."""
    import numpy as np

    from codescaler.feature_backbone import weights_sha256
    from codescaler.features import load_stacked_rm
    from codescaler.scorer import resolve_checkpoint

    shas = []
    for name in members:
        folder = Path(resolve_checkpoint(name))
        if not folder.is_dir():
            raise InputError(f"--stack {name!r} is not a local checkpoint folder", field="--stack",
                             fix="stack local checkpoints (a hub RM: download it first), e.g. --stack default")
        shas.append(weights_sha256(folder))
    if member_scores is None:
        prompts = [ex.prompt for ex in held]
        chosen, rejected = [], []
        for name, sha in zip(members, shas, strict=True):
            scorer = load_stacked_rm(name, sha, dtype=dtype, batch_size=batch_size)
            chosen.append(scorer.score_codes(prompts, [ex.chosen_code for ex in held]))
            rejected.append(scorer.score_codes(prompts, [ex.rejected_code for ex in held]))
            del scorer
        member_scores = (np.array(chosen, dtype=np.float32).T, np.array(rejected, dtype=np.float32).T)
    mc, mr = member_scores
    xc = np.column_stack([level1.score(rows.chosen), mc])
    xr = np.column_stack([level1.score(rows.rejected), mr])
    columns = ["level1", *(f"rm:{name}" for name in members)]
    top = fit_head(xc, xr, rows.groups, columns, settings)
    stacked_spec = replace(spec, rm_scores=tuple(members), rm_scores_sha256=tuple(shas))
    head = compose_stack(level1, top)
    head.report["stack"] = {"columns": columns, "weights": top.params["w"].tolist(), "l2": top.l2,
                            "heldout_pairs": len(held), "cv_accuracy": top.report.get("cv_accuracy"),
                            "member_accuracy": {c: pairwise_accuracy(mc[:, i], mr[:, i])
                                                for i, c in enumerate(columns[1:])}}
    if head.columns != stacked_spec.names():
        raise ValueError("stacked head columns differ from the stacked spec's")  # our fault
    return head, stacked_spec


def save_head_checkpoint(output: Path, head: Head, spec: FeatureSpec, manifest: dict[str, Any],
                         extract_mode: ExtractMode = ExtractMode.STRICT) -> Path:
    """Write a head checkpoint folder atomically (staging folder + rename); returns ``output``."""
    from transformers import AutoTokenizer

    from codescaler.model_card import write_model_card
    from codescaler.models import resolve_model

    if head.columns != spec.names():
        raise ValueError("head columns differ from the spec's")  # our fault
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.", dir=output.parent))
    try:
        head.save(staging)
        AutoTokenizer.from_pretrained(resolve_model(spec.backbone)).save_pretrained(staging)
        block = {**head.to_metadata(), "features": spec.to_dict()}
        meta = RMMetadata(format_version=2, input_format=InputFormat(spec.input_format), max_length=spec.max_length,
                          extract_mode=extract_mode, backbone=spec.backbone, base_model=spec.backbone,
                          head=block, manifest={**manifest, "backbone_hub_id": HUB_IDS.get(spec.backbone,
                                                                                         spec.backbone)})
        write_metadata(staging, meta)
        write_model_card(staging, meta)
        _apply_umask(staging)
        if output.exists():
            backup = output.with_name(f".{output.name}.old")
            shutil.rmtree(backup, ignore_errors=True)
            output.replace(backup)
            staging.replace(output)
            shutil.rmtree(backup, ignore_errors=True)
        else:
            staging.replace(output)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return output


def _apply_umask(folder: Path) -> None:
    """Temp files and folders are created private (0600/0700): give the checkpoint the user's umask."""
    import os

    mask = os.umask(0)
    os.umask(mask)
    folder.chmod(0o777 & ~mask)
    for path in folder.iterdir():
        path.chmod(0o666 & ~mask)


def _settings_dict(settings: HeadTrainSettings) -> dict[str, Any]:
    data = asdict(replace(settings, head=HeadSettings()))
    data["head"] = asdict(settings.head)
    return {k: (str(v) if isinstance(v, Path) else [str(x) for x in v] if k == "pairs" else
                v.value if hasattr(v, "value") else v) for k, v in data.items()}

