"""Bradley–Terry heads over cached backbone features: fit, cross-validate, save, apply (L2).

Contract
--------
- A head maps a feature row (``codescaler.features``) to a raw score. Training data are pairs of rows
  (chosen, rejected); the loss is Bradley–Terry, ``-log σ(s(chosen) - s(rejected))``, summed over
  pairs with optional per-pair weights, plus L2 regularisation of strength ``l2``.
- Features are standardised with the mean and std of the training programs (std floored at
  ``STD_FLOOR``, so constant columns are harmless); the statistics are part of the head.
- ``linear``: s(x) = w·z (no bias: a constant cancels in every comparison). Fitted by L-BFGS to
  convergence (the loss is convex). ``mlp``: s(x) = w·z + v·gelu(W z + b) (a linear skip plus a small
  hidden layer), fitted by AdamW for a fixed number of epochs.
- ``free`` columns (e.g. the likelihood group) are not penalised, so that a strongly regularised head
  is the fitted no-training baseline plus a small correction, not a shrunken one.
- ``l2`` is chosen by K-fold cross-validation grouped by problem (a problem's pairs are never split
  across folds), on pairwise accuracy (ties half) then log-loss; the final head is refitted on all pairs.
- Saved as ``head.safetensors`` (tensors) + the ``head`` block of ``codescaler.json`` (kind, columns,
  hyperparameters, CV report). Applying a head needs only torch.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from codescaler.errors import InputError

logger = logging.getLogger(__name__)

HEAD_FILE = "head.safetensors"
KINDS = ("linear", "mlp")
STD_FLOOR = 1e-4
DEFAULT_L2_GRID = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)


@dataclass(frozen=True)
class HeadSettings:
    """How to fit a head. ``l2_grid``: candidates for cross-validation (one value = no CV)."""

    kind: str = "linear"
    l2_grid: tuple[float, ...] = DEFAULT_L2_GRID
    folds: int = 5
    hidden: int = 64
    epochs: int = 40
    lr: float = 3e-3
    seed: int = 0
    free: tuple[str, ...] = ()   # columns whose weight is not penalised: the head falls back to them as l2 grows

    def validate(self) -> None:
        if self.kind not in KINDS:
            raise InputError(f"unknown head {self.kind!r}", field="head", fix=f"use one of {', '.join(KINDS)}")
        if not self.l2_grid or any(not (v >= 0 and math.isfinite(v)) for v in self.l2_grid):
            raise InputError(f"l2 values must be finite and >= 0, got {list(self.l2_grid)}", field="l2")
        if self.folds < 2 and len(self.l2_grid) > 1:
            raise InputError(f"cross-validation needs >= 2 folds, got {self.folds}", field="folds")
        if self.hidden < 1 or self.epochs < 1 or not self.lr > 0:
            raise InputError("hidden, epochs and lr must be positive", field="head")


@dataclass
class Head:
    """A fitted head: ``score(rows)`` -> raw scores (module contract)."""

    kind: str
    columns: list[str]
    mean: Any                    # torch float32 (d,)
    std: Any                     # torch float32 (d,)
    params: dict[str, Any]       # torch tensors: "w" (d,), and for mlp "W" (h, d), "b" (h,), "v" (h,)
    l2: float = 0.0
    report: dict[str, Any] = field(default_factory=dict)

    def score(self, rows: Any) -> Any:
        """Raw scores (numpy float32) for feature rows (numpy or torch, ``n x d``)."""
        import torch

        x = torch.as_tensor(rows, dtype=torch.float32)
        with torch.no_grad():
            return _forward(self.kind, self.params, (x - self.mean) / self.std).numpy()

    def to_metadata(self) -> dict[str, Any]:
        """The ``head`` block of ``codescaler.json`` (tensors live in ``HEAD_FILE``)."""
        return {"kind": self.kind, "file": HEAD_FILE, "columns_sha256": columns_sha256(self.columns),
                "n_columns": len(self.columns), "l2": self.l2, "report": self.report}

    def save(self, folder: str | Path) -> Path:
        """Write ``HEAD_FILE`` (atomic) with the parameters, normalisation and column names."""
        import json

        from safetensors.torch import save_file

        target = Path(folder) / HEAD_FILE
        tensors = {"mean": self.mean, "std": self.std, **{f"param.{k}": v for k, v in self.params.items()}}
        tmp = target.with_name(f".{target.name}.tmp")
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp),
                  metadata={"kind": self.kind, "columns": json.dumps(self.columns)})
        tmp.replace(target)
        return target


def compose_stack(level1: Head, stack: Head) -> Head:
    """One linear head equal to ``stack`` applied to [``level1``'s score, the stack's other columns].

    ``level1`` is a linear head over feature columns; ``stack`` a linear head whose first column is
    level1's score and whose other columns are further features (e.g. ``rm:default``, another RM's raw
    score). The result is a linear head over ``level1.columns + stack.columns[1:]`` that scores exactly
    what the two-level computation scores (the constant from level1's standardisation is folded into
    the mean of the first column with a nonzero weight), so it loads and scores like any head. Its report
    is level1's; the caller records the stack's own figures.
    """
    import torch

    if level1.kind != "linear" or stack.kind != "linear":
        raise InputError("only linear heads compose into one head", field="head.kind", fix="use --head linear")
    w0, m0, s0 = float(stack.params["w"][0]), float(stack.mean[0]), float(stack.std[0])
    w = torch.cat([level1.params["w"] * (w0 / s0), stack.params["w"][1:]])
    mean = torch.cat([level1.mean, stack.mean[1:]]).clone()
    std = torch.cat([level1.std, stack.std[1:]])
    offset = -w0 * m0 / s0   # what the stack adds for level1's score after dropping its mean
    nonzero = [i for i in range(len(w)) if float(w[i]) != 0.0]
    if offset and nonzero:
        i = nonzero[-1]
        mean[i] = mean[i] - offset * float(std[i]) / float(w[i])
    return Head("linear", list(level1.columns) + list(stack.columns[1:]), mean, std, {"w": w},
                l2=stack.l2, report=dict(level1.report))


def pairwise_accuracy(chosen: Any, rejected: Any) -> float:
    """Share of pairs whose chosen score is above the rejected one, ties counting half (0.0 for no pairs).

    The one definition of pairwise accuracy for heads: cross-validation, training and held-out reports.
    """
    import numpy as np
    diff = np.asarray(chosen, dtype=np.float64) - np.asarray(rejected, dtype=np.float64)
    return float(((diff > 0).sum() + 0.5 * (diff == 0).sum()) / max(diff.size, 1))


def columns_sha256(columns: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(columns).encode()).hexdigest()


def load_head(folder: str | Path, block: dict[str, Any]) -> Head:
    """Read a head saved by ``Head.save``; ``block`` is the ``head`` entry of ``codescaler.json``.

    Raises ``InputError`` naming the field for an unknown kind, a missing or corrupt file, or columns
    that do not match the metadata.
    """
    import json

    from safetensors import safe_open

    path = Path(folder) / str(block.get("file", HEAD_FILE))
    kind = block.get("kind")
    if kind not in KINDS:
        raise InputError(f"unknown head kind {kind!r}", path=str(Path(folder) / "codescaler.json"),
                         field="head.kind", fix=f"this codescaler knows {', '.join(KINDS)}; upgrade it")
    try:
        with safe_open(str(path), framework="pt") as handle:
            meta = handle.metadata() or {}
            tensors = {k: handle.get_tensor(k) for k in handle.keys()}  # noqa: SIM118 (safe_open API)
    except FileNotFoundError:
        raise InputError("head weights missing", path=str(path), field="head.file",
                         fix="copy the whole checkpoint folder") from None
    except Exception as err:  # safetensors raises its own error types for truncated files
        raise InputError(f"head weights unreadable ({err})", path=str(path), field="head.file",
                         fix="re-copy or retrain the checkpoint") from None
    columns = json.loads(meta.get("columns", "[]"))
    if block.get("columns_sha256") and columns_sha256(columns) != block["columns_sha256"]:
        raise InputError("head columns do not match codescaler.json", path=str(path), field="head.columns_sha256",
                         fix="re-copy the checkpoint folder (files from two different heads)")
    params = {k.removeprefix("param."): v.float() for k, v in tensors.items() if k.startswith("param.")}
    return Head(kind, columns, tensors["mean"].float(), tensors["std"].float(), params,
                float(block.get("l2", 0.0)), dict(block.get("report", {})))


# --------------------------------------------------------------------------------------------------
# Fitting


def fit_head(chosen: Any, rejected: Any, groups: Sequence[str], columns: Sequence[str],
             settings: HeadSettings, weights: Any = None) -> Head:
    """Fit a head on paired feature rows (``n x d`` each; row k of both = pair k of problem groups[k]).

    Chooses ``l2`` by grouped cross-validation when the grid has several values, then refits on all.
    """
    import numpy as np
    import torch

    settings.validate()
    xc = torch.as_tensor(np.asarray(chosen, dtype=np.float32))
    xr = torch.as_tensor(np.asarray(rejected, dtype=np.float32))
    if xc.shape != xr.shape or xc.shape[0] != len(groups) or xc.shape[1] != len(columns):
        raise InputError(f"feature shapes {tuple(xc.shape)} / {tuple(xr.shape)} do not match {len(groups)} pairs "
                         f"x {len(columns)} columns", field="features")
    if xc.shape[0] < 2:
        raise InputError(f"need at least 2 pairs to fit a head, got {xc.shape[0]}", field="pairs")
    w = torch.ones(xc.shape[0]) if weights is None else torch.as_tensor(np.asarray(weights, dtype=np.float32))
    report: dict[str, Any] = {"pairs": int(xc.shape[0]), "problems": len(set(groups)), "kind": settings.kind}
    l2 = settings.l2_grid[0]
    folds = _fold_of(groups, settings.folds, settings.seed)
    if len(settings.l2_grid) > 1 and len(set(folds.tolist())) < 2:
        # every problem fell into one fold (very few problems): nothing to validate on
        l2 = sorted(settings.l2_grid)[len(settings.l2_grid) // 2]
        logger.warning("head %s: %d problems give no usable cross-validation fold; l2 = %g without CV",
                       settings.kind, len(set(groups)), l2)
        report["cv_skipped"] = "all problems in one fold"
    elif len(settings.l2_grid) > 1:
        cv = []
        for value in settings.l2_grid:
            accs, losses = [], []
            for k in range(settings.folds):
                test = folds == k
                if not test.any() or test.all():
                    continue
                head = _fit_once(xc[~test], xr[~test], w[~test], list(columns), settings, value)
                chosen, rejected = head.score(xc[test]), head.score(xr[test])
                margin = torch.as_tensor(chosen - rejected)
                accs.append(pairwise_accuracy(chosen, rejected))
                losses.append(float(torch.nn.functional.softplus(-margin).mean()))
            cv.append({"l2": value, "accuracy": sum(accs) / len(accs), "log_loss": sum(losses) / len(losses)})
            logger.info("head %s l2=%g: CV accuracy %.4f, log-loss %.4f", settings.kind, value,
                        cv[-1]["accuracy"], cv[-1]["log_loss"])
        best = max(cv, key=lambda r: (round(r["accuracy"], 4), -r["log_loss"]))
        l2 = best["l2"]
        report.update({"cv": cv, "cv_folds": settings.folds, "cv_accuracy": best["accuracy"]})
    head = _fit_once(xc, xr, w, list(columns), settings, l2)
    report["train_accuracy"] = pairwise_accuracy(head.score(xc), head.score(xr))
    report["l2"] = l2
    head.report = report
    return head


def _fold_of(groups: Sequence[str], folds: int, seed: int) -> Any:
    import numpy as np

    def fold(group: str) -> int:
        digest = hashlib.sha256(f"{seed}:{group}".encode()).digest()
        return int.from_bytes(digest[:8], "big") % folds

    return np.array([fold(g) for g in groups])


def _fit_once(xc: Any, xr: Any, w: Any, columns: list[str], settings: HeadSettings, l2: float) -> Head:
    import torch

    both = torch.cat([xc, xr])
    penalised = torch.tensor([c not in settings.free for c in columns], dtype=torch.float32)
    mean = both.mean(0)
    std = both.std(0).clamp_min(STD_FLOOR)
    zc, zr = (xc - mean) / std, (xr - mean) / std
    torch.manual_seed(settings.seed)
    d = xc.shape[1]
    params: dict[str, Any] = {"w": torch.zeros(d, requires_grad=True)}
    if settings.kind == "mlp":
        params["W"] = (torch.randn(settings.hidden, d) / math.sqrt(d)).requires_grad_()
        params["b"] = torch.zeros(settings.hidden, requires_grad=True)
        params["v"] = torch.zeros(settings.hidden, requires_grad=True)
    total = float(w.sum())

    def loss_fn(rows: Any = None) -> Any:
        a, b_, ww = (zc, zr, w) if rows is None else (zc[rows], zr[rows], w[rows])
        margin = _forward(settings.kind, params, a) - _forward(settings.kind, params, b_)
        data = (ww * torch.nn.functional.softplus(-margin)).sum() / (total if rows is None else float(ww.sum()))
        reg = (penalised * params["w"] ** 2).sum() + sum((p ** 2).sum() for k, p in params.items()
                                                          if k not in ("b", "w"))
        return data + 0.5 * l2 * reg

    if settings.kind == "linear":
        opt = torch.optim.LBFGS(list(params.values()), lr=1.0, max_iter=500, tolerance_grad=1e-7,
                                tolerance_change=1e-10, history_size=20, line_search_fn="strong_wolfe")

        def closure() -> Any:
            opt.zero_grad()
            loss = loss_fn()
            loss.backward()
            return loss

        opt.step(closure)
    else:
        opt2 = torch.optim.Adam(list(params.values()), lr=settings.lr)
        generator = torch.Generator().manual_seed(settings.seed)
        n = zc.shape[0]
        batch = min(256, n)
        for _ in range(settings.epochs):
            order = torch.randperm(n, generator=generator)
            for s in range(0, n, batch):
                opt2.zero_grad()
                loss_fn(order[s:s + batch]).backward()
                opt2.step()
    return Head(settings.kind, columns, mean, std, {k: p.detach().clone() for k, p in params.items()}, l2)


def _forward(kind: str, params: dict[str, Any], z: Any) -> Any:
    import torch

    out = z @ params["w"]
    if kind == "mlp":
        out = out + torch.nn.functional.gelu(z @ params["W"].T + params["b"]) @ params["v"]
    return out
