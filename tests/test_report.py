"""Best-of-N and eval reports render to real files: JSON rows, a Markdown table, valid PNGs."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from codescaler.errors import InputError
from codescaler.report import (
    describe_hardware,
    render_markdown,
    result_row,
    write_bon_report,
    write_eval_report,
)
from codescaler.rerank import CandidateSignals, Pool, Settings, Strategy, evaluate


def _results() -> list:
    pools = []
    for t in range(5):
        cands = tuple(CandidateSignals(f"c{i}", correct=(i + t) % 3 == 0, reward=float((i * 7 + t) % 5),
                                       visible_passed=(i + t) % 3, model_seconds=0.7, exec_wall_seconds=0.05,
                                       exec_cpu_seconds=0.03) for i in range(10))
        pools.append(Pool(f"HumanEval/{t}", cands, has_visible_tests=t != 4))
    settings = Settings(n_values=(2, 4, 8), strategies=(Strategy.RANDOM, Strategy.ORACLE, Strategy.RM,
                                                        Strategy.TESTS, Strategy.HYBRID), seeds=3)
    return evaluate(pools, settings)


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_bon_report_writes_json_markdown_and_two_valid_pngs(tmp_path: Path) -> None:
    results = _results()
    hardware = describe_hardware("cpu")
    paths = write_bon_report(tmp_path / "out", results, hardware=hardware, meta={"seeds": 3, "model": "minilm"})
    doc = json.loads(paths["report.json"].read_text(encoding="utf-8"))
    assert doc["hardware"] == hardware and "cores" in hardware and "torch device: cpu" in hardware
    assert len(doc["results"]) == 15
    row = next(r for r in doc["results"] if r["strategy"] == "tests" and r["n"] == 4)
    for key in ("strategy", "n", "pass_at_1", "std", "seconds_per_problem", "model_seconds_per_problem",
                "exec_seconds_per_problem", "n_problems"):
        assert key in row
    assert row["n_problems"] == 4 and row["n_skipped"] == 1
    assert row["exec_seconds_per_problem"] == pytest.approx(0.2)
    md = paths["report.md"].read_text(encoding="utf-8")
    assert "| strategy | problems | N=2 | N=4 | N=8 |" in md
    hybrid_line = next(line for line in md.split("\n") if line.startswith("| hybrid | 4 (1 skipped) |"))
    assert hybrid_line.count("±") == 3
    # hybrid ran on 4 of 5 problems: its floor and ceiling on those 4 are shown beside it.
    assert row["random_same_problems"] is not None and row["oracle_same_problems"] >= row["pass_at_1"]
    assert "next to random and oracle on the same problems" in md
    assert f"| tests | 4 | 4 | {row['pass_at_1']:.1f} | {row['random_same_problems']:.1f} |" in md
    for name in ("pass_at_n.png", "frontier.png"):
        width, height = _png_size(paths[name])
        assert width > 200 and height > 200
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.endswith(".tmp")]


def test_markdown_shows_percent_mean_and_std(tmp_path: Path) -> None:
    rows = [result_row(r) for r in _results()]
    oracle = next(r for r in rows if r["strategy"] == "oracle" and r["n"] == 8)
    md = render_markdown(rows, "CPU test")
    assert f"{oracle['pass_at_1']:.1f} ± {oracle['std']:.1f}" in md
    assert 0.0 <= oracle["pass_at_1"] <= 100.0 and oracle["pass_at_1"] > 1.0


def test_eval_report_renders_the_rm_and_every_baseline(tmp_path: Path) -> None:
    report = {"benchmark": "hep", "model": "runs/rm", "input": "code", "extract_mode": "strict",
              "scorer": {"device": "cpu", "dtype": "float32"},
              "rm": {"accuracy": 0.8537, "n": 164, "per_group": {"python": {"accuracy": 0.8537, "n": 164}},
                     "seconds": 12.5},
              "baselines": {"untrained_backbone": {"skipped": "no backbone recorded"},
                            "logprob:qwen": {"accuracy": 0.7, "n": 164, "seconds": 30.0}}}
    source = tmp_path / "eval.json"
    source.write_text(json.dumps(report), encoding="utf-8")
    out = write_eval_report(source, tmp_path / "eval.md")
    md = out.read_text(encoding="utf-8")
    assert "| RM runs/rm | 85.4% |" in md
    assert "| logprob:qwen | 70.0% |" in md
    assert "skipped: no backbone recorded" in md


def test_eval_report_from_a_broken_file_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "eval.json"
    bad.write_text('{"rm": ', encoding="utf-8")
    with pytest.raises(InputError, match="eval.json"):
        write_eval_report(bad, tmp_path / "eval.md")


def test_each_strategy_has_one_colour_in_both_plots() -> None:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    from matplotlib.colors import to_hex

    from codescaler.report import STRATEGY_COLOURS, draw_frontier, draw_pass_at_n, strategy_colour

    rows = [result_row(r) for r in _results()]
    for row in rows:  # random costs nothing (a horizontal line in the frontier), the others a little
        if row["strategy"] == "random":
            row["seconds_per_problem"] = 0.0
    colours = {}
    for draw in (draw_pass_at_n, draw_frontier):
        fig, ax = plt.subplots()
        try:
            draw(ax, rows)
            handles, labels = ax.get_legend_handles_labels()
            for handle, label in zip(handles, labels, strict=True):
                line = handle[0] if isinstance(handle, tuple) else handle  # errorbar containers hold the line first
                colours.setdefault(label.split(" ")[0], set()).add(to_hex(line.get_color()))
        finally:
            plt.close(fig)
    assert set(colours) == {"random", "oracle", "rm", "tests", "hybrid"}
    for strategy, seen in colours.items():
        assert seen == {strategy_colour(strategy)}, strategy   # the same colour in both plots
    assert len({strategy_colour(s) for s in colours}) == len(colours)  # and no two strategies share one
    assert len(set(STRATEGY_COLOURS.values())) == len(STRATEGY_COLOURS)
    assert strategy_colour("some-new-strategy") == strategy_colour("some-new-strategy")


def test_a_cost_column_that_is_zero_in_every_row_is_left_out() -> None:
    rows = [result_row(r) for r in _results()]
    md = render_markdown(rows, "cpu")
    assert "| strategy | N | total s | model s | exec s (wall) | exec s (CPU) | scored | executed |" in md
    for row in rows:
        row["exec_cpu_seconds_per_problem"] = 0.0
    md = render_markdown(rows, "cpu")
    assert "exec s (CPU)" not in md
    assert "| strategy | N | total s | model s | exec s (wall) | scored | executed |" in md
    header = next(line for line in md.split("\n") if line.startswith("| strategy | N | total s"))
    body = [line for line in md.split("\n") if line.startswith("| rm | 4 |")][-1]
    assert header.count("|") == body.count("|")


def test_summary_gives_pass_at_1_per_strategy_at_the_largest_n_the_costs_and_the_files(tmp_path: Path) -> None:
    from codescaler.report import render_summary

    rows = [result_row(r) for r in _results()]
    paths = write_bon_report(tmp_path, _results(), hardware="cpu")
    text = render_summary(rows, {"candidates": tmp_path / "candidates.jsonl", **paths})
    assert "N=8" in text
    for strategy in ("random", "oracle", "rm", "tests", "hybrid"):
        row = next(r for r in rows if r["strategy"] == strategy and r["n"] == 8)
        assert any(line.split()[:2] == [strategy, f"{row['pass_at_1']:.1f}"] for line in text.split("\n")), strategy
    # RM: 0.7 s per candidate scored; execution: 0.05 s wall per candidate run.
    assert "RM scoring 700.0 ms" in text and "test execution 50.0 ms (wall)" in text
    for path in paths.values():
        assert str(path) in text
    assert len(text.split("\n")) < 20
