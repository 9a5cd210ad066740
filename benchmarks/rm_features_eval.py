"""The ablation table of benchmarks/rm_features.py: heads and baselines on cached rows (no forward pass here)."""

from __future__ import annotations

import functools
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

# name -> (column groups, head kind, pair subset[, option]). Subsets: all, mutant, real (by source),
# balanced (as many chosen-longer as chosen-shorter pairs), dedup (one pair per identical code pair up
# to whitespace). Options: "free" = the likelihood weights are not penalised; "free-lp" = only the mean
# token log-prob is (a strongly regularised head is the fitted log-prob judge plus a small correction).
MUTANT_SOURCES = ("leetcode-train", "mbpp")
LIK = ["likelihood"]
FACTS = ["facts"]
NOP = ["without_problem"]  # rows of WithoutProblemRows only (rm_features.py --without-problem)


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
    "hidden 24 + lik + facts, lp_mean free": (hidden(24) + LIK + FACTS, "linear", "all", "free-lp"),
    "hidden 12,18,24 + lik + facts, lp_mean free": (hidden(12, 18, 24) + LIK + FACTS, "linear", "all", "free-lp"),
    "hidden 24 + lik (free) + facts, mlp": (hidden(24) + LIK + FACTS, "mlp", "all", "free"),
    "hidden 24 + lik (free) + facts, length-balanced pairs": (hidden(24) + LIK + FACTS, "linear", "balanced", "free"),
    "hidden 24 + lik (free) + facts, deduplicated pairs": (hidden(24) + LIK + FACTS, "linear", "dedup", "free"),
    "hidden 24 + lik (free) + facts, mutant pairs only": (hidden(24) + LIK + FACTS, "linear", "mutant", "free"),
    "hidden 24 + lik (free) + facts, real-sample pairs only": (hidden(24) + LIK + FACTS, "linear", "real", "free"),
    "hidden 12,18,24 + lik + facts, mutant pairs only": (hidden(12, 18, 24) + LIK + FACTS, "linear", "mutant"),
    "hidden 12,18,24 + lik + facts, real-sample pairs only": (hidden(12, 18, 24) + LIK + FACTS, "linear", "real"),
    "hidden 8 + lik + facts, mutant pairs only": (hidden(8) + LIK + FACTS, "linear", "mutant"),
    "hidden 12 + lik + facts, mutant pairs only": (hidden(12) + LIK + FACTS, "linear", "mutant"),
    "hidden 12,18,24 + lik + facts, lp_mean free, mutant pairs only": (hidden(12, 18, 24) + LIK + FACTS, "linear",
                                                                       "mutant", "free-lp"),
    "hidden 12,18,24 + lik (free) + facts, mutant pairs only": (hidden(12, 18, 24) + LIK + FACTS, "linear", "mutant",
                                                                "free"),
    # the code's log-prob under an empty problem, and how much the problem explains it (PMI)
    "likelihood + no-problem + facts": (LIK + NOP + FACTS, "linear", "all"),
    "hidden 24 + lik + no-problem + facts": (hidden(24) + LIK + NOP + FACTS, "linear", "all"),
    "hidden 12,18,24 + lik + no-problem + facts": (hidden(12, 18, 24) + LIK + NOP + FACTS, "linear", "all"),
    "hidden 12,18,24 + lik + no-problem + facts, lp_mean free": (hidden(12, 18, 24) + LIK + NOP + FACTS, "linear",
                                                                 "all", "free-lp"),
}


class WithoutProblemRows:
    """Rows of ``main`` (a FeatureCache) with the four ``without_problem`` columns inserted where a spec
    with ``without_problem`` puts them (after the likelihood, before the program facts), read from
    ``alone``: a likelihood-only cache of the same codes under an empty problem. The values are those
    ``FeatureExtractor`` computes for such a spec (``np_lp_mean``, ``np_lp_sum``, ``pmi_mean``,
    ``pmi_sum``), without recomputing the main rows."""

    def __init__(self, main: Any, alone: Any) -> None:
        from dataclasses import replace

        self.main, self.alone = main, alone
        self.spec = replace(main.spec, without_problem=True)
        names, alone_names = main.spec.names(), alone.spec.names()
        self._with = [names.index("lp_mean"), names.index("lp_sum")]
        self._alone = [alone_names.index("lp_mean"), alone_names.index("lp_sum")]
        self._at = names.index("log_chars") if main.spec.facts else len(names)

    def get(self, prompts: Any, codes: Any) -> Any:
        rows = self.main.get(prompts, codes)
        alone = self.alone.get([""] * len(codes), codes)[:, self._alone]
        extra = np.concatenate([alone, rows[:, self._with] - alone], axis=1)
        return np.concatenate([rows[:, : self._at], extra, rows[:, self._at:]], axis=1).astype(np.float32)


def _columns(groups_of: dict[str, list[str]], names: list[str], groups: list[str]) -> list[int]:
    index = {n: i for i, n in enumerate(names)}
    return [index[c] for g in groups for c in groups_of[g]]


def free_of(options: Any, groups_of: dict[str, list[str]]) -> tuple[str, ...]:
    """The unpenalised columns a config's options name ("free": every likelihood column, "free-lp": lp_mean)."""
    if "free" in options:
        return tuple(groups_of["likelihood"])
    return ("lp_mean",) if "free-lp" in options else ()


def set_modes(kind: str) -> list[tuple[Any, str]]:
    """(extraction mode, label suffix) of an evaluation set: RM-Bench both ways, pair sets strict."""
    from codescaler.records import ExtractMode

    if kind == "rm-bench":
        return [(mode, f" ({mode.value})") for mode in (ExtractMode.STRICT, ExtractMode.LENIENT)]
    return [(ExtractMode.STRICT, "")]


def evaluate_sets(sets: dict[str, tuple[str, Any]], scorers: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every scorer on every set (and extraction mode): {scorer: {set label: result}}; a scorer whose
    rows of a set are missing (a run cut short: ``KeyError``) has no entry for that set."""
    from codescaler.bench import pairwise

    out: dict[str, dict[str, Any]] = {name: {} for name in scorers}
    for set_name, (kind, items) in sets.items():
        for mode, suffix in set_modes(kind):
            for name, fn in scorers.items():
                try:
                    if kind == "pairs":
                        result = pairwise.evaluate_pairs(items, fn, extract_mode=mode)
                    else:
                        result = pairwise.evaluate_rm_bench(items, fn, input_mode="code", extract_mode=mode)
                except KeyError:
                    continue
                out[name][set_name + suffix] = result
    return out


def _set_figure(result: dict[str, Any]) -> float:
    return result["accuracy"] if "accuracy" in result else result["average"]


def run_ablations(cache: Any, train: list[Any], val: list[Any], sets: dict[str, tuple[str, Any]],
                  sources: dict[str, str], out: Path, stats: dict[str, Any], *, ship: Path | None,
                  seed: int, checkpoints: tuple[str, ...] = (), limit: int | None = None) -> dict[str, Any]:
    from codescaler.heads import HeadSettings, fit_head, pairwise_accuracy

    spec = cache.spec
    names = spec.names()
    groups_of = spec.groups()
    pr = [ex.prompt for ex in train]
    xc = cache.get(pr, [ex.chosen_code for ex in train])
    xr = cache.get(pr, [ex.rejected_code for ex in train])
    groups = [ex.group for ex in train]
    vp = [ex.prompt for ex in val]
    vc = cache.get(vp, [ex.chosen_code for ex in val]) if val else np.zeros((0, len(names)), dtype=np.float32)
    vr = cache.get(vp, [ex.rejected_code for ex in val]) if val else vc
    # leetcode-train and mbpp give reference-vs-mutant pairs only; the other sources real LLM samples
    mutant = np.array([sources.get(ex.group) in MUTANT_SOURCES for ex in train])
    rows: dict[str, dict[str, Any]] = {}
    heads: dict[str, tuple[Any, list[int]]] = {}

    def score_fn_of(cols: list[int], f: Any) -> Any:
        def score(prompts: Any, codes: Any) -> list[float]:
            return [float(v) for v in f(cache.get(list(prompts), list(codes))[:, cols])]
        return score

    subsets = {"all": np.ones(len(train), dtype=bool), "mutant": mutant, "real": ~mutant,
               "balanced": _length_balanced(train, seed), "dedup": _deduplicated(train)}
    for name, (col_groups, kind, subset, *options) in CONFIGS.items():
        if any(g not in groups_of for g in col_groups):  # e.g. no-problem columns without --without-problem
            continue
        cols = _columns(groups_of, names, col_groups)
        free = free_of(options, groups_of)
        keep = subsets[subset]
        if keep.sum() < 10:
            continue
        started = time.monotonic()
        head = fit_head(xc[keep][:, cols], xr[keep][:, cols], [g for g, k in zip(groups, keep, strict=True) if k],
                        [names[c] for c in cols], HeadSettings(kind=kind, seed=seed, folds=5, free=free))
        heads[name] = (head, cols)
        rows[name] = {"kind": "head", "pairs": int(keep.sum()), "data": subset, "cv_accuracy": head.report.get("cv_accuracy"),
                      "l2": head.report.get("l2"), "fit_seconds": round(time.monotonic() - started, 2),
                      "columns": len(cols)}
        if len(vc):
            rows[name]["val_accuracy"] = pairwise_accuracy(head.score(vc[:, cols]), head.score(vr[:, cols]))
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
    for name, (cols, f) in baselines.items():
        rows[name] = {"kind": "baseline"}
        if len(vc):
            rows[name]["val_accuracy"] = pairwise_accuracy(f(vc[:, cols]), f(vr[:, cols]))
    scorers = {name: score_fn_of(cols, head.score) for name, (head, cols) in heads.items()}
    scorers.update({name: score_fn_of(cols, f) for name, (cols, f) in baselines.items()})
    for spec_name in checkpoints:  # checkpoints scored by their own forward passes (e.g. the LoRA RM)
        rows[f"checkpoint {spec_name}"] = {"kind": "checkpoint",
                                           **_checkpoint_results(spec_name, sets, out, limit)}
    for name, results in evaluate_sets(sets, scorers).items():
        rows[name].update(results)
    report = {"features": stats, "spec": spec.to_dict(), "train_pairs": len(train), "rows": rows,
              "train_sources": _source_counts(train, sources)}
    (out / "ablations.json").write_text(json.dumps(report, indent=2, default=str), encoding="utf-8")
    table = render(rows, list(sets), sets)
    (out / "ablations.md").write_text(table, encoding="utf-8")
    print(table)
    if ship is not None:
        # The choice is made on TRAIN-side figures only, never on the evaluation sets: validation accuracy
        # (problems held out of TRAIN) where there are validation pairs, then CV accuracy. CV accuracies are
        # comparable only between heads fitted on the same pairs, so the choice is among the "all" heads.
        best = max((n for n in heads if rows[n]["data"] == "all"),
                   key=lambda n: (rows[n].get("val_accuracy") or 0.0, rows[n]["cv_accuracy"] or 0.0))
        _ship(ship, heads[best][0], spec, best, report, train)
    return report


def _checkpoint_results(spec: str, sets: dict[str, tuple[str, Any]], out: Path,
                        limit: int | None) -> dict[str, Any]:
    """Results of a checkpoint (``rm_heldout``'s scorer specs) on the same items; kept per set in
    ``out`` so a rerun does not score again (the file name carries the subset size)."""
    from rm_heldout import evaluate_cached, make_scorer

    results: dict[str, Any] = {}
    scorer = functools.cache(functools.partial(make_scorer, spec))  # loaded on first use
    for set_name, (kind, items) in sets.items():
        for mode, suffix in set_modes(kind):
            label = set_name + suffix
            path = out / f"checkpoint.{spec.replace(':', '_').replace('/', '_')}.{label.replace(' ', '')}" \
                         f".first{limit or 'all'}.json"
            results[label] = evaluate_cached(path, kind, items, scorer, input_mode="code", extract_mode=mode)
    return results


def _length_balanced(train: list[Any], seed: int) -> Any:
    """A mask with as many pairs whose chosen code is longer as pairs whose chosen code is shorter."""
    longer = np.array([len(ex.chosen_code) > len(ex.rejected_code) for ex in train])
    shorter = np.array([len(ex.chosen_code) < len(ex.rejected_code) for ex in train])
    keep = np.zeros(len(train), dtype=bool)
    n = int(min(longer.sum(), shorter.sum()))
    rng = np.random.default_rng(seed)
    for side in (longer, shorter):
        keep[rng.choice(np.flatnonzero(side), size=n, replace=False)] = True
    return keep


def _deduplicated(train: list[Any]) -> Any:
    """A mask keeping the first of pairs whose two programs are identical up to whitespace."""
    seen: set[tuple[str, str, str]] = set()
    keep = np.zeros(len(train), dtype=bool)
    for i, ex in enumerate(train):
        key = (ex.prompt, " ".join(ex.chosen_code.split()), " ".join(ex.rejected_code.split()))
        keep[i] = key not in seen
        seen.add(key)
    return keep


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
    head = "| scorer | pairs | CV acc (train) | val | " + " | ".join(labels) + " |"
    lines = [head, "|---|---|---|---|" + "---|" * len(labels)]
    for name, row in rows.items():
        cv, val = row.get("cv_accuracy"), row.get("val_accuracy")
        cells = [str(row.get("pairs", "")), "" if cv is None else f"{100 * cv:.1f}",
                 "" if val is None else f"{100 * val:.1f}"]
        for label in labels:
            result = row.get(label)
            cells.append("–" if result is None else f"{100 * _set_figure(result):.1f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n\nPairwise accuracy (%, ties half); RM-Bench: average of the official 3x3 matrix.\n"


def _ship(target: Path, head: Any, spec: Any, name: str, report: dict[str, Any], train: list[Any]) -> None:
    from codescaler.head_training import save_head_checkpoint

    sub = sub_spec(spec, head.columns)
    figures = {f"{label}, {v.get('n')} pairs/prompts": f"{100 * _set_figure(v):.1f}%"
               for label, v in report["rows"][name].items() if isinstance(v, dict)}
    manifest = {"data": {"train_pairs": len(train), "train_problems": len({ex.group for ex in train}),
                         "train_sources": report["train_sources"]},
                "ablation": name, "heldout_figures": figures, "head": head.report,
                "features_throughput": report["features"],
                "reproduce": "python benchmarks/rm_features.py --ship " + str(target)}
    save_head_checkpoint(target, head, sub, manifest)
    drop_tokenizer_files(target)
    print(f"shipped {name!r} to {target}")


def sub_spec(spec: Any, columns: list[str]) -> Any:
    """The part of ``spec`` that computes exactly ``columns`` (a head fitted on some column groups)."""
    from codescaler.features import FeatureSpec

    groups = sorted({c.rsplit(".", 1)[0] for c in columns if c.startswith("h")})
    layers = tuple(sorted({int(g[1:].split(".")[0]) for g in groups}))
    pooling = tuple(p for p in ("last", "mean") if any(g.endswith(p) for g in groups))
    sub = FeatureSpec(**{**spec.to_dict(), "layers": layers, "pooling": pooling if layers else (),
                         "likelihood": "lp_mean" in columns, "without_problem": "np_lp_mean" in columns,
                         "facts": "log_chars" in columns})
    assert sub.names() == list(columns), "shipped head columns must be a computable spec"
    return sub


def drop_tokenizer_files(target: Path) -> None:
    """A shipped checkpoint names a backbone the set-up rebuilds offline, tokenizer included: do not commit
    a second copy of its tokenizer (11 MB); a head trained by a user keeps its tokenizer files."""
    for path in target.iterdir():
        if path.name.startswith(("tokenizer", "vocab", "merges", "special_tokens", "chat_template", "added_tokens")):
            path.unlink()
