"""Every JSONL reader of the CLI against every kind of broken input: exit 2, one line, no traceback.

Plus `execute`'s own failure paths (output, cache, limits, a concurrent run, a full disk) and the
conflicting duplicate verdicts that `pairs` and `bon` must refuse. Runs the CLI in-process (its one
handler is what is tested); nothing here executes a model.
"""

from __future__ import annotations

import errno
import fcntl
import json
from pathlib import Path

import pytest

from codescaler.cli import main

PROBLEM = {"task_id": "t1", "prompt": "Add.", "tests": "def check(candidate):\n    assert candidate(1, 2) == 3\n",
           "entry_point": "add"}
CANDIDATE = {"task_id": "t1", "candidate_id": "c1", "response": "no code in this answer"}
VERDICT = {"task_id": "t1", "candidate_id": "c1", "status": "passed", "passed": 1, "total": 1, "seconds": 0.1,
           "detail": ""}
SCORE_ITEM = {"id": "a", "prompt": "Add.", "response": "```python\ndef add(a, b):\n    return a + b\n```"}
EVAL_PAIR = {"prompt": "Add.", "chosen": "def add(a, b):\n    return a + b\n", "rejected": "def add(a, b):\n    return 0\n"}
EXTRACT_ROW = {"id": "a", "response": "```python\nprint(1)\n```"}


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture
def good(tmp_path: Path) -> dict[str, Path]:
    return {"problems": _write(tmp_path / "problems.jsonl", [PROBLEM]),
            "candidates": _write(tmp_path / "candidates.jsonl", [CANDIDATE]),
            "verdicts": _write(tmp_path / "verdicts.jsonl", [VERDICT]),
            "score": _write(tmp_path / "score.jsonl", [SCORE_ITEM]),
            "pairs": _write(tmp_path / "pairs.jsonl", [EVAL_PAIR]),
            "extract": _write(tmp_path / "extract.jsonl", [EXTRACT_ROW]),
            "out": tmp_path / "out"}


# reader -> (row it reads, its id field, its text field, argv given the good files and the bad path)
READERS = {
    "execute --problems": (PROBLEM, "task_id", "prompt", lambda g, x: [
        "execute", "--problems", x, "--candidates", g["candidates"], "--output", g["out"] / "v.jsonl", "--no-cache"]),
    "execute --candidates": (CANDIDATE, "candidate_id", "response", lambda g, x: [
        "execute", "--problems", g["problems"], "--candidates", x, "--output", g["out"] / "v.jsonl", "--no-cache"]),
    "execute --output (resume)": (VERDICT, "candidate_id", "detail", lambda g, x: [
        "execute", "--problems", g["problems"], "--candidates", g["candidates"], "--output", x, "--no-cache"]),
    "score --input": (SCORE_ITEM, "id", "prompt", lambda g, x: [
        "score", "--input", x, "--output", g["out"] / "s.jsonl", "--rm", "no-such-model"]),
    "pairs --problems": (PROBLEM, "task_id", "prompt", lambda g, x: [
        "pairs", "--problems", x, "--candidates", g["candidates"], "--verdicts", g["verdicts"],
        "--output", g["problems"].parent / "p.jsonl"]),
    "pairs --candidates": (CANDIDATE, "candidate_id", "response", lambda g, x: [
        "pairs", "--problems", g["problems"], "--candidates", x, "--verdicts", g["verdicts"],
        "--output", g["problems"].parent / "p.jsonl"]),
    "pairs --verdicts": (VERDICT, "candidate_id", "detail", lambda g, x: [
        "pairs", "--problems", g["problems"], "--candidates", g["candidates"], "--verdicts", x,
        "--output", g["problems"].parent / "p.jsonl"]),
    "eval pairs --pairs": (EVAL_PAIR, "prompt", "chosen", lambda g, x: [
        "eval", "pairs", "--pairs", x, "--rm", "no-such-model"]),
    "bon --problems": (PROBLEM, "task_id", "prompt", lambda g, x: [
        "bon", "--problems", x, "--candidates", g["candidates"], "--verdicts", g["verdicts"],
        "--output-dir", g["out"] / "bon"]),
    "bon --candidates": (CANDIDATE, "candidate_id", "response", lambda g, x: [
        "bon", "--problems", g["problems"], "--candidates", x, "--verdicts", g["verdicts"],
        "--output-dir", g["out"] / "bon"]),
    "bon --verdicts": (VERDICT, "candidate_id", "detail", lambda g, x: [
        "bon", "--problems", g["problems"], "--candidates", g["candidates"], "--verdicts", x,
        "--output-dir", g["out"] / "bon"]),
    "extract --input": (EXTRACT_ROW, "id", "response", lambda g, x: [
        "extract", "--input", x, "--output", g["out"] / "e.jsonl"]),
}


def _with(row: dict, field: str, raw_json_value: str) -> bytes:
    """``row`` as one JSON line whose ``field`` holds a raw JSON value (escapes kept as written)."""
    marker = "@@VALUE@@"
    return json.dumps({**row, field: marker}).replace(json.dumps(marker), raw_json_value).encode() + b"\n"


def _bad_input(kind: str, row: dict, id_field: str, text_field: str, tmp: Path) -> Path:
    path = tmp / f"bad-{kind}.jsonl"
    if kind == "directory":
        path.mkdir()
        return path
    content = {
        "deeply nested": b"[" * 100_000 + b"\n",
        "integer over the digit limit": _with(row, id_field, "9" * 5000),
        "lone surrogate in the id": _with(row, id_field, '"\\ud800"'),
        "lone surrogate in the text": _with(row, text_field, '"ok \\udfff then"'),
        "binary": b"\x89PNG\r\n\x1a\n\x00\xff\xfe" + bytes(range(256)),
    }[kind]
    path.write_bytes(content)
    return path


KINDS = ["deeply nested", "integer over the digit limit", "lone surrogate in the id", "lone surrogate in the text",
         "binary", "directory"]


def _cli(argv: list, capsys) -> tuple[int, list[str]]:
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exit_:  # argparse refusals
        code = exit_.code if isinstance(exit_.code, int) else 2
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    # Log records (INFO/WARNING) and argparse's usage block (flag refusals) may precede the error; the
    # error itself is exactly one line.
    lines = [line for line in err.split("\n") if line.strip()
             and not line.startswith(("INFO ", "WARNING ", "usage: ", " "))]
    return code, lines


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("reader", sorted(READERS))
def test_every_reader_refuses_broken_input_with_one_line_and_exit_2(reader, kind, good, tmp_path, capsys):
    row, id_field, text_field, argv = READERS[reader]
    good["out"].mkdir()
    bad = _bad_input(kind, row, id_field, text_field, tmp_path)
    code, lines = _cli(argv(good, bad), capsys)
    assert code == 2, lines
    assert len(lines) == 1, lines
    assert str(bad) in lines[0], lines[0]
    if "surrogate" in kind:
        assert "surrogate" in lines[0] and "field" in lines[0], lines[0]
        if reader.startswith("bon"):
            assert not (good["out"] / "bon" / "inputs.json").exists()


def _execute(good: dict[str, Path], *extra: object) -> list:
    return ["execute", "--problems", good["problems"], "--candidates", good["candidates"], *extra]


EXECUTE_CASES = {
    "--output is a directory": lambda g: _execute(g, "--output", g["out"], "--no-cache"),
    "--output is not UTF-8": lambda g: _execute(g, "--output", _bytes(g["out"] / "v.jsonl", b"\xff\xfe\n"), "--no-cache"),
    "--output under a file": lambda g: _execute(g, "--output", g["problems"] / "v.jsonl", "--no-cache"),
    "--timeout inf": lambda g: _execute(g, "--output", g["out"] / "v.jsonl", "--timeout", "inf"),
    "--timeout nan": lambda g: _execute(g, "--output", g["out"] / "v.jsonl", "--timeout", "nan"),
    "--memory-mb 1": lambda g: _execute(g, "--output", g["out"] / "v.jsonl", "--memory-mb", "1"),
    "corrupt verdict cache": lambda g: _execute(g, "--output", g["out"] / "v.jsonl", "--cache-dir",
                                                _bytes(g["out"] / "cache" / "verdicts.sqlite", b"not sqlite" * 500).parent),
    "cache path is a file": lambda g: _execute(g, "--output", g["out"] / "v.jsonl", "--cache-dir", g["problems"]),
}


def _bytes(path: Path, content: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


@pytest.mark.parametrize("case", sorted(EXECUTE_CASES))
def test_execute_refuses_unusable_outputs_caches_and_limits_with_one_line(case, good, capsys):
    good["out"].mkdir()
    code, lines = _cli(EXECUTE_CASES[case](good), capsys)
    assert code == 2, lines
    assert len(lines) == 1, lines


def test_a_second_execute_on_the_same_output_is_refused(good, capsys):
    output = good["out"] / "v.jsonl"
    good["out"].mkdir()
    with open(output.with_name(output.name + ".lock"), "a") as held:  # what a running execute holds
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        code, lines = _cli(_execute(good, "--output", output, "--no-cache"), capsys)
    assert code == 2 and len(lines) == 1 and "another codescaler execute" in lines[0], lines
    assert not output.exists()
    code, lines = _cli(_execute(good, "--output", output, "--no-cache"), capsys)  # released: runs
    assert code == 0, lines
    assert len(output.read_text().strip().split("\n")) == 1


def test_a_full_disk_stops_execute_with_one_line_and_a_resume_finishes(good, capsys, monkeypatch):
    from codescaler import data

    output = good["out"] / "v.jsonl"
    good["out"].mkdir()

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(data.AppendStore, "extend", full)  # every append of a verdict goes through it
        code, lines = _cli(_execute(good, "--output", output, "--no-cache"), capsys)
    assert code == 2 and len(lines) == 1 and "No space left" in lines[0], lines
    code, lines = _cli(_execute(good, "--output", output, "--no-cache"), capsys)
    assert code == 0, lines
    assert json.loads(output.read_text())["status"] == "no_code"


@pytest.mark.parametrize("verb", ["pairs", "bon"])
def test_conflicting_duplicate_verdicts_are_refused_naming_file_line_and_ids(verb, good, capsys):
    verdicts = _write(good["verdicts"], [VERDICT, {**VERDICT, "seconds": 0.2}, {**VERDICT, "status": "failed"}])
    good["out"].mkdir()
    if verb == "pairs":
        argv = ["pairs", "--problems", good["problems"], "--candidates", good["candidates"], "--verdicts", verdicts,
                "--output", good["out"] / "p.jsonl"]
    else:
        argv = ["bon", "--problems", good["problems"], "--candidates", good["candidates"], "--verdicts", verdicts,
                "--output-dir", good["out"] / "bon"]
    code, lines = _cli(argv, capsys)
    assert code == 2 and len(lines) == 1, lines
    assert f"{verdicts}:3" in lines[0] and "'t1'" in lines[0] and "'c1'" in lines[0] and "line 1" in lines[0], lines
    assert not (good["out"] / "bon" / "inputs.json").exists()
