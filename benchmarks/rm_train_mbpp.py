"""Build TRAIN preference pairs from MapCoder's labelled MBPP solutions, for a quick RM training run.

Source: ``MapCoder/final-results/{ChatGPT,GPT4}/MBPP/*.jsonl`` (MBPP is TRAIN/VALIDATION data per
../shared/data/README.md; nothing HumanEval-derived is used). Each file holds one solution per problem
per model x prompting strategy with ``is_solved``. Per problem: programs are deduplicated on their AST;
every (solved, unsolved) combination is a pair, at most ``--per-problem`` of them (seeded). Responses
are the programs in a fenced block, as a model would answer.

Measured run (see the helper report / docs/training.md):
  .venv/bin/python benchmarks/rm_train_mbpp.py --output runs/mbpp_pairs.jsonl
  codescaler train --pairs runs/mbpp_pairs.jsonl --output runs/minilm_rm --model minilm --max-steps 24 \
      --lr 1e-4 --batch-size 16 --max-length 384 --eval-fraction 0.1 --eval-steps 12 --stats-pairs 200 --seed 0
  codescaler eval hep --model runs/minilm_rm --languages python --baselines --output runs/hep.json
"""

from __future__ import annotations

import argparse
import ast
import json
import random
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def build(data_dir: Path, per_problem: int, seed: int) -> tuple[list[dict[str, str]], dict[str, int]]:
    by_name: dict[str, dict] = {}
    for path in sorted(data_dir.glob("MapCoder/final-results/*/MBPP/*.jsonl"), key=str):
        for line in path.read_text(encoding="utf-8").split("\n"):  # not splitlines(): U+2028
            if not line.strip():
                continue
            row = json.loads(line)
            code = row.get("solution") or (row["source_codes"][-1] if row.get("source_codes") else None)
            if not code or "is_solved" not in row:
                continue
            try:
                key = ast.dump(ast.parse(code))
            except SyntaxError:
                continue
            entry = by_name.setdefault(row["name"], {"prompt": row["prompt"], "programs": {}})
            entry["programs"].setdefault(key, (code.strip("\n") + "\n", bool(row["is_solved"])))
    rng = random.Random(seed)
    pairs = []
    both = 0
    for name, entry in sorted(by_name.items()):
        good = [c for c, ok in entry["programs"].values() if ok]
        bad = [c for c, ok in entry["programs"].values() if not ok]
        if not good or not bad:
            continue
        both += 1
        combos = [(g, b) for g in good for b in bad]
        rng.shuffle(combos)
        for g, b in combos[:per_problem]:
            pairs.append({"task_id": name, "prompt": entry["prompt"], "chosen": f"```python\n{g}```",
                          "rejected": f"```python\n{b}```"})
    return pairs, {"problems": len(by_name), "problems_with_both_labels": both, "pairs": len(pairs)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--per-problem", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    pairs, counts = build(args.data_dir, args.per_problem, args.seed)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text("".join(json.dumps(p, ensure_ascii=False) + "\n" for p in pairs), encoding="utf-8")
    print(json.dumps(counts), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
