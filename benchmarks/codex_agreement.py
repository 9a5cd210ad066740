"""Agreement of `codescaler execute` with the published labels of the Codex HumanEval samples.

Converts the MultiPL-E Codex Python samples (32,200 = 161 problems x 200) with `codescaler data`,
executes all of them with `codescaler execute` (resumable; verdicts cached), and compares each verdict
with the dataset's own label ('OK' = passed). Prints the agreement and the disagreements by cause
(our status x their label, with the first detail lines), and writes them to OUTPUT_DIR/agreement.json.

    python benchmarks/codex_agreement.py --output-dir runs/codex-py [--language python] [--sample-every K]

``--sample-every K`` executes and compares only every K-th candidate (a deterministic sample, for a
quick re-measurement on a small machine; report it with its size).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output-dir", type=Path, default=Path("runs/codex-py"))
    parser.add_argument("--language", default="python", choices=["python"])
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--timeout", type=float, default=None, help="CPU seconds per run (execute's default)")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--sample-every", type=int, default=1, help="only every K-th candidate (default: all)")
    args = parser.parse_args()

    out: Path = args.output_dir
    out.mkdir(parents=True, exist_ok=True)
    cli = [sys.executable, "-m", "codescaler"]
    if not (out / "labels.jsonl").is_file():
        cmd = cli + ["data", f"codex-humaneval-{args.language}", "--output-dir", str(out)]
        if args.data_dir:
            cmd += ["--data-dir", args.data_dir]
        subprocess.run(cmd, check=True)
    candidates = out / "candidates.jsonl"
    if args.sample_every > 1:
        lines = [x for x in candidates.read_text(encoding="utf-8").split("\n") if x.strip()]
        candidates = out / f"candidates-every-{args.sample_every}.jsonl"
        candidates.write_text("".join(x + "\n" for x in lines[::args.sample_every]), encoding="utf-8")
    cmd = cli + ["execute", "--problems", str(out / "problems.jsonl"), "--candidates",
                 str(candidates), "--output", str(out / "verdicts.jsonl"),
                 "--cache-dir", str(out / "cache")]
    if args.workers:
        cmd += ["--workers", str(args.workers)]
    if args.timeout:
        cmd += ["--timeout", str(args.timeout)]
    start = time.perf_counter()
    subprocess.run(cmd, check=True)
    seconds = time.perf_counter() - start

    sampled = set(_rows(candidates))
    labels = {k: v for k, v in _rows(out / "labels.jsonl").items() if k in sampled}
    ours = _rows(out / "verdicts.jsonl")
    missing = sorted(set(labels) - set(ours))
    agree = 0
    causes: Counter[tuple[str, str]] = Counter()
    examples: dict[str, list[dict]] = defaultdict(list)
    for key, label in labels.items():
        verdict = ours.get(key)
        if verdict is None:
            continue
        theirs = "passed" if label["status"] == "passed" else "failed"
        mine = verdict["status"]
        if (mine == "passed") == (theirs == "passed"):
            agree += 1
            continue
        cause = f"ours={mine} label={label.get('detail', theirs)}"
        causes[(mine, label.get("detail", theirs))] += 1
        if len(examples[cause]) < 5:
            examples[cause].append({"task_id": key[0], "candidate_id": key[1],
                                    "detail": (verdict.get("detail") or "")[:200]})
    compared = len(labels) - len(missing)
    report = {
        "n_labels": len(labels), "n_compared": compared, "n_missing": len(missing),
        "agree": agree, "agreement": agree / compared if compared else None,
        "disagreements": [{"ours": m, "label": lab, "count": c} for (m, lab), c in causes.most_common()],
        "examples": examples, "execute_seconds_this_run": round(seconds, 1),
        "status_counts": dict(Counter(v["status"] for v in ours.values())),
    }
    (out / "agreement.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"compared {compared}/{len(labels)}; agreement {agree}/{compared} = {100 * agree / max(1, compared):.2f}%")
    for (mine, lab), count in causes.most_common():
        print(f"  disagree {count:5d}: ours={mine:<12} label={lab}")
    print(f"report: {out / 'agreement.json'}")
    return 0


def _rows(path: Path) -> dict[tuple[str, str], dict]:
    rows = {}
    for line in path.read_text(encoding="utf-8").split("\n"):
        if line.strip():
            row = json.loads(line)
            rows[(row["task_id"], str(row["candidate_id"]))] = row
    return rows


if __name__ == "__main__":
    raise SystemExit(main())
