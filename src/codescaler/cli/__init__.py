"""``codescaler <verb>``: the composition root (layer L4).

Each verb lives in its own module ``codescaler.cli.<module>`` exposing ``register(subparsers)``, which
adds its parser and sets ``func`` (``args -> int`` exit code). Modules are imported only when the CLI
runs, so importing ``codescaler`` stays cheap. ``InputError`` becomes a one-line message and exit 2.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from codescaler import __version__
from codescaler.errors import InputError

# (module under codescaler.cli) in the order verbs appear in --help.
VERB_MODULES: tuple[str, ...] = (
    "demo_cmd",
    "data_cmd",
    "extract_cmd",
    "sample_cmd",
    "execute_cmd",
    "score_cmd",
    "pairs_cmd",
    "mutate_cmd",
    "features_cmd",
    "train_cmd",
    "eval_cmd",
    "bon_cmd",
    "rl_cmd",
    "serve_cmd",
    "models_cmd",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="codescaler",
        description="Execution-free reward models for code: extract, execute, pair, train, score, serve.",
    )
    parser.add_argument("--version", action="version", version=f"codescaler {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    for name in VERB_MODULES:
        module = importlib.import_module(f"codescaler.cli.{name}")
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args) or 0)
    except InputError as err:
        print(f"codescaler {args.verb}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"codescaler {args.verb}: interrupted; outputs written so far are kept", file=sys.stderr)
        return 130
