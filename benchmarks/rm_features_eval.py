"""The ablation table of benchmarks/rm_features.py: heads and baselines on cached rows (no forward pass here)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

# name -> (column groups, head kind, pair filter[, "free": the likelihood weights are not penalised])
MUTANT_SOURCES = ("leetcode-train", "mbpp")
LIK = ["likelihood"]
FACTS = ["facts"]


def hidden(*layers: int) -> list[str]:
    return [f"h{layer}.{pool}" for layer in layers for pool in ("last", "mean")]


CONFIGS: dict[str, tuple[Any, ...]] = {
    "likelihood": (LIK, "linear", "all"),
    "likelihood+facts": (LIK + FACTS, "linear", "all"),
    "hidden 24": (hidden(24), "linear", "all"),
    "hidden 12,18,24": (hidden(12, 18, 24), "linear", "all"),
    "hidden 8 + lik + facts": (hidden(8) + LIK + FACTS, "linear", "all"),
    "hidden 12 + lik + facts": (hidden(12) + LIK + FACTS, "linear", "all"),
    "hidden 18 + lik + facts": (hidden(18) + LIK + FACTS, "linear", "all"),
    "hidden 24 + lik + facts": (hidden(24) + LIK + FACTS, "linear", "all"),
    "hidden 12,18,24 + lik + facts": (hidden(12, 18, 24) + LIK + FACTS, "linear", "all"),
    "hidden 8,12,18,24 + lik + facts": (hidden(8, 12, 18, 24) + LIK + FACTS, "linear", "all"),
    "hidden 12,18,24 + lik + facts, mlp": (hidden(12, 18, 24) + LIK + FACTS, "mlp", "all"),
    "likelihood+facts, mlp": (LIK + FACTS, "mlp", "all"),
    "hidden 24 + lik (free) + facts": (hidden(24) + LIK + FACTS, "linear", "all", "free"),
    "hidden 12,18,24 + lik (free) + facts": (hidden(12, 18, 24) + LIK + FACTS, "linear", "all", "free"),
    "hidden 12 + lik (free) + facts": (hidden(12) + LIK + FACTS, "linear", "all", "free"),
    "hidden 12,18,24 + lik + facts, mutant pairs only": (hidden(12, 18, 24) + LIK + FACTS, "linear", "mutant"),
    "hidden 12,18,24 + lik + facts, real-sample pairs only": (hidden(12, 18, 24) + LIK + FACTS, "linear", "real"),
}


def _columns(groups_of: dict[str, list[str]], names: list[str], groups: list[str]) -> list[int]:
    index = {n: i for i, n in enumerate(names)}
    return [index[c] for g in groups for c in groups_of[g]]


def _set_figure(result: dict[str, Any]) -> float:
    return result["accuracy"] if "accuracy" in result else result["average"]


def run_ablations(cache: Any, train: list[Any], val: list[Any], sets: dict[str, tuple[str, Any]],
                  sources: dict[str, str], out: Path, stats: dict[str, Any], *, ship: Path | None,
                  seed: int) -> dict[str, Any]:
    from codescaler.bench import pairwise
    from codescaler.heads import HeadSettings, fit_head
    from codescaler.records import ExtractMode

    spec = cache.spec
    names = spec.names()
    groups_of = spec.groups()
    pr = [ex.prompt for ex in train]
    xc = cache.get(pr, [ex.chosen_code for ex in train])
    xr = cache.get(pr, [ex.rejected_code for ex in train])
    groups = [ex.group for ex in train]
    # leetcode-train and mbpp give reference-vs-mutant pairs only; the other sources real LLM samples
    mutant = np.array([sources.get(ex.group) in MUTANT_SOURCES for ex in train])
    rows: dict[str, dict[str, Any]] = {}
    heads: dict[str, tuple[Any, list[int]]] = {}

    def score_fn_of(cols: list[int], f: Any) -> Any:
        def score(prompts: Any, codes: Any) -> list[float]:
            return [float(v) for v in f(cache.get(list(prompts), list(codes))[:, cols])]
        return score

    for name, (col_groups, kind, subset, *options) in CONFIGS.items():
        cols = _columns(groups_of, names, col_groups)
        free = tuple(groups_of["likelihood"]) if "free" in options else ()
        keep = np.ones(len(train), dtype=bool) if subset == "all" else (mutant if subset == "mutant" else ~mutant)
        if keep.sum() < 10:
            continue
        started = time.monotonic()
        head = fit_head(xc[keep][:, cols], xr[keep][:, cols], [g for g, k in zip(groups, keep, strict=True) if k],
                        [names[c] for c in cols], HeadSettings(kind=kind, seed=seed, folds=5, free=free))
        heads[name] = (head, cols)
        rows[name] = {"kind": "head", "pairs": int(keep.sum()), "data": subset, "cv_accuracy": head.report.get("cv_accuracy"),
                      "l2": head.report.get("l2"), "fit_seconds": round(time.monotonic() - started, 2),
                      "columns": len(cols)}
    lp = names.index("lp_mean")
    rng = np.random.default_rng(seed)
    last = _columns(groups_of, names, ["h24.last"])
    w_random = rng.normal(0, 0.02, size=len(last)).astype(np.float32)
    baselines = {
        "logprob (mean token log-prob)": ([lp], lambda x: x[:, 0]),
        "untrained backbone (random head, h24 last token)": (last, lambda x: x @ w_random),
        "shorter code wins": ([names.index("log_chars")], lambda x: -x[:, 0]),
        "longer code wins": ([names.index("log_chars")], lambda x: x[:, 0]),
    }
    for name, (_cols, _f) in baselines.items():
        rows[name] = {"kind": "baseline"}
    scorers = {name: score_fn_of(cols, head.score) for name, (head, cols) in heads.items()}
    scorers.update({name: score_fn_of(cols, f) for name, (cols, f) in baselines.items()})
    for set_name, (kind, items) in sets.items():
        modes = [ExtractMode.STRICT, ExtractMode.LENIENT] if kind == "rm-bench" else [ExtractMode.STRICT]
        for mode in modes:
            label = set_name + (f" ({mode.value})" if kind == "rm-bench" else "")
            for name, fn in scorers.items():
                try:
                    if kind == "pairs":
                        result = pairwise.evaluate_pairs(items, fn, extract_mode=mode)
                    else:
                        result = pairwise.evaluate_rm_bench(items, fn, input_mode="code", extract_mode=mode)
                except KeyError:
                    continue  # features of this set not computed (a run cut short)
                rows[name][label] = result
    report = {"features": stats, "spec": spec.to_dict(), "train_pairs": len(train), "rows": rows,
              "train_sources": _source_counts(train, sources)}
    (out / "ablations.json").write_text(json.dumps(report, indent=2, default=str), encoding="utf-8")
    table = render(rows, list(sets), sets)
    (out / "ablations.md").write_text(table, encoding="utf-8")
    print(table)
    if ship is not None:
        # CV accuracies are comparable only between heads fitted on the same pairs: choose among "all".
        best = max((n for n in heads if rows[n]["data"] == "all"), key=lambda n: rows[n]["cv_accuracy"] or 0.0)
        _ship(ship, heads[best][0], spec, best, report, train)
    return report


def _source_counts(train: list[Any], sources: dict[str, str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for ex in train:
        key = sources.get(ex.group, "unknown")
        out[key] = out.get(key, 0) + 1
    return out


def render(rows: dict[str, dict[str, Any]], set_names: list[str], sets: dict[str, tuple[str, Any]]) -> str:
    labels = []
    for name in set_names:
        labels += [f"{name} (strict)", f"{name} (lenient)"] if sets[name][0] == "rm-bench" else [name]
    head = "| scorer | CV acc (train) | " + " | ".join(labels) + " |"
    lines = [head, "|---|---|" + "---|" * len(labels)]
    for name, row in rows.items():
        cv = row.get("cv_accuracy")
        cells = []
        for label in labels:
            result = row.get(label)
            cells.append("–" if result is None else f"{100 * _set_figure(result):.1f}")
        lines.append(f"| {name} | {'' if cv is None else f'{100 * cv:.1f}'} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n\nPairwise accuracy (%, ties half); RM-Bench: average of the official 3x3 matrix.\n"


def _ship(target: Path, head: Any, spec: Any, name: str, report: dict[str, Any], train: list[Any]) -> None:
    from codescaler.features import FeatureSpec
    from codescaler.head_training import save_head_checkpoint

    groups = sorted({c.rsplit(".", 1)[0] for c in head.columns if c.startswith("h")})
    layers = tuple(sorted({int(g[1:].split(".")[0]) for g in groups}))
    pooling = tuple(p for p in ("last", "mean") if any(g.endswith(p) for g in groups))
    sub = FeatureSpec(**{**spec.to_dict(), "layers": layers, "pooling": pooling if layers else (),
                         "likelihood": "lp_mean" in head.columns, "facts": "log_chars" in head.columns})
    assert sub.names() == head.columns, "shipped head columns must be a computable spec"
    figures = {f"{label}, {v.get('n')} pairs/prompts": f"{100 * _set_figure(v):.1f}%"
               for label, v in report["rows"][name].items() if isinstance(v, dict)}
    manifest = {"data": {"train_pairs": len(train), "train_problems": len({ex.group for ex in train}),
                         "train_sources": report["train_sources"]},
                "ablation": name, "heldout_figures": figures, "head": head.report,
                "features_throughput": report["features"],
                "reproduce": "python benchmarks/rm_features.py --ship " + str(target)}
    save_head_checkpoint(target, head, sub, manifest)
    # The shipped default names a backbone the set-up rebuilds offline, tokenizer included: do not commit
    # a second copy of its tokenizer (11 MB); a head trained by a user keeps its tokenizer files.
    for path in target.iterdir():
        if path.name.startswith(("tokenizer", "vocab", "merges", "special_tokens", "chat_template", "added_tokens")):
            path.unlink()
    print(f"shipped {name!r} to {target}")
