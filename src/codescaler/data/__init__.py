"""The only package that knows file formats (layer L2).

Artifact files (atomic writes, JSONL reading with ``path:line`` errors, the resumable ``AppendStore``)
live in :mod:`.artifacts`; row <-> record codecs in :mod:`.rows`; the typed JSONL readers and writers
(problems, candidates, verdicts, score items; ``docs/formats.md``) in :mod:`.jsonl`, pairs in
:mod:`.pair_file`; the public datasets' converters in :mod:`.sources`; the data-folder lookup in
:mod:`.locate`; the Hugging Face hub
path in :mod:`.hub`; verl's parquet in :mod:`.parquet`. Everything public is re-exported here: ``from codescaler import data``.
"""

from __future__ import annotations

from codescaler.data.artifacts import (
    AppendStore,
    atomic_open,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_jsonl,
    atomic_write_text,
    file_mode,
    file_sha256,
    parse_json_line,
    read_jsonl,
    read_text_input,
    task_candidate_key,
)
from codescaler.data.jsonl import (
    append_jsonl,
    index_verdicts,
    iter_candidates,
    read_candidates,
    read_extract_rows,
    read_problems,
    read_score_inputs,
    read_score_items,
    read_verdicts,
    write_candidates,
    write_jsonl,
    write_problems,
    write_verdicts,
)
from codescaler.data.pair_file import pair_from_json, pair_to_json, read_pairs, write_pairs
from codescaler.data.rows import (
    candidate_from_json,
    candidate_to_json,
    problem_from_json,
    problem_to_json,
    to_json,
    verdict_from_json,
    verdict_to_json,
)

__all__ = [
    "AppendStore", "append_jsonl", "atomic_open", "atomic_write_bytes", "atomic_write_json", "atomic_write_jsonl",
    "atomic_write_text", "candidate_from_json", "candidate_to_json", "file_mode", "file_sha256", "index_verdicts",
    "iter_candidates", "parse_json_line", "problem_from_json", "problem_to_json", "read_candidates",
    "read_extract_rows", "read_jsonl", "read_problems", "read_score_inputs", "read_score_items", "read_text_input",
    "read_verdicts", "task_candidate_key", "to_json", "verdict_from_json", "verdict_to_json", "write_candidates",
    "write_jsonl", "write_problems", "write_verdicts", "pair_from_json", "pair_to_json", "read_pairs", "write_pairs",
]

# Names below import lazily-light modules only (no dataset is read at import time).
from codescaler.data.locate import DATA_ENV, locate_data_dir  # noqa: E402
from codescaler.data.sources import (  # noqa: E402
    DATASETS,
    DatasetInfo,
    dataset_info,
    load_dataset_candidates,
    load_dataset_problems,
    load_generated_tests,
)


def write_verl_parquet(*args, **kwargs):  # type: ignore[no-untyped-def]
    """See :func:`codescaler.data.parquet.write_verl_parquet` (imported on call: pyarrow is heavy)."""
    from codescaler.data.parquet import write_verl_parquet as _write

    return _write(*args, **kwargs)


def load_from_hub(name: str, split: str | None = None):  # type: ignore[no-untyped-def]
    """See :func:`codescaler.data.hub.load_from_hub` (imported on call: ``datasets`` is heavy)."""
    from codescaler.data.hub import load_from_hub as _load

    return _load(name, split)


__all__ += ["DATA_ENV", "DATASETS", "DatasetInfo", "dataset_info", "load_dataset_candidates",
            "load_dataset_problems", "load_from_hub", "load_generated_tests", "locate_data_dir", "write_verl_parquet"]
