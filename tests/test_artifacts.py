"""The artifact layer (codescaler.data.artifacts): every file we write gets the mode open() would give it,
survives a crash in the middle of writing, and every JSONL we append to resumes after a torn tail.

The mode tests go through the real producers (report, model card, codescaler.json, manifests, the score
and extract verbs), not only the helpers: a producer that slips back to its own mkstemp fails them.
"""

from __future__ import annotations

import gzip
import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from codescaler import data
from codescaler.cli import main
from codescaler.data.artifacts import AppendStore, atomic_open, read_jsonl, task_candidate_key
from codescaler.errors import InputError
from codescaler.records import Score

SRC = Path(__file__).resolve().parents[1] / "src"


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


# --------------------------------------------------------------------------- file modes


def test_every_atomic_helper_gives_the_mode_open_would_give(tmp_path: Path, umask_022: None) -> None:
    made = [
        data.atomic_write_bytes(tmp_path / "a.bin", b"\x00\x01"),
        data.atomic_write_text(tmp_path / "b.md", "# title\n"),
        data.atomic_write_json(tmp_path / "c.json", {"k": "v"}),
    ]
    data.atomic_write_jsonl(tmp_path / "d.jsonl", [{"a": 1}])
    data.atomic_write_jsonl(tmp_path / "e.jsonl.gz", [{"a": 1}])
    with open(tmp_path / "reference", "w") as fh:  # what a plain open() makes under this umask
        fh.write("x")
    assert _mode(tmp_path / "reference") == 0o644
    for path in [*made, tmp_path / "d.jsonl", tmp_path / "e.jsonl.gz"]:
        assert _mode(path) == 0o644, path
    os.umask(0o077)
    assert _mode(data.atomic_write_text(tmp_path / "private.md", "x")) == 0o600  # follows the umask, both ways


def test_reports_checkpoint_metadata_and_model_cards_are_0644_under_umask_022(
        tmp_path: Path, umask_022: None) -> None:
    from codescaler.model_card import write_model_card
    from codescaler.report import write_eval_report
    from codescaler.rm_checkpoint import RMMetadata, write_metadata

    meta = RMMetadata(backbone="tiny")
    paths = [write_metadata(tmp_path / "rm", meta), write_model_card(tmp_path / "rm", meta),
             write_eval_report({"model": "m", "rm": {"accuracy": 0.5, "n": 2}}, tmp_path / "eval.md")]
    assert [p.name for p in paths] == ["codescaler.json", "README.md", "eval.md"]
    for path in paths:
        assert _mode(path) == 0o644, path
    assert json.loads(paths[0].read_text(encoding="utf-8"))["backbone"] == "tiny"


class _FakeScorer:
    info = {"model": "fake"}

    def score(self, prompts, responses, languages=None):  # noqa: ANN001, ANN201
        return [Score(raw_score=1.0, valid=True, reward=1.3) for _ in prompts]

    def score_items(self, items):  # noqa: ANN001, ANN201
        return [Score(raw_score=1.0, valid=True, reward=1.3) for _ in items]


def test_score_and_extract_outputs_and_manifests_are_0644_under_umask_022(
        tmp_path: Path, umask_022: None, monkeypatch: pytest.MonkeyPatch) -> None:
    from codescaler.scorer import Scorer

    monkeypatch.setattr(Scorer, "load", classmethod(lambda cls, *a, **k: _FakeScorer()))
    items = tmp_path / "items.jsonl"
    items.write_text(json.dumps({"id": 1, "prompt": "p", "response": "```python\nx = 1\n```"}) + "\n")
    assert main(["score", "--rm", "fake", "--input", str(items), "--output", str(tmp_path / "o" / "s.jsonl")]) == 0
    assert main(["extract", "--input", str(items), "--output", str(tmp_path / "e.jsonl")]) == 0
    problems = tmp_path / "problems.jsonl"
    data.write_problems(problems, [data.problem_from_json({"task_id": "t", "prompt": "p", "tests": "pass",
                                                           "entry_point": "f"})])
    candidates = tmp_path / "candidates.jsonl"
    data.write_candidates(candidates, [data.candidate_from_json(
        {"task_id": "t", "candidate_id": str(i), "response": f"```python\ndef f():\n    return {i}\n```"})
        for i in range(2)])
    verdicts = tmp_path / "verdicts.jsonl"
    data.write_jsonl(verdicts, [{"task_id": "t", "candidate_id": "0", "status": "passed"},
                                {"task_id": "t", "candidate_id": "1", "status": "failed"}])
    assert main(["pairs", "--problems", str(problems), "--candidates", str(candidates), "--verdicts", str(verdicts),
                 "--output", str(tmp_path / "pairs.jsonl")]) == 0
    outputs = [tmp_path / "o" / "s.jsonl", tmp_path / "e.jsonl", tmp_path / "pairs.jsonl",
               tmp_path / "pairs.jsonl.manifest.json"]
    for path in outputs:
        assert _mode(path) == 0o644, path
    assert json.loads((tmp_path / "o" / "s.jsonl").read_text())["reward"] == 1.3
    assert _leftovers(tmp_path) == [] and _leftovers(tmp_path / "o") == []


def test_an_append_store_creates_its_file_with_the_usual_mode(tmp_path: Path, umask_022: None) -> None:
    with AppendStore(tmp_path / "new" / "rows.jsonl", task_candidate_key) as store:
        store.append({"task_id": "t", "candidate_id": "0"})
    assert _mode(tmp_path / "new" / "rows.jsonl") == 0o644


# --------------------------------------------------------------------------- crashes while writing


def test_a_failure_in_the_middle_of_a_write_leaves_the_old_file_and_no_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "rows.jsonl"
    data.atomic_write_jsonl(target, [{"n": 0}, {"n": 1}])
    before = target.read_bytes()

    def rows():
        yield {"n": 10}
        raise RuntimeError("the producer died")

    with pytest.raises(RuntimeError, match="producer died"):
        data.atomic_write_jsonl(target, rows())
    with pytest.raises(TypeError):  # a value JSON cannot hold, after a good row
        data.atomic_write_jsonl(target, [{"n": 10}, {"n": object()}])
    with pytest.raises(KeyboardInterrupt), atomic_open(target) as handle:
        handle.write("half of a new file")
        raise KeyboardInterrupt
    assert target.read_bytes() == before
    assert _leftovers(tmp_path) == []


_KILLED_WRITER = """
import sys, time
from codescaler.data import atomic_write_jsonl

def rows():
    for n in range(1000):
        yield {"n": n, "pad": "x" * 1000}
        if n == 50:
            print("writing", flush=True)
            time.sleep(60)

atomic_write_jsonl(sys.argv[1], rows())
"""


def test_a_writer_killed_mid_write_leaves_the_old_file_intact(tmp_path: Path) -> None:
    target = tmp_path / "report.jsonl"
    data.atomic_write_jsonl(target, [{"old": True}])
    before = target.read_bytes()
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_WRITER, str(target)], stdout=subprocess.PIPE, env=env,
                            text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "writing"
        deadline = time.monotonic() + 10
        while not any(p.name.startswith(".report.jsonl.") for p in tmp_path.iterdir()):
            assert time.monotonic() < deadline, "the writer never made its temp file"
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert target.read_bytes() == before  # the half-written rows are in the temp file, never at the target
    assert [row for _, row in read_jsonl(target)] == [{"old": True}]


# --------------------------------------------------------------------------- the append store


def _row(task: str, cand: int, **extra: object) -> dict:
    return {"task_id": task, "candidate_id": str(cand), **extra}


def test_the_append_store_resumes_after_a_torn_tail(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "verdicts.jsonl"
    with AppendStore(path, task_candidate_key) as store:
        assert len(store) == 0 and not path.exists()  # reading alone creates nothing
        store.extend([_row("t", 0, status="passed"), _row("t", 1, status="failed")])
    path.write_bytes(path.read_bytes() + b'{"task_id": "t", "candidate_id": "2", "sta')  # killed mid-line

    with AppendStore(path, task_candidate_key) as store:
        assert store.done() == {("t", "0"), ("t", "1")}
        assert ("t", "2") not in store
        store.append(_row("t", 2, status="passed"))
    assert "torn last line" in caplog.text
    lines = path.read_text(encoding="utf-8").split("\n")
    assert lines[-1] == "" and [json.loads(line)["candidate_id"] for line in lines[:-1]] == ["0", "1", "2"]
    assert AppendStore(path, task_candidate_key).rows[("t", "2")]["status"] == "passed"


def test_a_complete_last_row_without_its_newline_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_text(json.dumps(_row("t", 0)) + "\n" + json.dumps(_row("t", 1)), encoding="utf-8")
    with AppendStore(path, task_candidate_key) as store:
        assert store.done() == {("t", "0"), ("t", "1")}
        store.append(_row("t", 2))
    assert [row["candidate_id"] for _, row in read_jsonl(path)] == ["0", "1", "2"]


def test_a_torn_tail_cut_inside_a_utf8_character_is_cut_off_too(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    line = json.dumps(_row("t", 1, response="héllo"), ensure_ascii=False).encode("utf-8")
    path.write_bytes(json.dumps(_row("t", 0)).encode() + b"\n" + line[: line.index(b"\xc3") + 1])
    assert AppendStore(path, task_candidate_key).done() == {("t", "0")}
    assert path.read_bytes().endswith(b"}\n")


def test_the_append_store_keys_rows_like_the_best_of_n_signal_cache(tmp_path: Path) -> None:
    path = tmp_path / "scores.jsonl"
    store = AppendStore(path, task_candidate_key)
    todo = [("t", str(i)) for i in range(3)]
    with store:
        store.extend(_row(t, int(c), reward=float(c)) for t, c in todo[:2])
    again = AppendStore(path, task_candidate_key)
    assert [k for k in todo if k not in again] == [("t", "2")]
    assert again.rows[("t", "1")]["reward"] == 1.0


def test_a_row_the_store_cannot_key_names_its_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_text(json.dumps(_row("t", 0)) + "\n" + json.dumps({"task_id": "t"}) + "\n", encoding="utf-8")
    with pytest.raises(InputError) as err:
        AppendStore(path, task_candidate_key, fix="delete the file")
    assert str(err.value).startswith(f"{path}:2: ") and "candidate_id" in str(err.value)
    assert "delete the file" in str(err.value)


# --------------------------------------------------------------------------- malformed lines


@pytest.mark.parametrize("bad, reason", [
    (b'{"task_id": "t", "candidate_id": ', "not valid JSON"),
    (b"[1, 2]", "expected a JSON object"),
    (b'{"task_id": "\xff\xfe"}', "not UTF-8"),
    (b'{"task_id": "\\ud800", "candidate_id": "1"}', "surrogate"),
])
def test_a_malformed_line_is_one_error_line_naming_file_and_line(tmp_path: Path, bad: bytes, reason: str) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_bytes(json.dumps(_row("t", 0)).encode() + b"\n" + bad + b"\n" + json.dumps(_row("t", 2)).encode()
                     + b"\n")
    for read in (lambda: list(read_jsonl(path)), lambda: AppendStore(path, task_candidate_key)):
        with pytest.raises(InputError) as err:
            read()
        text = str(err.value)
        assert text.startswith(f"{path}:2: ") and reason in text and "\n" not in text, text


def test_the_cli_reports_a_malformed_line_on_one_line_with_file_and_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = tmp_path / "rows.jsonl"
    rows.write_text(json.dumps({"id": "a", "response": "x"}) + "\n{not json\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    out.write_text("previous\n")
    assert main(["extract", "--input", str(rows), "--output", str(out)]) == 2
    err = [line for line in capsys.readouterr().err.split("\n") if line.strip()]
    assert len(err) == 1 and f"{rows}:2: " in err[0] and "not valid JSON" in err[0], err
    assert out.read_text() == "previous\n"


def test_gzip_jsonl_round_trips_and_a_truncated_gzip_is_an_input_error(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl.gz"
    rows = [{"n": n, "text": "line\u2028separator"} for n in range(100)]
    assert data.atomic_write_jsonl(path, rows) == 100
    assert [row for _, row in read_jsonl(path)] == rows
    assert b"\xe2\x80\xa8" not in gzip.decompress(path.read_bytes())  # U+2028 written escaped
    path.write_bytes(path.read_bytes()[:-12])
    with pytest.raises(InputError, match=str(path)):
        list(read_jsonl(path))
