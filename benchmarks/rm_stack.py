"""A checkpoint's raw scores as one more feature: the LoRA RM's score stacked with a feature head.

    python benchmarks/rm_stack.py --scorer rm:default --parts val codex hep-python rm-bench-python

Scores every program of the chosen parts (validation pairs, TRAIN pairs, evaluation sets: the same
items as benchmarks/rm_features.py) with a checkpoint's own forward passes, into a per-program score
file (``scores.<checkpoint>.jsonl``: one line per program, keyed by sha256 of problem and code, appended
chunk by chunk, so a killed run continues where it stopped). The analysis is done by ``--analyse``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))


def item_key(prompt: str, code: str) -> str:
    return hashlib.sha256(prompt.encode() + b"\0" + code.encode()).hexdigest()


class ScoreFile:
    """Raw scores of one checkpoint by program, on disk (append-only JSONL; a torn last line is ignored)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.scores: dict[str, float] = {}
        if path.is_file():
            for line in path.read_text(encoding="utf-8").split("\n"):
                try:
                    row = json.loads(line)
                    self.scores[row["k"]] = float(row["s"])
                except (ValueError, KeyError, TypeError):
                    continue

    def missing(self, items: list[tuple[str, str]]) -> list[tuple[str, str]]:
        seen: set[str] = set()
        out = []
        for p, c in items:
            k = item_key(p, c)
            if k not in self.scores and k not in seen:
                seen.add(k)
                out.append((p, c))
        return out

    def add(self, items: list[tuple[str, str]], values: list[float]) -> None:
        lines = []
        for (p, c), v in zip(items, values, strict=True):
            k = item_key(p, c)
            self.scores[k] = float(v)
            lines.append(json.dumps({"k": k, "s": float(v)}))
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write("\n" + "\n".join(lines) + "\n")
            handle.flush()

    def get(self, prompts: list[str], codes: list[str]) -> list[float]:
        return [self.scores[item_key(p, c)] for p, c in zip(prompts, codes, strict=True)]


def sampled_pairs(a: Any) -> tuple[list[Any], list[Any], dict[str, str]]:
    """(TRAIN pairs, validation pairs, source of each task): the sampling of benchmarks/rm_features.py."""
    from rm_features import sample_pairs, source_of_tasks

    sources = source_of_tasks(a.raw)
    override = {k: int(v) for k, _, v in (s.partition("=") for s in a.source_pairs)}
    return (sample_pairs(a.train_pairs, a.per_source, a.seed, sources, override),
            sample_pairs(a.val_pairs, a.val_per_source, a.seed, sources), sources)


def eval_sets(parts: list[str], a: Any) -> dict[str, tuple[str, Any]]:
    """The evaluation sets among ``parts`` (first ``--limit`` items each; 0 = all)."""
    from rm_features import eval_items

    out = {}
    for part in parts:
        if part not in ("train", "val"):
            kind, loaded = eval_items(part, a.work)
            out[part] = (kind, loaded[: a.limit] if a.limit else loaded)
    return out


def parts_items(parts: list[str], a: Any) -> dict[str, list[tuple[str, str]]]:
    from rm_features import eval_texts
    from rm_features_eval import set_modes

    train, val, _ = sampled_pairs(a) if {"train", "val"} & set(parts) else ([], [], {})
    sets = eval_sets(parts, a)
    out: dict[str, list[tuple[str, str]]] = {}
    for part in parts:
        items: list[tuple[str, str]] = []
        if part in ("train", "val"):
            for ex in train if part == "train" else val:
                items += [(ex.prompt, ex.chosen_code), (ex.prompt, ex.rejected_code)]
        else:
            kind, loaded = sets[part]
            for mode, _suffix in set_modes(kind):
                items += eval_texts(kind, loaded, mode)
        out[part] = items
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scorer", default="rm:default")
    ap.add_argument("--parts", nargs="+", default=["val", "codex", "hep-python", "rm-bench-python"])
    ap.add_argument("--train-pairs", type=Path, default=ROOT / "runs/train-data/train.pairs.jsonl")
    ap.add_argument("--val-pairs", type=Path, default=ROOT / "runs/train-data/val.pairs.jsonl")
    ap.add_argument("--raw", type=Path, default=ROOT / "runs/train-data/raw")
    ap.add_argument("--work", type=Path, default=ROOT / "runs/rm-features-mut2", help="where codex pairs are")
    ap.add_argument("--per-source", type=int, default=100)
    ap.add_argument("--source-pairs", nargs="*", default=["leetcode-train:mutant=800", "mbpp:mutant=600"])
    ap.add_argument("--val-per-source", type=int, default=200)
    ap.add_argument("--limit", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--output-dir", type=Path, default=ROOT / "runs/rm-stack")
    ap.add_argument("--analyse", action="store_true", help="fit the stacks on cached rows and scores; no scoring")
    ap.add_argument("--cache-dir", type=Path, default=ROOT / ".cache/codescaler/features")
    ap.add_argument("--ship", type=Path, default=None,
                    help="with --analyse: write the stacked checkpoint (the validation-chosen level-1 head + the "
                         "scorer's raw score, weights fitted on the validation pairs) here")
    a = ap.parse_args(argv)
    if a.analyse:
        return analyse(a)
    from rm_heldout import make_scorer

    a.output_dir.mkdir(parents=True, exist_ok=True)
    store = ScoreFile(a.output_dir / f"scores.{a.scorer.replace(':', '_').replace('/', '_')}.jsonl")
    scorer = None
    for part, items in parts_items(a.parts, a).items():
        todo = store.missing(items)
        print(f"{part}: {len(items)} programs, {len(todo)} to score", flush=True)
        if not todo:
            continue
        scorer = scorer or make_scorer(a.scorer)
        started = time.monotonic()
        for s in range(0, len(todo), 32):
            chunk = todo[s:s + 32]
            store.add(chunk, scorer.score_codes([p for p, _ in chunk], [c for _, c in chunk]))
            done = s + len(chunk)
            rate = done / (time.monotonic() - started)
            print(f"  {part}: {done}/{len(todo)} ({rate:.2f} programs/s)", flush=True)
    return 0


BASE_HEADS = ("hidden 12,18,24 + lik + facts, lp_mean free", "hidden 24 + lik + facts", "likelihood+facts")


def _head_fn(head: Any, cols: list[int]) -> Any:
    return lambda x: head.score(x[:, cols])


def analyse(a: Any) -> int:
    import numpy as np

    from codescaler.feature_cache import FeatureCache
    from codescaler.head_training import HeadTrainSettings, LazyExtractor, spec_for
    from codescaler.heads import HeadSettings, fit_head, pairwise_accuracy
    from rm_features import LAYERS
    from rm_features_eval import CONFIGS, _columns, _set_figure, evaluate_sets, free_of, set_modes

    store = ScoreFile(a.output_dir / f"scores.{a.scorer.replace(':', '_').replace('/', '_')}.jsonl")
    train, val, sources = sampled_pairs(a)
    settings = HeadTrainSettings(pairs=(a.train_pairs,), output=a.output_dir, layers=LAYERS, max_length=768)
    lazy = LazyExtractor(settings.backbone, lambda w, sha: spec_for(settings, hidden_size=w, sha256=sha),
                         batch_size=8, dtype=None)
    cache = FeatureCache(a.cache_dir, lazy.spec, lazy.precision)
    names, groups_of = cache.spec.names(), cache.spec.groups()

    def rows(pairs: list[Any], side: str) -> Any:
        return cache.get([ex.prompt for ex in pairs], [getattr(ex, side) for ex in pairs])

    xc, xr, vc, vr = rows(train, "chosen_code"), rows(train, "rejected_code"), rows(val, "chosen_code"), rows(val, "rejected_code")
    vgroups = [ex.group for ex in val]
    rc = np.array(store.get([ex.prompt for ex in val], [ex.chosen_code for ex in val]), dtype=np.float32)
    rr = np.array(store.get([ex.prompt for ex in val], [ex.rejected_code for ex in val]), dtype=np.float32)
    lp = names.index("lp_mean")
    length = names.index("log_chars")
    level1: dict[str, Any] = {"logprob": lambda x: x[:, lp]}
    heads: dict[str, Any] = {}
    for name in BASE_HEADS:
        col_groups, kind, _subset, *options = CONFIGS[name]
        cols = _columns(groups_of, names, col_groups)
        head = fit_head(xc[:, cols], xr[:, cols], [ex.group for ex in train], [names[c] for c in cols],
                        HeadSettings(kind=kind, seed=a.seed, folds=5, free=free_of(options, groups_of)))
        level1[name] = _head_fn(head, cols)
        heads[name] = (head, cols)
    scorers: dict[str, Any] = {}
    report: dict[str, Any] = {}

    def lora(p: Any, c: Any) -> Any:
        return np.array(store.get(list(p), list(c)), dtype=np.float32)

    scorers[a.scorer] = lora
    report[a.scorer] = {"val": pairwise_accuracy(rc, rr)}
    from rm_features_eval import MUTANT_SOURCES

    vmut = np.array([sources.get(ex.group) in MUTANT_SOURCES for ex in val])
    print(f"validation: {int(vmut.sum())} mutant pairs, {int((~vmut).sum())} real-sample pairs")

    def split(name: str, c: Any, r: Any) -> None:
        report[name]["val mutant"] = pairwise_accuracy(c[vmut], r[vmut])
        report[name]["val real"] = pairwise_accuracy(c[~vmut], r[~vmut])
    split(a.scorer, rc, rr)
    for name, f in level1.items():
        base_c, base_r = np.asarray(f(vc), dtype=np.float32), np.asarray(f(vr), dtype=np.float32)
        report[name] = {"val": pairwise_accuracy(base_c, base_r)}
        split(name, base_c, base_r)
        def plain(p: Any, c: Any, g: Any = f) -> Any:
            return np.asarray(g(cache.get(list(p), list(c))), dtype=np.float32)
        scorers[name] = plain
        # variants: + code length as a third column; weights fitted on the real-sample validation pairs only
        for with_length, subset in ((False, "all"), (True, "all"), (False, "real")):
            keep = ~vmut if subset == "real" else np.ones(len(val), dtype=bool)
            extra_c = [vc[:, length]] if with_length else []
            extra_r = [vr[:, length]] if with_length else []
            cols = ["level1", "rm"] + (["log_chars"] if with_length else [])
            stack = fit_head(np.column_stack([base_c, rc, *extra_c])[keep],
                             np.column_stack([base_r, rr, *extra_r])[keep],
                             [g for g, k in zip(vgroups, keep, strict=True) if k], cols,
                             HeadSettings(kind="linear", seed=a.seed, folds=5))
            label = (f"stack({name} + {a.scorer}{' + length' if with_length else ''}"
                     f"{', fitted on real-sample val pairs' if subset == 'real' else ''})")
            report[label] = {"val_cv": stack.report.get("cv_accuracy"), "weights": stack.params["w"].tolist()}

            def fn(p: Any, c: Any, g: Any = f, st: Any = stack, wl: bool = with_length) -> Any:
                x = cache.get(list(p), list(c))
                cols_ = [np.asarray(g(x), dtype=np.float32), lora(p, c)] + ([x[:, length]] if wl else [])
                return st.score(np.column_stack(cols_))
            scorers[label] = fn
        # equal weights after standardising each score on the validation programs (nothing fitted)
        mu = np.concatenate([base_c, base_r]).mean(), np.concatenate([rc, rr]).mean()
        sd = np.concatenate([base_c, base_r]).std() + 1e-9, np.concatenate([rc, rr]).std() + 1e-9
        label = f"z-sum({name} + {a.scorer})"
        report[label] = {"val": pairwise_accuracy((base_c - mu[0]) / sd[0] + (rc - mu[1]) / sd[1],
                                                  (base_r - mu[0]) / sd[0] + (rr - mu[1]) / sd[1])}
        def zsum(p: Any, c: Any, g: Any = f, m: Any = mu, s_: Any = sd) -> Any:
            own = np.asarray(g(cache.get(list(p), list(c))), dtype=np.float32)
            return (own - m[0]) / s_[0] + (lora(p, c) - m[1]) / s_[1]
        scorers[label] = zsum
    scorers["longer code wins"] = lambda p, c: cache.get(list(p), list(c))[:, length]
    scorers["shorter code wins"] = lambda p, c: -cache.get(list(p), list(c))[:, length]
    report.setdefault("longer code wins", {})["val"] = pairwise_accuracy(vc[:, length], vr[:, length])
    report.setdefault("shorter code wins", {})["val"] = pairwise_accuracy(-vc[:, length], -vr[:, length])
    split("longer code wins", vc[:, length], vr[:, length])
    split("shorter code wins", -vc[:, length], -vr[:, length])
    sets = eval_sets(a.parts, a)
    labels = ["val mutant", "val real"] + [part + suffix for part, (kind, _) in sets.items()
                                           for _mode, suffix in set_modes(kind)]
    for name, results in evaluate_sets(sets, scorers).items():
        for label, res in results.items():
            report.setdefault(name, {})[label] = _set_figure(res)
    lines = ["| scorer | val | val CV | " + " | ".join(labels) + " |", "|---|---|---|" + "---|" * len(labels)]
    for name, row in report.items():
        cells = [f"{100 * row[k]:.1f}" if isinstance(row.get(k), float) else "" for k in ("val", "val_cv")]
        cells += [f"{100 * row[k]:.1f}" if k in row else "–" for k in labels]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    table = "\n".join(lines)
    print(table)
    (a.output_dir / "stack.md").write_text(table + "\n", encoding="utf-8")
    (a.output_dir / "stack.json").write_text(json.dumps(report, indent=2, default=str), encoding="utf-8")
    if a.ship:
        # The level-1 head is the validation choice among the heads (as rm_features.py ships), the stack's
        # weights are fitted on the same validation pairs (cross-validated, grouped by problem).
        chosen = max(BASE_HEADS, key=lambda n: report[n]["val"])
        ship(a, chosen, heads[chosen], cache, train, val, vgroups, (rc[:, None], rr[:, None]), report)
    return 0


def ship(a: Any, name: str, level1: Any, cache: Any, train: list[Any], val: list[Any], vgroups: list[str],
         member_scores: Any, report: dict[str, Any]) -> None:
    from codescaler.head_training import DEFAULT_L2_GRID, PairRows, save_head_checkpoint, stack_head
    from codescaler.heads import HeadSettings
    from rm_features_eval import drop_tokenizer_files, sub_spec

    head, cols = level1
    sub = sub_spec(cache.spec, head.columns)
    vp = [ex.prompt for ex in val]
    rows = PairRows(cache.get(vp, [ex.chosen_code for ex in val])[:, cols],
                    cache.get(vp, [ex.rejected_code for ex in val])[:, cols], vgroups, head.columns)
    member = a.scorer.partition(":")[2]
    stacked, stacked_spec = stack_head(head, sub, (member,), val, rows,
                                       HeadSettings(kind="linear", l2_grid=DEFAULT_L2_GRID, seed=a.seed),
                                       member_scores=member_scores)
    label = f"stack({name} + {a.scorer})"
    figures = {k: f"{100 * v:.1f}%" for k, v in report.get(label, {}).items() if isinstance(v, float)}
    manifest = {"data": {"train_pairs": len(train), "train_problems": len({ex.group for ex in train}),
                         "stack_pairs": len(val), "stack_problems": len(set(vgroups))},
                "ablation": label, "heldout_figures": figures, "head": stacked.report,
                "reproduce": "python benchmarks/rm_stack.py --analyse --ship " + str(a.ship)}
    save_head_checkpoint(a.ship, stacked, stacked_spec, manifest)
    drop_tokenizer_files(a.ship)
    print(f"shipped {label!r} to {a.ship}; weights {stacked.report['stack']['weights']}, "
          f"stack CV {stacked.report['stack']['cv_accuracy']}")


if __name__ == "__main__":
    raise SystemExit(main())
