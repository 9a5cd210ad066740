"""The CLI's one flag vocabulary, shared by every verb (layer L4; not a verb).

- ``--rm``: a reward model ('default', a checkpoint folder, a short name or a hub id); ``--policy``: a causal
  LM that writes candidates; ``--backbone``: the frozen or fine-tuned LM an RM is built from.
- ``--extract-mode``: how code is read out of a response (strict | lenient); a verb's default is in its help.
- ``--output``: always a FILE; ``--output-dir``: always a FOLDER. ``--limit``: the first K problems/items.
- ``--data-dir``: the public data folder.

Old spellings stay for one release as hidden aliases (``alias``): they set the same value and print one
line ``codescaler: --old is deprecated, use --new`` to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import math
import shlex
import sys
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

from codescaler.errors import InputError
from codescaler.records import MIN_MEMORY_MB

DEFAULT_FEATURE_CACHE = Path(".cache/codescaler/features")


class _Deprecated(argparse.Action):
    """A hidden old spelling: stores into the new flag's dest and says once which flag replaces it."""

    def __init__(self, option_strings: list[str], dest: str, *, new: str, **kwargs: Any) -> None:
        self.new = new
        self.warned = False
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        if not self.warned:
            print(f"codescaler: {option_string} is deprecated, use {self.new}", file=sys.stderr)
            self.warned = True
        setattr(namespace, self.dest, self.const if self.nargs == 0 else values)


def alias(container: Any, action: argparse.Action, *old: str) -> None:
    """Add ``old`` spellings of ``action`` (hidden, deprecated) to ``container`` (a parser or a group)."""
    container.add_argument(*old, dest=action.dest, action=_Deprecated, new=action.option_strings[0],
                           nargs=action.nargs, const=action.const, type=action.type, choices=action.choices,
                           metavar=action.metavar, default=argparse.SUPPRESS, help=argparse.SUPPRESS)


def flag(p: argparse.ArgumentParser, new: str, *old: str, required: bool = False, **kwargs: Any) -> argparse.Action:
    """Add ``new`` with its hidden old spellings; ``required`` means one of them must be given."""
    container: Any = p.add_mutually_exclusive_group(required=True) if required and old else p
    action = container.add_argument(new, required=required and not old, **kwargs)
    if old:
        alias(container, action, *old)
    return action


# ------------------------------------------------------------------------------------------- models
def add_rm(p: argparse.ArgumentParser, *, default: str | None = "default", required: bool = False,
           purpose: str = "", old: tuple[str, ...] = ("--model",)) -> None:
    shown = "" if required else " (default: %(default)s, the shipped RM)" if default == "default" else \
        " (default: %(default)s)"
    flag(p, "--rm", *old, required=required, default=None if required else default, metavar="RM",
         help=f"reward model{purpose}: 'default', a checkpoint folder, a short name or a hub id{shown}")


def add_policy(p: Any, *, default: str, old: tuple[str, ...] = ()) -> argparse.Action:
    action: argparse.Action = p.add_argument(
        "--policy", default=default, metavar="POLICY",
        help="causal LM that writes candidates: a prepared short name, a local folder or a hub id "
        "(default: %(default)s)")
    if old:
        alias(p, action, *old)
    return action


def add_backbone(p: argparse.ArgumentParser, *, help: str) -> None:
    flag(p, "--backbone", "--model", default=None, metavar="MODEL", help=help)


# ------------------------------------------------------------------------------------------ scoring
def add_extract_mode(p: argparse.ArgumentParser, *, default: str | None, help: str, old: tuple[str, ...] = ()) -> None:
    """``--extract-mode`` (strict | lenient); ``help`` must say the default (it differs between verbs)."""
    flag(p, "--extract-mode", *old, choices=["strict", "lenient"], default=default, help=help)


def add_scorer_options(p: argparse.ArgumentParser, *, dtype_default: str | None = "auto", batch_size: int = 16,
                       extract_mode: bool = True, full: bool = True) -> None:
    """How an RM is run: device, dtype, batch size; with ``full`` also max length, input format and prefix
    sharing (every ``Scorer.load`` option); with ``extract_mode`` the checkpoint-overridable extraction."""
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    p.add_argument("--dtype", default=dtype_default, choices=["auto", "float32", "bfloat16", "float16"],
                   help="RM weights' dtype (default: auto)")
    p.add_argument("--batch-size", type=int, default=batch_size, help="RM inputs per forward pass (default: %(default)s)")
    if extract_mode:
        add_extract_mode(p, default=None, help="override the checkpoint's extraction mode (default: the "
                         "checkpoint's, strict)")
    if full:
        p.add_argument("--max-length", type=int, default=None, help="token limit (default: the checkpoint's)")
        p.add_argument("--input-format", choices=["chat_template", "plain"], default=None,
                       help="only for plain HF reward models without codescaler.json (default: chat_template "
                       "when the tokenizer has one, else plain)")
        p.add_argument("--no-prefix-sharing", dest="prefix_sharing", action="store_false",
                       help="run every item in full instead of reusing a problem's shared prefix across its "
                       "candidates (same scores to float noise; for timing comparisons)")


def scorer_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The ``Scorer.load`` keyword arguments of ``add_scorer_options``'s flags (those the verb has)."""
    keys = ("device", "dtype", "batch_size", "extract_mode", "max_length", "input_format", "prefix_sharing")
    return {k: getattr(args, k) for k in keys if hasattr(args, k)}


# ------------------------------------------------------------------------------------- data, output
def add_limit(p: argparse.ArgumentParser, *old: str, default: int | None = None, what: str = "problems") -> None:
    flag(p, "--limit", *old, type=int, default=default, metavar="K",
         help=f"only the first K {what}" + (" (default: %(default)s)" if default is not None else " (default: all)"))


def add_data_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", type=Path, default=None,
                   help="public data folder (default: $CODESCALER_DATA, then ../shared/data)")


# ------------------------------------------------------------------------ features (features, train)
def add_feature_flags(p: argparse.ArgumentParser, *, with_backbone: bool) -> None:
    """Flags that define a feature spec (shared by ``features`` and ``train --head``)."""
    if with_backbone:
        add_backbone(p, help="causal-LM backbone: short name, folder or hub id (default qwen2.5-coder-0.5b-instruct)")
        p.add_argument("--max-length", type=int, default=None, help="tokens per input (default 1024)")
        p.add_argument("--batch-size", type=int, default=8, help="programs per forward pass")
        p.add_argument("--dtype", default=None, help="backbone dtype: auto (default), float32, bfloat16")
        add_extract_mode(p, default="strict", help="how code is read out of each pair's responses (default: strict)")
    p.add_argument("--layers", type=int, nargs="*", default=None, metavar="L",
                   help="hidden-state layers to read (0 = embeddings, 24 = the last of Qwen2.5-0.5B; default "
                   "12 18 24; none: no hidden states)")
    p.add_argument("--pooling", nargs="+", choices=["last", "mean"], default=["last", "mean"],
                   help="per layer: the last token's state and/or the mean over code tokens")
    p.add_argument("--no-likelihood", dest="likelihood", action="store_false",
                   help="skip the code's log-probability features (then the forward stops at the deepest layer)")
    p.add_argument("--without-problem", action="store_true",
                   help="add the code's log-probability without the problem (a second, cheaper pass)")
    p.add_argument("--no-facts", dest="facts", action="store_false", help="skip length / parses features")
    p.add_argument("--cache-dir", type=Path, default=DEFAULT_FEATURE_CACHE,
                   help="feature cache folder (default: %(default)s)")


def add_head_flags(p: argparse.ArgumentParser) -> None:
    """``train --head``'s fitting flags (read by ``head_settings``)."""
    p.add_argument("--l2", type=float, nargs="+", default=None,
                   help="--head: L2 strengths to cross-validate (default 1e-4 1e-3 1e-2 0.1 1)")
    p.add_argument("--free", nargs="+", default=None, metavar="NAME",
                   help="--head: feature groups (likelihood, facts, h24.last ...) or columns (lp_mean) whose "
                        "weights are not penalised, so a strongly regularised head falls back to them")
    p.add_argument("--folds", type=int, default=5, help="--head: cross-validation folds, grouped by problem")
    p.add_argument("--stack", nargs="+", default=None, metavar="RM",
                   help="--head: stack these RM checkpoints' raw scores with the head (e.g. default, the LoRA "
                        "RM); the stacking weights are fitted on --eval-pairs, which must be held out from "
                        "every stacked RM's training")


def head_settings(args: argparse.Namespace, command: str = "") -> Any:
    """``HeadTrainSettings`` from the feature flags (and, under ``train --head``, the head flags)."""
    from codescaler.head_training import (
        DEFAULT_BACKBONE,
        DEFAULT_LAYERS,
        DEFAULT_MAX_LENGTH,
        HeadTrainSettings,
    )
    from codescaler.heads import DEFAULT_L2_GRID, HeadSettings
    from codescaler.records import ExtractMode

    layers = DEFAULT_LAYERS if args.layers is None else tuple(args.layers)
    head = HeadSettings(kind=getattr(args, "head", None) or "linear",
                        l2_grid=tuple(getattr(args, "l2", None) or DEFAULT_L2_GRID),
                        folds=getattr(args, "folds", 5), seed=getattr(args, "seed", 0),
                        free=tuple(getattr(args, "free", None) or ()))
    output = getattr(args, "output_dir", None)
    return HeadTrainSettings(
        pairs=tuple(args.pairs), output=Path(output) if output else Path("."),
        backbone=args.backbone or DEFAULT_BACKBONE, layers=layers, pooling=tuple(args.pooling),
        likelihood=args.likelihood, without_problem=args.without_problem, facts=args.facts,
        max_length=args.max_length or DEFAULT_MAX_LENGTH, extract_mode=ExtractMode(args.extract_mode),
        eval_pairs=getattr(args, "eval_pairs", None), cache_dir=args.cache_dir, head=head,
        batch_size=args.batch_size, dtype=args.dtype, command=command, stack=tuple(getattr(args, "stack", None) or ()))


def feature_progress() -> tuple[Any, Any, Any]:
    """(on_total, step, close) callbacks drawing one tqdm bar over programs."""
    from tqdm import tqdm

    bar: dict[str, Any] = {}

    def on_total(total: int) -> None:
        bar["bar"] = tqdm(total=total, unit="program", desc="features", disable=total == 0)

    def step(n: int) -> None:
        if "bar" in bar:
            bar["bar"].update(n)

    def close() -> None:
        if "bar" in bar:
            bar["bar"].close()

    return on_total, step, close


def run_head_training(args: argparse.Namespace, command: str) -> int:
    """``train --head``: fit a Bradley-Terry head on cached backbone features; print one summary line."""
    from codescaler.head_training import train_head

    if args.init_from or args.lora:
        raise InputError("--head trains a head on a frozen backbone: --init-from and --lora do not apply",
                         field="--head", fix="drop --init-from/--lora, or drop --head for TRL training")
    out: Path = args.output_dir
    if out.exists() and not args.resume and any(out.iterdir()):
        raise InputError(f"{out} already exists and is not empty", path=str(out),
                         fix="pass --resume to overwrite it with a new head, or choose a new --output-dir")
    on_total, step, close = feature_progress()
    try:
        saved, manifest = train_head(head_settings(args, command), step, on_total)
    finally:
        close()
    report = manifest["head"]
    cv = report.get("cv_accuracy")
    held = report.get("heldout_accuracy")
    stacked = report.get("stack")
    extra = "" if not stacked else (f"; stacked with {', '.join(stacked['columns'][1:])} on {stacked['heldout_pairs']}"
                                    f" held-out pairs, CV accuracy "
                                    f"{'n/a' if stacked['cv_accuracy'] is None else format(stacked['cv_accuracy'], '.3f')}")
    print(f"saved {saved} ({report['kind']} head, {report['pairs']} pairs; CV accuracy "
          f"{'n/a' if cv is None else f'{cv:.3f}'}, held-out {'n/a' if held is None else f'{held:.3f}'}{extra})")
    return 0


def command_line(verb: str, args: argparse.Namespace, skip: Collection[str] = (),
                 on_by_default: Sequence[str] = ("likelihood", "facts")) -> str:
    """The command line that repeats a run of ``verb``: every flag in ``args`` spelled out (defaults
    included) except those in ``skip`` and those that are None or False; a flag in ``on_by_default``
    (``--no-likelihood`` / ``--no-facts``) is written as ``--no-X`` when it is off."""
    words = ["codescaler", verb]
    for key, value in sorted(vars(args).items()):
        if key in skip or value is None or value is False:
            continue
        flag = "--" + key.replace("_", "-")
        if isinstance(value, list):
            words += [flag, *(str(v) for v in value)]
        elif value is not True:
            words += [flag, str(value)]
        elif key not in on_by_default:
            words.append(flag)
    for key in on_by_default:
        if getattr(args, key, True) is False:
            words.append("--no-" + key.replace("_", "-"))
    return shlex.join(words)


# ------------------------------------------------------------------- value types, output files
def _int_at_least(text: str, least: int, what: str) -> int:
    try:
        value = int(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from err
    if value < least:
        raise argparse.ArgumentTypeError(f"expected {what}, got {value}")
    return value


def positive_int(text: str) -> int:
    return _int_at_least(text, 1, "a positive integer")


def cap(text: str) -> int | None:
    """An upper bound where 0 means none: an integer >= 0, returned as ``None`` for 0."""
    return _int_at_least(text, 0, "an integer >= 0") or None


def positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}") from err
    # inf would reach setrlimit as an overflow: every run an `error` verdict that a resume never retries.
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"expected a positive, finite number of seconds, got {text!r}")
    return value


def memory_mb(text: str) -> int:
    value = positive_int(text)
    if value < MIN_MEMORY_MB:
        raise argparse.ArgumentTypeError(f"expected at least {MIN_MEMORY_MB} (MiB; Python itself needs about 24 "
                                         f"to start), got {value}")
    return value


@contextlib.contextmanager
def exclusive_output(output: Path, verb: str) -> Any:
    """Hold an flock on ``OUTPUT.lock`` for the whole run: a second run on the same ``--output`` FILE (which
    would append the same rows again, or cut a "torn" line the first one is writing) is refused."""
    if output.is_dir():
        raise InputError("is a directory", path=str(output), field="--output", fix="--output is a file: give a file path")
    lock_path = output.with_name(output.name + ".lock")
    with contextlib.ExitStack() as stack:
        with writing_output(output):
            output.parent.mkdir(parents=True, exist_ok=True)
            handle = stack.enter_context(open(lock_path, "a+", encoding="utf-8"))
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise InputError(f"another codescaler {verb} is writing to this output", path=str(output),
                             field="--output", fix="wait for it to finish (or stop it), then re-run to resume") from None
        yield


@contextlib.contextmanager
def writing_output(output: Path) -> Any:
    """OSError while writing the output (full disk, no permission, a file where a folder should be) ->
    one InputError line; every row already written stays, and re-running resumes."""
    try:
        yield
    except OSError as err:
        raise InputError(f"cannot write: {err.strerror or err}", path=str(err.filename or output), field="--output",
                         fix="free space / fix permissions or choose another --output; re-run to resume") from None
