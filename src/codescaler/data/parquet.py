"""verl's RL parquet: one row per problem, in the columns verl's ``RLHFDataset`` and reward managers read.

Columns (the convention of verl's ``examples/data_preprocess`` scripts):

- ``data_source``: ``codescaler/<dataset>`` (verl's ``data.reward_fn_key`` default);
- ``prompt``: chat messages shown to the policy (built by the caller);
- ``ability``: ``"code"``;
- ``reward_model``: ``{"style": "model", "ground_truth": <JSON text of the hidden tests>}``; the RM ignores
  ``ground_truth`` (execution-free), it is kept so an execution baseline can use the same file;
- ``extra_info``: ``{"question": <problem statement>, "index", "split", "task_id", "language"}``:
  ``codescaler.integrations.verl.compute_score`` reads the problem from ``extra_info["question"]``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

from codescaler.data.artifacts import atomic_open
from codescaler.data.rows import problem_to_json
from codescaler.errors import InputError
from codescaler.extras import require
from codescaler.records import Problem


def write_verl_parquet(path: str | os.PathLike[str], problems: Sequence[Problem],
                       messages: Sequence[list[dict[str, str]]], *, dataset: str, split: str) -> int:
    """Write ``problems`` (with the chat ``messages`` of each) as verl's parquet at ``path``, atomically;
    returns the row count. Raises ``InputError`` when the two sequences differ in length."""
    require("data", "pyarrow")  # installed with datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    if len(problems) != len(messages):
        raise InputError(f"{len(problems)} problems but {len(messages)} prompts", field="messages")
    rows = []
    for index, (problem, chat) in enumerate(zip(problems, messages, strict=True)):
        canonical = problem_to_json(problem)
        tests = {key: canonical[key] for key in ("tests", "stdio", "entry_point") if key in canonical}
        rows.append({
            "data_source": f"codescaler/{dataset}",
            "prompt": [{"role": m["role"], "content": m["content"]} for m in chat],
            "ability": "code",
            "reward_model": {"style": "model", "ground_truth": json.dumps(tests, ensure_ascii=False)},
            "extra_info": {"question": problem.prompt, "index": index, "split": split,
                           "task_id": problem.task_id, "language": problem.language.value},
        })
    with atomic_open(path, binary=True) as handle:
        pq.write_table(pa.Table.from_pylist(rows), handle)
    return len(rows)
