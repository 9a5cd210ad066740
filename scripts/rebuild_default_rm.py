#!/usr/bin/env python3
"""Rebuild the shipped default reward model from TRAIN data, in one resumable command.

    .venv/bin/python scripts/rebuild_default_rm.py [--exec-budget-s 1500] [--per-source 25]
        [--source-pairs leetcode-train:mutant=800 mbpp:mutant=600] [--target runs/rebuilt-rm]

``--target src/codescaler/assets/feature_head_rm`` replaces the shipped feature head (``--rm feature-head``)
with the rebuilt one; the default writes it under ``runs/`` so that it can be compared first.

Stages (each resumable; rerun the same command after a kill and finished work is reused):
1. data: ``scripts/build_train_data.py`` (convert TRAIN sources, AST mutants, sandboxed execution in
   round order under ``--exec-budget-s``, split by problem, pairs);
2. features + heads: ``benchmarks/rm_features.py`` fills the content-addressed feature cache for a
   per-source sample of the TRAIN pairs (and the held-out sets), fits every ablation head, and ships the
   best one by cross-validated accuracy on the TRAIN pairs (never on the evaluation sets) to ``--target``.
The wall time of each stage is added to the shipped ``codescaler.json`` manifest (``stage_seconds``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--exec-budget-s", type=float, default=1500)
    ap.add_argument("--per-source", type=int, default=25)
    ap.add_argument("--source-pairs", nargs="*", default=[], metavar="SOURCE:KIND=N",
                    help="another training-pair count for some sources (benchmarks/rm_features.py)")
    ap.add_argument("--target", type=Path, default=ROOT / "runs/rebuilt-rm")
    ap.add_argument("--sets", nargs="+", default=["hep-python", "codex", "rm-bench-python"])
    ap.add_argument("--limit", type=int, default=None, help="first N pairs of each held-out set")
    a = ap.parse_args()
    times = {}
    started = time.monotonic()
    subprocess.run([sys.executable, str(ROOT / "scripts/build_train_data.py"), "--exec-budget-s",
                    str(a.exec_budget_s)], check=True)
    times["data"] = round(time.monotonic() - started, 1)
    started = time.monotonic()
    cmd = [sys.executable, str(ROOT / "benchmarks/rm_features.py"), "--per-source", str(a.per_source),
           "--val-per-source", "0", "--sets", *a.sets, "--ship", str(a.target)]
    if a.limit:
        cmd += ["--limit", str(a.limit)]
    if a.source_pairs:
        cmd += ["--source-pairs", *a.source_pairs]
    subprocess.run(cmd, check=True)
    times["features_heads_ship"] = round(time.monotonic() - started, 1)
    meta_path = a.target / "codescaler.json"
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    meta["manifest"]["stage_seconds"] = times
    tmp = meta_path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    tmp.replace(meta_path)
    print(json.dumps(times))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
