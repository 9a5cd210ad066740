"""``python -m codescaler.models ARGS`` = ``codescaler models ARGS`` (layer L4; scripts/setup.sh calls it)."""

from __future__ import annotations

import sys

from codescaler.cli import main

if __name__ == "__main__":
    sys.exit(main(["models", *sys.argv[1:]]))
