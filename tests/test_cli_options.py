"""The CLI speaks one vocabulary: every flag has help, old spellings are hidden aliases that still work
and say (once) what replaced them, and --output / --output-dir / --extract-mode mean the same everywhere."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from codescaler.cli import build_parser, main
from codescaler.errors import InputError

REPO_ROOT = Path(__file__).resolve().parents[1]
CLI = REPO_ROOT / ".venv" / "bin" / "codescaler"
RETIRED = {"--mode", "--extract", "--model", "--problems-limit", "--train-limit"}


def _subcommands(parser: argparse.ArgumentParser, path: str = "") -> Iterator[tuple[str, argparse.ArgumentParser]]:
    children = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if path and not children:
        yield path, parser
    for action in children:
        for name, sub in action.choices.items():
            yield from _subcommands(sub, f"{path} {name}".strip())


def _options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions if a.option_strings and a.dest != "help"]


COMMANDS = dict(_subcommands(build_parser()))


def test_the_walk_sees_every_verb_and_nested_benchmark() -> None:
    assert {"extract", "execute", "score", "serve", "train", "rl", "eval pairs", "eval rm-bench",
            "models prepare"} <= set(COMMANDS)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_visible_option_has_help(command: str) -> None:
    missing = [a.option_strings[0] for a in _options(COMMANDS[command])
               if a.help != argparse.SUPPRESS and not (a.help or "").strip()]
    assert not missing, f"codescaler {command}: flags without help: {missing}"


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_the_vocabulary_is_the_same_in_every_verb(command: str) -> None:
    visible = [a for a in _options(COMMANDS[command]) if a.help != argparse.SUPPRESS]
    for action in visible:
        names = set(action.option_strings)
        assert not names & RETIRED, f"codescaler {command}: retired spelling {names & RETIRED} is visible"
        help_text = (action.help or "").lower()
        if "--output-dir" in names:
            assert "folder" in help_text, f"codescaler {command}: --output-dir must be a folder: {action.help!r}"
        if "--output" in names:
            assert "folder" not in help_text and "directory" not in help_text and "json" in help_text, \
                f"codescaler {command}: --output must be a file: {action.help!r}"
        if "--extract-mode" in names:
            assert action.choices == ["strict", "lenient"] and "default" in help_text
    for hidden in (a for a in _options(COMMANDS[command]) if a.help == argparse.SUPPRESS):
        assert set(hidden.option_strings) <= RETIRED | {"--output", "--no-lora"}, hidden.option_strings
        assert any(v.dest == hidden.dest for v in visible), f"alias {hidden.option_strings} has no new flag"


# (old argv, new argv, attribute, expected value, deprecation line)
ALIASES = [
    (["extract", "--input", "i", "--output", "o", "--mode", "lenient"],
     ["extract", "--input", "i", "--output", "o", "--extract-mode", "lenient"], "extract_mode", "lenient",
     "--mode is deprecated, use --extract-mode"),
    (["execute", "--problems", "p", "--candidates", "c", "--output", "o", "--extract", "strict"],
     ["execute", "--problems", "p", "--candidates", "c", "--output", "o", "--extract-mode", "strict"],
     "extract_mode", "strict", "--extract is deprecated, use --extract-mode"),
    (["score", "--input", "i", "--output", "o", "--model", "m"], ["score", "--input", "i", "--output", "o", "--rm", "m"],
     "rm", "m", "--model is deprecated, use --rm"),
    (["eval", "pairs", "--pairs", "p", "--model", "m"], ["eval", "pairs", "--pairs", "p", "--rm", "m"], "rm", "m",
     "--model is deprecated, use --rm"),
    (["sample", "--problems", "p", "--output", "o", "--model", "m"],
     ["sample", "--problems", "p", "--output", "o", "--policy", "m"], "policy", "m",
     "--model is deprecated, use --policy"),
    (["demo", "--problems-limit", "3"], ["demo", "--limit", "3"], "limit", 3,
     "--problems-limit is deprecated, use --limit"),
    (["rl", "--output-dir", "r", "--train-limit", "4"], ["rl", "--output-dir", "r", "--limit", "4"], "limit", 4,
     "--train-limit is deprecated, use --limit"),
    (["train", "--pairs", "p", "--output", "o"], ["train", "--pairs", "p", "--output-dir", "o"], "output_dir",
     Path("o"), "--output is deprecated, use --output-dir"),
    (["features", "--pairs", "p", "--model", "m"], ["features", "--pairs", "p", "--backbone", "m"], "backbone", "m",
     "--model is deprecated, use --backbone"),
]


@pytest.mark.parametrize(("old", "new", "attribute", "value", "line"), ALIASES, ids=[a[4] for a in ALIASES])
def test_an_old_spelling_sets_the_same_value_and_says_so_once(old: list[str], new: list[str], attribute: str,
                                                               value: Any, line: str,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    assert getattr(build_parser().parse_args(new), attribute) == value
    assert capsys.readouterr().err == ""
    old_flag = line.split()[0]
    twice = old + old[old.index(old_flag):old.index(old_flag) + 2]
    assert getattr(build_parser().parse_args(twice), attribute) == value
    assert capsys.readouterr().err == f"codescaler: {line}\n"


def test_a_required_flag_is_satisfied_by_its_old_spelling_and_missing_without_both(
        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        build_parser().parse_args(["train", "--pairs", "p"])
    assert stop.value.code == 2 and "--output-dir" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--pairs", "p", "--output", "a", "--output-dir", "b"])


def _extract_input(tmp_path: Path) -> Path:
    src = tmp_path / "in.jsonl"
    # two fenced blocks: strict finds no single block, lenient takes the program
    response = "```python\ndef f(x):\n    return x\n```\nand\n```python\nprint(f(1))\n```"
    src.write_text(json.dumps({"id": "a", "response": response}) + "\n", encoding="utf-8")
    return src


def _run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    exe = [str(CLI)] if CLI.exists() else [sys.executable, "-m", "codescaler"]
    return subprocess.run([*exe, *map(str, args)], capture_output=True, text=True, timeout=120, check=False)


def test_the_real_cli_takes_the_old_spelling_with_one_deprecation_line(tmp_path: Path) -> None:
    src = _extract_input(tmp_path)
    old = _run("extract", "--mode", "lenient", "--input", src, "--output", tmp_path / "old.jsonl")
    new = _run("extract", "--extract-mode", "lenient", "--input", src, "--output", tmp_path / "new.jsonl")
    strict = _run("extract", "--input", src, "--output", tmp_path / "strict.jsonl")
    assert old.returncode == new.returncode == strict.returncode == 0, old.stderr + new.stderr
    assert [ln for ln in old.stderr.splitlines() if "deprecated" in ln] == [
        "codescaler: --mode is deprecated, use --extract-mode"]
    assert "deprecated" not in new.stderr
    rows = {name: json.loads((tmp_path / f"{name}.jsonl").read_text(encoding="utf-8"))
            for name in ("old", "new", "strict")}
    assert rows["old"] == rows["new"] and rows["old"]["code"] is not None
    assert rows["strict"]["code"] is None  # the mode reached the extractor: the outputs differ


def test_serve_hands_every_scorer_option_to_the_scorer(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from codescaler.scorer import Scorer

    seen: dict[str, Any] = {}

    def fake_load(model: str, **kwargs: Any) -> Any:
        seen.update(kwargs, model=model)
        raise InputError("stop here")

    monkeypatch.setattr(Scorer, "load", staticmethod(fake_load))
    code = main(["serve", "--rm", str(tmp_path), "--input-format", "plain", "--extract-mode", "lenient",
                 "--no-prefix-sharing", "--max-length", "64", "--batch-size", "3", "--dtype", "float32"])
    assert code == 2
    assert seen == {"model": str(tmp_path), "input_format": "plain", "extract_mode": "lenient",
                    "prefix_sharing": False, "max_length": 64, "batch_size": 3, "dtype": "float32", "device": None}
