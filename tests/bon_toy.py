"""The toy best-of-N pool shared by tests/test_bon.py and tests/test_bon_cmd.py: 3 problems "scale(x) = x*k+1"
(the first two with visible examples, the third without), 6 responses each, and their true verdicts."""

from __future__ import annotations

from pathlib import Path

from codescaler import data
from codescaler.records import Candidate, Problem, Status, TestSuite, Verdict

VARIANTS = [
    "Here you go:\n\n```python\ndef scale(x):\n    return x * {k} + 1\n```\n",                 # s0 correct
    "```python\ndef scale(x):\n    return x * {k}\n```",                                     # s1 wrong, fails examples
    "Handles the examples:\n```python\ndef scale(x):\n    return abs(x) * {k} + 1\n```\n",  # s2 passes examples only
    "```python\ndef scale(x):\n    raise NotImplementedError\n```",                          # s3 crashes
    "I think this works: def scale(x) return x",                                              # s4 no code
    "```python\ndef scale(x):\n    return {k} * x + 1\n```",                                  # s5 correct
]
CORRECT = ("s0", "s5")


def write_toy(root: Path) -> dict[str, Path]:
    """Write problems.jsonl, candidates.jsonl and verdicts.jsonl (the truth) into ``root``."""
    problems, cands = [], []
    for t in range(3):
        k = t + 2
        hidden = f"def check(candidate):\n    for x in range(-3, 6):\n        assert candidate(x) == x * {k} + 1\n"
        visible = f"def check(candidate):\n    assert candidate(0) == 1\n    assert candidate(2) == {2 * k + 1}\n"
        problems.append(Problem(task_id=f"toy/{t}", prompt=f"Write scale(x) returning x*{k}+1.",
                                tests=TestSuite(functional=hidden), entry_point="scale",
                                visible_tests=TestSuite(functional=visible) if t != 2 else None))
        cands += [Candidate(f"toy/{t}", f"s{i}", response=v.format(k=k)) for i, v in enumerate(VARIANTS)]
    data.write_problems(root / "problems.jsonl", problems)
    data.write_candidates(root / "candidates.jsonl", cands)
    data.write_verdicts(root / "verdicts.jsonl", [
        Verdict(c.task_id, c.candidate_id, Status.PASSED if c.candidate_id in CORRECT else Status.FAILED)
        for c in cands])
    return {"problems": root / "problems.jsonl", "candidates": root / "candidates.jsonl",
            "verdicts": root / "verdicts.jsonl"}
