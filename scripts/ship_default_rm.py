#!/usr/bin/env python
"""Copy a trained LoRA reward model into ``src/codescaler/assets/default_rm`` (what ``--model default`` loads).

Usage: python scripts/ship_default_rm.py RUN_DIR [--eval J ...]

RUN_DIR is a ``codescaler train --lora`` output on a backbone that ``codescaler.models`` can rebuild
offline (a short name such as ``qwen2.5-coder-0.5b-instruct``): only the adapter, the score head and
``codescaler.json`` are shipped (~10 MB); the base weights and the tokenizer come from the set-up's
model cache. ``--eval`` JSON files (from ``codescaler eval``) are recorded in the metadata's manifest
under ``heldout_eval``. The copy is written to a temporary folder and swapped in at the end.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET = ROOT / "src" / "codescaler" / "assets" / "default_rm"
SHIPPED = ("adapter_model.safetensors",)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--eval", type=Path, nargs="*", default=[], help="codescaler eval JSON outputs")
    parser.add_argument("--target", type=Path, default=TARGET, help="where to ship (default: %(default)s)")
    args = parser.parse_args(argv)
    target = args.target
    run = args.run_dir
    meta_path = run / "codescaler.json"
    if not (run / "adapter_config.json").is_file() or not meta_path.is_file():
        print(f"error: {run} is not a finished `codescaler train --lora` output (adapter_config.json and "
              "codescaler.json are needed)", file=sys.stderr)
        return 2
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    base = meta.get("base_model") or ""
    if "/" in base or not base:
        print(f"error: base model {base!r} is a path or hub id; the default RM must name a backbone that the "
              "set-up builds offline (e.g. qwen2.5-coder-0.5b-instruct)", file=sys.stderr)
        return 2
    evals = {}
    for path in args.eval:
        evals[path.name] = json.loads(path.read_text(encoding="utf-8"))
    if evals:
        meta.setdefault("manifest", {})["heldout_eval"] = evals
    adapter = json.loads((run / "adapter_config.json").read_text(encoding="utf-8"))
    adapter["base_model_name_or_path"] = base   # not this machine's cache path
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".default_rm.", dir=target.parent))
    try:
        for name in SHIPPED:
            shutil.copy2(run / name, staging / name)
        (staging / "adapter_config.json").write_text(json.dumps(adapter, indent=2) + "\n", encoding="utf-8")
        (staging / "codescaler.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n",
                                                 encoding="utf-8")
        old = target.with_name(f".{target.name}.old")
        if target.exists():
            shutil.rmtree(old, ignore_errors=True)
            target.rename(old)
        staging.rename(target)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    size = sum(p.stat().st_size for p in target.iterdir())
    print(f"shipped {run} -> {target} ({size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
