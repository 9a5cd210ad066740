"""A content-addressed, resumable on-disk cache of feature rows (L2).

Layout: ``ROOT/<spec key>[.<precision>]/spec.json`` + ``part-*.npz`` shards. A row's key is
``sha256(spec key, problem, code)``, so a row can only ever be found for the exact backbone weights,
input format, truncation and feature set that made it (the spec key covers them all): features of
another backbone or format are never mixed in. Rows computed in another precision than float32 (bf16
on a CPU with AMX, say: a head's scores then differ at Spearman ~0.997) live in a folder of their own
(``<spec key>.bfloat16``), and ``fill`` refuses an extractor running in another precision than the
cache's, so a cache shared between machines never mixes them. Each shard holds ``keys`` and ``rows`` (float16 hidden
states would lose the likelihood sums' precision, so rows are stored as float32) and is written
atomically (temp file + rename), so a killed run leaves whole shards only; a shard that cannot be read
(truncated by a full disk, say) is moved aside with a warning and its rows are computed again.

``fill`` computes what is missing in chunks, writing a shard per chunk: killing it at any point loses
at most one chunk, and a rerun continues where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from codescaler.data.artifacts import atomic_open, atomic_write_json
from codescaler.errors import InputError
from codescaler.features import FeatureExtractor, FeatureSpec

logger = logging.getLogger(__name__)

CHUNK = 256


def row_key(spec_key: str, prompt: str, code: str) -> str:
    digest = hashlib.sha256(spec_key.encode())
    for text in (prompt, code):
        data = text.encode("utf-8", "surrogatepass")
        digest.update(len(data).to_bytes(8, "big") + data)
    return digest.hexdigest()


class FeatureCache:
    """Rows by (problem, code) for one ``FeatureSpec``; see the module docstring."""

    def __init__(self, root: str | Path, spec: FeatureSpec, precision: str = "float32") -> None:
        self.spec = spec
        self.precision = precision
        self.folder = Path(root) / (spec.key[:24] if precision == "float32" else f"{spec.key[:24]}.{precision}")
        self.folder.mkdir(parents=True, exist_ok=True)
        spec_file = self.folder / "spec.json"
        if spec_file.is_file():
            try:
                stored = FeatureSpec.from_dict(json.loads(spec_file.read_text(encoding="utf-8")), path=str(spec_file))
            except (json.JSONDecodeError, InputError) as err:
                raise InputError(f"unreadable feature cache spec ({err})", path=str(spec_file),
                                 fix="delete this cache folder") from None
            if stored.key != spec.key:
                raise InputError("this cache folder belongs to another feature spec", path=str(spec_file),
                                 field="spec", fix="delete this cache folder or use another --cache-dir")
        else:
            atomic_write_json(spec_file, spec.to_dict(), sort_keys=True)
        self.width = len(spec.names())
        self._index: dict[str, tuple[int, int]] = {}
        self._shards: list[Any] = []
        for path in sorted(self.folder.glob("part-*.npz")):
            self._load_shard(path)

    def _load_shard(self, path: Path) -> None:
        import numpy as np

        try:
            with np.load(path, allow_pickle=False) as data:
                keys, rows = [str(k) for k in data["keys"]], np.asarray(data["rows"], dtype=np.float32)
            if rows.shape != (len(keys), self.width):
                raise ValueError(f"rows shape {rows.shape}, expected ({len(keys)}, {self.width})")
        except Exception as err:  # zipfile/numpy raise several types for a truncated file
            bad = path.with_suffix(".bad")
            logger.warning("feature cache shard %s unreadable (%s): moved to %s, its rows will be recomputed",
                           path, err, bad.name)
            path.replace(bad)
            return
        shard = len(self._shards)
        self._shards.append(rows)
        for r, key in enumerate(keys):
            self._index[key] = (shard, r)

    def __len__(self) -> int:
        return len(self._index)

    def missing(self, prompts: Sequence[str], codes: Sequence[str]) -> list[int]:
        """Indices whose rows are not cached (first occurrence of each distinct item)."""
        seen: set[str] = set()
        out = []
        for i, (p, c) in enumerate(zip(prompts, codes, strict=True)):
            key = row_key(self.spec.key, p, c)
            if key not in self._index and key not in seen:
                seen.add(key)
                out.append(i)
        return out

    def fill(self, extractor: FeatureExtractor, prompts: Sequence[str], codes: Sequence[str],
             progress: Callable[[int], None] | None = None, chunk: int = CHUNK) -> int:
        """Compute and store every missing row; ``progress(n)`` after each chunk. Returns rows computed."""
        if extractor.spec.key != self.spec.key:
            raise InputError("the extractor computes another feature spec than this cache holds",
                             field="spec", fix="open the cache with the extractor's spec")
        if extractor.precision != self.precision:
            raise InputError(f"this cache holds {self.precision} rows and the extractor runs in {extractor.precision}",
                             field="dtype", fix=f"open the cache with precision={extractor.precision!r}, or load the "
                             f"backbone in {self.precision}")
        todo = self.missing(prompts, codes)
        # Group a problem's programs together so prefix sharing works within a chunk.
        todo.sort(key=lambda i: (prompts[i], len(codes[i])))
        done = 0
        for s in range(0, len(todo), chunk):
            part = todo[s:s + chunk]
            rows = extractor.compute([prompts[i] for i in part], [codes[i] for i in part])
            self._write_shard([row_key(self.spec.key, prompts[i], codes[i]) for i in part], rows)
            done += len(part)
            if progress is not None:
                progress(len(part))
        return done

    def get(self, prompts: Sequence[str], codes: Sequence[str]) -> Any:
        """Rows (numpy float32, n x width) in input order. Raises ``KeyError`` for a missing item."""
        import numpy as np

        out = np.empty((len(codes), self.width), dtype=np.float32)
        for i, (p, c) in enumerate(zip(prompts, codes, strict=True)):
            shard, r = self._index[row_key(self.spec.key, p, c)]
            out[i] = self._shards[shard][r]
        return out

    def _write_shard(self, keys: list[str], rows: Any) -> None:
        import numpy as np

        path = self.folder / f"part-{uuid.uuid4().hex}.npz"
        with atomic_open(path, binary=True) as handle:
            np.savez(handle, keys=np.array(keys), rows=np.asarray(rows, dtype=np.float32))
        shard = len(self._shards)
        self._shards.append(np.asarray(rows, dtype=np.float32))
        for r, key in enumerate(keys):
            self._index[key] = (shard, r)


