#!/usr/bin/env python3
"""Build the train/validation preference pairs for the default codescaler reward model.

Usage (from the repo root)::

    nice .venv/bin/python scripts/build_train_data.py [--out runs/train-data] [--mutants 8]
        [--val-fraction 0.1] [--seed 0] [--workers 2] [--timeout 5] [--exec-budget-s 0]

Stages (each one re-runnable; ``codescaler execute`` resumes and its verdict cache makes reruns fast):

1. ``codescaler data`` converts the TRAIN sources into ``OUT/raw/<name>/``: leetcode-train and mbpp
   (problems with reference + tests) and the MapCoder / LLMDebugger TRAIN parts (real LLM solutions with
   the datasets' own ``is_solved`` labels). EVAL-ONLY sources (HumanEval-derived, LeetCode test) are never
   read: the list below is an allow-list and each converter's manifest is checked for ``eval_only``.
2. ``codescaler mutate`` (no execution) writes the canonical reference + N AST mutants per problem; the
   candidates are then executed with ``codescaler execute`` in *round order* (all references first, then
   every problem's first mutant, then the second ...), so a run cut short by ``--exec-budget-s`` still
   covers every problem with a few mutants instead of half the problems with all of them.
3. Verdicts = execution verdicts for mutants (only on problems whose reference passed) + dataset labels
   for the real candidates. Problems are split by a seeded hash of a *group key* into train/val; MBPP
   copies (``Mbpp/N``, ``MBPP/N``, ``mbpp_N_name``) share the key ``mbpp:N`` so one MBPP problem never
   lands on both sides.
4. ``codescaler pairs`` (codescaler rule, dedup, cap per problem, length balance) per split ->
   ``OUT/{train,val}.pairs.jsonl`` + ``.manifest.json``; ``OUT/build_manifest.json`` has counts per source.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

MUTATED = ["leetcode-train", "mbpp"]  # problems with a reference: reference + AST mutants
LABELLED = ["mapcoder-mbpp", "mapcoder-apps", "mapcoder-xcodeeval", "llmdebugger-mbpp", "llmdebugger-transcoder"]
REPO = Path(__file__).resolve().parent.parent
CLI = [str(REPO / ".venv" / "bin" / "codescaler")]


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    # split on "\n", not splitlines(): some strings hold U+2028 (shared/data/README.md)
    return [json.loads(line) for line in path.read_text(encoding="utf-8").split("\n") if line.strip()]


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def write_json(path: Path, obj: Any) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, sort_keys=True)
    os.replace(tmp, path)


def sh(cmd: list[str], log: list[dict[str, Any]], timeout: float | None = None) -> int:
    print("+", " ".join(cmd), flush=True)
    t0 = time.time()
    try:
        rc = subprocess.run(cmd, timeout=timeout).returncode
    except subprocess.TimeoutExpired:
        rc = -1  # execution budget spent; execute is resumable, rerun continues
    log.append({"cmd": cmd, "rc": rc, "seconds": round(time.time() - t0, 1)})
    if rc not in (0, -1):
        sys.exit(f"command failed with exit code {rc}: {' '.join(cmd)}")
    return rc


def group_key(task_id: str) -> str:
    """Problems with the same key go to the same split (MBPP copies share one key)."""
    m = re.match(r"^(?:Mbpp|MBPP)/(\d+)$", task_id) or re.match(r"^mbpp_(\d+)_", task_id)
    return f"mbpp:{m.group(1)}" if m else task_id


def is_val(key: str, seed: int, fraction: float) -> bool:
    h = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    return int.from_bytes(h[:8], "big") / 2**64 < fraction


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=REPO / "runs" / "train-data")
    ap.add_argument("--mutants", type=int, default=8)
    ap.add_argument("--val-fraction", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=5.0, help="CPU seconds per execution")
    ap.add_argument("--max-pairs-per-problem", type=int, default=8)
    ap.add_argument("--exec-budget-s", type=float, default=0, help="stop execution after this long (0 = none)")
    ap.add_argument("--skip-exec", action="store_true", help="only rebuild pairs from the verdicts so far")
    a = ap.parse_args()
    out: Path = a.out
    raw = out / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    log: list[dict[str, Any]] = []
    t_start = time.time()

    # 1. convert
    for name in MUTATED + LABELLED:
        d = raw / name
        if not (d / "manifest.json").exists():
            sh(CLI + ["data", name, "--output-dir", str(d)], log)
        man = json.loads((d / "manifest.json").read_text())
        if man.get("eval_only") or man.get("split") == "test":
            sys.exit(f"{name} is EVAL-ONLY per its manifest; refusing to train on it")

    # 2. mutants (no execution here) in round order
    problems: dict[str, dict[str, Any]] = {}
    source_of: dict[str, str] = {}
    for name in MUTATED + LABELLED:
        for p in read_jsonl(raw / name / "problems.jsonl"):
            if p["task_id"] in problems and source_of[p["task_id"]] == name and problems[p["task_id"]] == p:
                continue  # mapcoder-apps lists 21 problems twice, identically (source data)
            if p["task_id"] in problems:
                sys.exit(f"task_id {p['task_id']!r} of {name} also in {source_of[p['task_id']]}")
            problems[p["task_id"]] = p
            source_of[p["task_id"]] = name
    mut_rows: list[dict[str, Any]] = []
    for name in MUTATED:
        mpath = raw / name / "mutants.jsonl"
        if not mpath.exists():
            sh(CLI + ["mutate", "--problems", str(raw / name / "problems.jsonl"), "--output", str(mpath),
                      "--per-problem", str(a.mutants), "--seed", str(a.seed)], log)
        mut_rows += read_jsonl(mpath)

    def round_of(cid: str) -> int:
        m = re.search(r"/mut-(\d+)-", cid)
        return 0 if cid.endswith("/reference") else (int(m.group(1)) + 1 if m else 99)

    mut_rows.sort(key=lambda r: round_of(r["candidate_id"]))  # stable: keeps problem order within a round
    exec_problems = out / "exec.problems.jsonl"
    exec_cands = out / "exec.candidates.jsonl"
    write_jsonl(exec_problems, [problems[t] for t in dict.fromkeys(r["task_id"] for r in mut_rows)])
    write_jsonl(exec_cands, mut_rows)
    exec_verdicts = out / "exec.verdicts.jsonl"
    if not a.skip_exec:
        sh(["nice", "-n", "10"] + CLI + ["execute", "--problems", str(exec_problems), "--candidates",
            str(exec_cands), "--output", str(exec_verdicts), "--workers", str(a.workers),
            "--timeout", str(a.timeout)], log, timeout=a.exec_budget_s or None)

    # 3. verdicts: executed mutants (reference passed) + dataset labels
    executed = {(v["task_id"], v["candidate_id"]): v for v in read_jsonl(exec_verdicts)} \
        if exec_verdicts.exists() else {}
    ref_ok = {t for (t, c), v in executed.items() if c.endswith("/reference") and v["status"] == "passed"}
    ref_run = {t for (t, c) in executed if c.endswith("/reference")}
    stats: dict[str, Counter[str]] = defaultdict(Counter)
    cands: list[dict[str, Any]] = []
    verdicts: list[dict[str, Any]] = []
    for r in mut_rows:
        t, c = r["task_id"], r["candidate_id"]
        s = stats[source_of[t]]
        v = executed.get((t, c))
        is_ref = c.endswith("/reference")
        s["references" if is_ref else "mutants"] += 1
        if v is None:
            s["not_executed"] += 1
            continue
        if not is_ref:
            s["mutants_executed"] += 1
            s[f"mutant_{v['status']}"] += 1
        if t not in ref_ok:
            continue  # a failing reference means the tests (or the sandbox) are off: skip the problem
        cands.append(r)
        verdicts.append(v)
    for name in MUTATED:
        ts = {t for t, n in source_of.items() if n == name}
        stats[name]["problems"] = len(ts)
        stats[name]["references_executed"] = len(ts & ref_run)
        stats[name]["references_passed"] = len(ts & ref_ok)
    seen: set[tuple[str, str]] = set()
    for name in LABELLED:
        labels = {(v["task_id"], v["candidate_id"]): v for v in read_jsonl(raw / name / "labels.jsonl")}
        stats[name]["problems"] = sum(1 for n in source_of.values() if n == name)
        for r in read_jsonl(raw / name / "candidates.jsonl"):
            v = labels.get((r["task_id"], r["candidate_id"]))
            if v is None or (r["task_id"], r["candidate_id"]) in seen:
                stats[name]["candidates_skipped_unlabelled_or_duplicate"] += 1
                continue
            seen.add((r["task_id"], r["candidate_id"]))
            cands.append(r)
            verdicts.append(v)
            stats[name]["candidates"] += 1
            stats[name][f"label_{v['status']}"] += 1

    # 4. split by problem group, pairs per split
    used = dict.fromkeys(r["task_id"] for r in cands)
    split_of = {t: ("val" if is_val(group_key(t), a.seed, a.val_fraction) else "train") for t in used}
    result: dict[str, Any] = {}
    for split in ("train", "val"):
        ts = {t for t, s in split_of.items() if s == split}
        base = out / split
        write_jsonl(base.with_suffix(".problems.jsonl"), [problems[t] for t in used if t in ts])
        write_jsonl(base.with_suffix(".candidates.jsonl"), [r for r in cands if r["task_id"] in ts])
        write_jsonl(base.with_suffix(".verdicts.jsonl"), [v for v in verdicts if v["task_id"] in ts])
        pairs_path = out / f"{split}.pairs.jsonl"
        sh(CLI + ["pairs", "--problems", str(base.with_suffix(".problems.jsonl")),
                  "--candidates", str(base.with_suffix(".candidates.jsonl")),
                  "--verdicts", str(base.with_suffix(".verdicts.jsonl")), "--output", str(pairs_path),
                  "--rule", "codescaler", "--max-pairs-per-problem", str(a.max_pairs_per_problem),
                  "--length-balance", "--seed", str(a.seed)], log)
        per_source: Counter[str] = Counter()
        probs_with_pairs: dict[str, set[str]] = defaultdict(set)
        for p in read_jsonl(pairs_path):
            per_source[source_of[p["task_id"]]] += 1
            probs_with_pairs[source_of[p["task_id"]]].add(p["task_id"])
        result[split] = {"problems": len(ts), "pairs": sum(per_source.values()),
                         "pairs_per_source": dict(per_source),
                         "problems_with_pairs_per_source": {k: len(v) for k, v in probs_with_pairs.items()}}
    manifest = {"args": {k: str(v) for k, v in vars(a).items()}, "sources": {k: dict(v) for k, v in stats.items()},
                "splits": result, "commands": log, "seconds": round(time.time() - t_start, 1),
                "group_key": "MBPP copies share mbpp:N; other task_ids are their own group",
                "split_rule": "sha256(f'{seed}:{group}') / 2**64 < val_fraction -> val"}
    write_json(out / "build_manifest.json", manifest)
    print(json.dumps({"sources": manifest["sources"], "splits": result}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
