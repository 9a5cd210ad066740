"""Extraction rates on real responses and extraction cost on adversarial ones.

Usage: python benchmarks/bench_extract.py [--data-dir ../shared/data]

1. RM-Bench code (EVAL ONLY: measured, never trained on): share of chosen and rejected responses that
   extract to valid code in strict and lenient mode, per language, and the status counts.
2. MapCoder final results for APPS, MBPP and xCodeEval (ChatGPT, GPT-4, Gemini; train/validation
   data, so a second, independent sample): the same rates for Python.
3. CPU seconds (process time, best of 3) of one extraction on adversarial and large responses, and the
   growth from 100 KB to 1 MB.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from collections.abc import Callable
from functools import partial
from pathlib import Path

from codescaler.extract import extract_code

MODES = ("strict", "lenient")


def rm_bench(data_dir: Path) -> None:
    rows = json.loads((data_dir / "RM-Bench" / "data" / "code_filtered.json").read_text(encoding="utf-8"))
    for mode in MODES:
        ok: Counter[tuple[str, str]] = Counter()
        total: Counter[tuple[str, str]] = Counter()
        statuses: Counter[str] = Counter()
        start = time.process_time()
        for row in rows:
            for side in ("chosen", "rejected"):
                for response in row[side]:
                    found = extract_code(response, row["language"], mode)
                    statuses[found.status.value] += 1
                    for key in ((row["language"], side), ("ALL", side), ("ALL", "both")):
                        total[key] += 1
                        ok[key] += found.valid
        seconds = time.process_time() - start
        print(
            f"== RM-Bench {mode}: {sum(statuses.values())} responses, {seconds:.2f} CPU s; {dict(statuses)}"
        )
        for key in sorted(total):
            print(
                f"  {key[0]:<11} {key[1]:<8} valid {ok[key]:>4}/{total[key]:<4} = {ok[key] / total[key]:.1%}"
            )


def mapcoder(data_dir: Path) -> None:
    ok: Counter[tuple[str, str]] = Counter()
    total: Counter[tuple[str, str]] = Counter()
    statuses: Counter[tuple[str, str]] = Counter()
    for path in sorted((data_dir / "MapCoder" / "final-results").glob("*/*/*.jsonl")):
        dataset = path.parent.name
        if dataset == "HumanEval":
            continue
        for line in path.read_text(encoding="utf-8").split("\n"):
            if not line.strip():
                continue
            for response in json.loads(line).get("responses", []):
                for mode in MODES:
                    found = extract_code(response, "python", mode)
                    statuses[(mode, found.status.value)] += 1
                    for key in ((dataset, mode), ("ALL", mode)):
                        total[key] += 1
                        ok[key] += found.valid
    print("== MapCoder final results (APPS, MBPP, xCodeEval; Python)")
    for key in sorted(total):
        print(f"  {key[0]:<10} {key[1]:<8} valid {ok[key]:>4}/{total[key]:<4} = {ok[key] / total[key]:.1%}")
    print(f"  statuses {dict(sorted(statuses.items()))}")


def cpu_seconds(fn: Callable[[], object], repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.process_time()
        fn()
        best = min(best, time.process_time() - start)
    return best


def timings() -> None:
    py = "def f(x):\n    return [x + 1 for y in range(9)]\n"
    cpp = "int f(int x) { return x + 1; }\n"
    messy = "Prose with `inline` ``code`` and ```py inline```.\n~~~\nx = [1,\n" + "y" * 200 + "\n\n"
    fences = "Text:\n```py\nx = [1,\n" + "`" * 50 + "\n~~~\n" + "y" * 200 + "\n"
    cases: list[tuple[str, str, Callable[[int], str]]] = [
        ("backticks on one line", "python", lambda n: "`" * n),
        ("fence lines", "python", lambda n: "```\n" * (n // 4)),
        ("one line of code-like text", "python", lambda n: "x = 1 + " * (n // 8)),
        ("messy unfenced text", "python", lambda n: messy * (n // len(messy))),
        ("many small blocks", "python", lambda n: fences * (n // len(fences))),
        ("valid Python in a block", "python", lambda n: "```python\n" + py * (n // len(py)) + "```"),
        ("valid C++ in a block", "cpp", lambda n: "```cpp\n" + cpp * (n // len(cpp)) + "```"),
    ]
    print("== CPU seconds per extraction (best of 3): 100 KB, 1 MB, ratio")
    for label, language, make in cases:
        small, large = make(100_000), make(1_000_000)
        for mode in MODES:
            t_small = cpu_seconds(partial(extract_code, small, language, mode))
            t_large = cpu_seconds(partial(extract_code, large, language, mode))
            status = extract_code(large, language, mode).status.value
            ratio = t_large / max(t_small, 1e-6)
            print(f"  {label:<27} {mode:<8} {t_small:.4f} {t_large:.4f} x{ratio:5.1f} -> {status}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    default = Path(__file__).resolve().parents[2] / "shared" / "data"
    parser.add_argument("--data-dir", type=Path, default=default)
    args = parser.parse_args()
    rm_bench(args.data_dir)
    mapcoder(args.data_dir)
    timings()


if __name__ == "__main__":
    main()
