"""Reports people read: best-of-N JSON/Markdown/PNG, and Markdown for ``codescaler eval`` JSON (layer L3).

Contract
--------
- ``write_bon_report(output_dir, results, hardware=..., meta=...)`` writes ``report.json``,
  ``report.md``, ``pass_at_n.png`` (pass@1 vs N per strategy) and ``frontier.png`` (pass@1 vs seconds
  per problem) and returns their paths. Every file is written atomically with the umask's mode
  (``codescaler.data.artifacts``), so a crash never leaves a half-written report.
- ``report.json``: ``{"results": [row, ...], "hardware": str, "meta": {...}}``; a row has ``strategy``,
  ``n``, ``pass_at_1`` and ``std`` (PERCENT, mean and sample std across seeds, like BASELINES.md),
  ``seconds_per_problem``, ``model_seconds_per_problem``, ``exec_seconds_per_problem`` (wall),
  ``exec_cpu_seconds_per_problem``, ``n_problems``, ``n_skipped``, ``n_short``, ``mean_drawn``,
  ``scored_per_problem``, ``executed_per_problem``, ``per_seed``.
- ``report.md``: one row per strategy, one column per N with "mean ± std", then the cost table
  (a cost column that is zero in every row is left out: ``nonzero_columns``).
- Every plot draws a strategy in its own fixed colour (``strategy_colour``), the same in both PNGs.
- ``render_summary(rows, files)``: the few lines ``codescaler demo`` ends with: pass@1 per strategy
  at the largest N, RM and execution seconds per candidate, and where the files are.
- ``write_eval_report(report, path)`` renders the JSON of ``codescaler eval`` (a dict with ``rm`` and
  optional ``baselines``) as a Markdown table: one row per scorer, one column per metric.
- Plots use matplotlib's Agg backend (no display needed), selected inside the plotting call only.
"""

from __future__ import annotations

import json
import logging
import os
import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from codescaler.data.artifacts import atomic_write_bytes, atomic_write_json, atomic_write_text
from codescaler.extras import MissingExtra, require
from codescaler.rerank import StrategyResult

logger = logging.getLogger(__name__)


def describe_hardware(device: str | None = None) -> str:
    """One line: CPU model (from /proc/cpuinfo), usable cores, and the torch device used.

    ``device``: the device the RM ran on (e.g. ``Scorer.info["device"]``); None means "not used".
    """
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").split("\n"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 0
    return f"CPU {model}, {cores} cores available; torch device: {device or 'none (no model used)'}"


def result_row(result: StrategyResult) -> dict[str, Any]:
    """A JSON-ready row for one (strategy, N); accuracies in percent."""
    return {
        "strategy": result.strategy.value,
        "n": result.n,
        "pass_at_1": round(100.0 * result.pass_at_1, 3),
        "std": round(100.0 * result.std, 3),
        "seconds_per_problem": result.seconds_per_problem,
        "model_seconds_per_problem": result.model_seconds_per_problem,
        "exec_seconds_per_problem": result.exec_seconds_per_problem,
        "exec_cpu_seconds_per_problem": result.exec_cpu_seconds_per_problem,
        "n_problems": result.n_problems,
        "n_skipped": result.n_skipped,
        "n_short": result.n_short,
        "mean_drawn": result.mean_drawn,
        "scored_per_problem": result.scored_per_problem,
        "executed_per_problem": result.executed_per_problem,
        "per_seed": [round(100.0 * x, 3) for x in result.per_seed],
        "random_same_problems": _percent(result.random_same_problems),
        "oracle_same_problems": _percent(result.oracle_same_problems),
    }


def _percent(value: float | None) -> float | None:
    return None if value is None else round(100.0 * value, 3)


def write_atomic(path: Path, data: str | bytes) -> None:
    """Write text (UTF-8) or bytes to ``path`` atomically (``codescaler.data.artifacts``)."""
    atomic_write_bytes(path, data.encode("utf-8") if isinstance(data, str) else data)


# One colour per strategy, the same in every plot and every report (matplotlib's tab10 hues; the
# baselines in muted ones: random gray, oracle cyan), so a reader matches lines across figures by colour.
STRATEGY_COLOURS: dict[str, str] = {
    "rm": "#1f77b4", "tests": "#ff7f0e", "hybrid": "#2ca02c", "cascade": "#d62728", "tests+rm": "#9467bd",
    "generated-tests": "#8c564b", "logprob": "#e377c2", "oracle": "#17becf", "random": "#7f7f7f",
}
_SPARE_COLOURS = ("#bcbd22", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173")


def strategy_colour(strategy: str) -> str:
    """The plot colour of ``strategy``: ``STRATEGY_COLOURS``, else a spare one chosen by a stable hash."""
    if strategy in STRATEGY_COLOURS:
        return STRATEGY_COLOURS[strategy]
    import hashlib

    return _SPARE_COLOURS[hashlib.sha256(strategy.encode()).digest()[0] % len(_SPARE_COLOURS)]


def _strategies(rows: Sequence[dict[str, Any]]) -> list[str]:
    return list(dict.fromkeys(str(r["strategy"]) for r in rows))


def _ns(rows: Sequence[dict[str, Any]]) -> list[int]:
    return sorted({int(r["n"]) for r in rows})


def render_markdown(rows: Sequence[dict[str, Any]], hardware: str, meta: dict[str, Any] | None = None) -> str:
    """The best-of-N report as Markdown: accuracy table (mean ± std, percent) and cost table."""
    meta = meta or {}
    ns = _ns(rows)
    cell = {(str(r["strategy"]), int(r["n"])): r for r in rows}
    out = ["# Best-of-N selection", ""]
    seeds = meta.get("seeds")
    out.append(f"Pass@1 (%) of the selected candidate under the hidden tests; N candidates drawn per problem"
               f"{f', {seeds} seeds' if seeds else ''}, mean ± std across seeds; ties count as the expected "
               "value over the tied candidates.")
    out += ["", f"Hardware: {hardware}", ""]
    for key in ("problems", "candidates", "model", "top_k", "cascade_max", "command"):
        if meta.get(key) is not None:
            out.append(f"- {key}: `{meta[key]}`")
    out += ["", "| strategy | problems | " + " | ".join(f"N={n}" for n in ns) + " |",
            "|---|---|" + "---|" * len(ns)]
    for strategy in _strategies(rows):
        first = next(r for r in rows if r["strategy"] == strategy)
        used = f"{first['n_problems']}" + (f" ({first['n_skipped']} skipped)" if first["n_skipped"] else "")
        values = []
        for n in ns:
            r = cell.get((strategy, n))
            values.append(f"{r['pass_at_1']:.1f} ± {r['std']:.1f}" if r else "–")
        out.append(f"| {strategy} | {used} | " + " | ".join(values) + " |")
    partial = [r for r in rows if r.get("random_same_problems") is not None]
    if partial:
        out += ["", "Strategies that skipped problems, next to random and oracle on the same problems and draws:",
                "", "| strategy | N | problems | pass@1 | random | oracle |", "|---|---|---|---|---|---|"]
        for r in partial:
            out.append(f"| {r['strategy']} | {r['n']} | {r['n_problems']} | {r['pass_at_1']:.1f} | "
                       f"{r['random_same_problems']:.1f} | {r['oracle_same_problems']:.1f} |")
    out += ["", "Cost per problem (seconds; model = RM scoring and test generation, exec = test execution "
            "wall clock; candidates scored / executed; columns that are zero in every row are left out):", ""]
    out += markdown_table(["strategy", "N"], [[r["strategy"], r["n"]] for r in rows], COST_COLUMNS, rows)
    short = [r for r in rows if r.get("n_short")]
    if short:
        out += ["", "Problems with fewer candidates than N (all their candidates were used): "
                + ", ".join(f"{r['strategy']} N={r['n']}: {r['n_short']}" for r in short)]
    return "\n".join(out) + "\n"


# The cost table's columns: (header, report.json key, format).
COST_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("total s", "seconds_per_problem", "{:.3f}"), ("model s", "model_seconds_per_problem", "{:.3f}"),
    ("exec s (wall)", "exec_seconds_per_problem", "{:.3f}"), ("exec s (CPU)", "exec_cpu_seconds_per_problem", "{:.3f}"),
    ("scored", "scored_per_problem", "{:.1f}"), ("executed", "executed_per_problem", "{:.1f}"),
)


def nonzero_columns(columns: Sequence[tuple[str, str, str]], rows: Sequence[dict[str, Any]]
                    ) -> list[tuple[str, str, str]]:
    """The ``(header, key, format)`` columns with a non-zero value in some row (a column that is zero
    everywhere, such as CPU seconds when nothing ran, says nothing and is left out)."""
    return [col for col in columns if any(row.get(col[1]) for row in rows)]


def markdown_table(lead_headers: Sequence[str], lead_cells: Sequence[Sequence[Any]],
                   columns: Sequence[tuple[str, str, str]], rows: Sequence[dict[str, Any]]) -> list[str]:
    """Markdown table lines: the lead cells of each row, then its ``nonzero_columns`` values."""
    kept = nonzero_columns(columns, rows)
    headers = [*lead_headers, *(header for header, _, _ in kept)]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for lead, row in zip(lead_cells, rows, strict=True):
        cells = [*(str(c) for c in lead), *(fmt.format(row[key]) for _, key, fmt in kept)]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def render_summary(rows: Sequence[dict[str, Any]], files: dict[str, Path]) -> str:
    """A few lines a user can act on: pass@1 per strategy at the largest N (best first), what one
    candidate costs to score with the RM and to execute, and where the files are."""
    if not rows:
        return "No best-of-N results.\n"
    n = max(int(r["n"]) for r in rows)
    at_n = sorted((r for r in rows if int(r["n"]) == n), key=lambda r: -r["pass_at_1"])
    width = max(len(str(r["strategy"])) for r in at_n)
    out = [f"Summary: pass@1 (%) of the chosen candidate at N={n} ({at_n[0]['n_problems']} problems, "
           "mean ± std over seeds):"]
    notes = {"oracle": "upper bound: a passing candidate whenever one exists", "random": "no selection"}
    for r in at_n:
        note = notes.get(str(r["strategy"]), "")
        out.append(f"  {r['strategy']:<{width}}  {r['pass_at_1']:5.1f} ± {r['std']:.1f}" + (f"   ({note})" if note else ""))
    costs = []
    rm = _per_candidate(rows, "rm", "model_seconds_per_problem", "scored_per_problem")
    exec_ = _per_candidate(rows, "tests", "exec_seconds_per_problem", "executed_per_problem")
    if rm is not None:
        costs.append(f"RM scoring {rm * 1000:.1f} ms")
    if exec_ is not None:
        costs.append(f"test execution {exec_ * 1000:.1f} ms (wall)")
    if costs:
        ratio = f"; the RM is {exec_ / rm:.1f}x cheaper" if rm and exec_ and exec_ > rm else ""
        out.append("Cost per candidate: " + ", ".join(costs) + ratio)
    out.append("Files:")
    for name, path in files.items():
        out.append(f"  {name:<{max(len(k) for k in files)}}  {path}")
    return "\n".join(out) + "\n"


def _per_candidate(rows: Sequence[dict[str, Any]], strategy: str, seconds: str, count: str) -> float | None:
    """Seconds per candidate of ``strategy`` at its largest N (None when it did not run or was free)."""
    mine = [r for r in rows if r["strategy"] == strategy and r.get(count)]
    if not mine:
        return None
    r = max(mine, key=lambda r: int(r["n"]))
    return float(r[seconds]) / float(r[count]) if r[seconds] else None


def pyplot() -> Any:
    """matplotlib's ``pyplot`` on the Agg backend; ``MissingExtra`` naming the [plots] extra without it."""
    require("plots", "matplotlib")
    import matplotlib

    matplotlib.use("Agg", force=True)  # files only: never needs a display
    import matplotlib.pyplot as plt

    return plt


def save_png(fig: Any, path: Path) -> None:
    """Write ``fig`` as a PNG (120 dpi, tight box) to ``path`` atomically."""
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    atomic_write_bytes(path, buffer.getvalue())


def plot_pass_at_n(rows: Sequence[dict[str, Any]], path: Path, title: str = "Best-of-N") -> None:
    """pass@1 (%) against N (log2 axis), one line with std error bars per strategy."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    try:
        draw_pass_at_n(ax, rows, title)
        save_png(fig, path)
    finally:
        plt.close(fig)


def draw_pass_at_n(ax: Any, rows: Sequence[dict[str, Any]], title: str = "Best-of-N") -> None:
    """``plot_pass_at_n``'s drawing on a matplotlib Axes (each strategy in ``strategy_colour``)."""
    for strategy in _strategies(rows):
        mine = sorted((r for r in rows if r["strategy"] == strategy), key=lambda r: r["n"])
        ax.errorbar([r["n"] for r in mine], [r["pass_at_1"] for r in mine], yerr=[r["std"] for r in mine],
                    marker="o", capsize=3, label=strategy, color=strategy_colour(strategy))
    ax.set_xscale("log", base=2)
    ax.set_xticks(_ns(rows), [str(n) for n in _ns(rows)])
    ax.set_xlabel("N (candidates per problem)")
    ax.set_ylabel("pass@1 of the selected candidate (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)


def plot_frontier(rows: Sequence[dict[str, Any]], path: Path, title: str = "Accuracy vs latency") -> None:
    """pass@1 (%) against seconds per problem (log axis); cost-free strategies are horizontal lines."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    try:
        draw_frontier(ax, rows, title)
        save_png(fig, path)
    finally:
        plt.close(fig)


def draw_frontier(ax: Any, rows: Sequence[dict[str, Any]], title: str = "Accuracy vs latency") -> None:
    """``plot_frontier``'s drawing on a matplotlib Axes (each strategy in ``strategy_colour``)."""
    for strategy in _strategies(rows):
        mine = sorted((r for r in rows if r["strategy"] == strategy), key=lambda r: r["n"])
        if all(r["seconds_per_problem"] <= 0 for r in mine):
            best = mine[-1]
            ax.axhline(best["pass_at_1"], linestyle="--", linewidth=1, alpha=0.6,
                       label=f"{strategy} (no cost, N={best['n']})", color=strategy_colour(strategy))
            continue
        xs = [max(r["seconds_per_problem"], 1e-4) for r in mine]
        ax.plot(xs, [r["pass_at_1"] for r in mine], marker="o", label=strategy, color=strategy_colour(strategy))
        for x, r in zip(xs, mine, strict=True):
            ax.annotate(f"N={r['n']}", (x, r["pass_at_1"]), fontsize=6, xytext=(3, 3), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlabel("seconds per problem (model + execution wall clock)")
    ax.set_ylabel("pass@1 of the selected candidate (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)


def write_bon_report(output_dir: Path, results: Sequence[StrategyResult], *, hardware: str,
                     meta: dict[str, Any] | None = None) -> dict[str, Path]:
    """Write report.json, report.md, pass_at_n.png and frontier.png into ``output_dir``; return paths.
    Without the [plots] extra (matplotlib) the two PNGs are skipped with a warning naming it: the
    report itself is the result."""
    rows = [result_row(r) for r in results]
    paths = {name: output_dir / name for name in ("report.json", "report.md", "pass_at_n.png", "frontier.png")}
    document = {"results": rows, "hardware": hardware, "meta": meta or {}}
    atomic_write_json(paths["report.json"], document, sort_keys=True)
    atomic_write_text(paths["report.md"], render_markdown(rows, hardware, meta))
    try:
        pyplot()
    except MissingExtra as err:
        logger.warning("plots skipped: %s", err)
        return {name: path for name, path in paths.items() if not name.endswith(".png")}
    plot_pass_at_n(rows, paths["pass_at_n.png"])
    plot_frontier(rows, paths["frontier.png"])
    return paths


# -- codescaler eval --------------------------------------------------------------------------------

def _metrics(result: dict[str, Any]) -> dict[str, Any]:
    """Flatten one eval result: top-level numbers plus ``per_group`` accuracies as ``group:<name>``."""
    flat: dict[str, Any] = {}
    for key, value in result.items():
        if isinstance(value, bool):
            continue
        if isinstance(value, (int, float)) or value is None:
            flat[key] = value
        elif key == "per_group" and isinstance(value, dict):
            for group, sub in value.items():
                if isinstance(sub, dict):
                    flat[f"{group}"] = sub.get("accuracy", sub.get("average"))
    return flat


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{100 * value:.1f}%" if 0.0 <= value <= 1.0 else f"{value:.2f}"
    return str(value)


def render_eval_markdown(report: dict[str, Any]) -> str:
    """Markdown for one ``codescaler eval`` JSON: a row for the RM and each baseline."""
    scorers: list[tuple[str, dict[str, Any]]] = []
    if isinstance(report.get("rm"), dict):
        scorers.append((f"RM {report.get('model', '')}".strip(), report["rm"]))
    for name, result in (report.get("baselines") or {}).items():
        if isinstance(result, dict):
            scorers.append((name, result))
    rows = [(name, _metrics(result), result.get("skipped")) for name, result in scorers]
    columns: list[str] = []
    for _, flat, _ in rows:
        columns += [k for k in flat if k not in columns]
    # accuracy-like columns first, bookkeeping (n, seconds, counts) after
    first_seen = {k: i for i, k in enumerate(columns)}
    columns.sort(key=lambda k: (k in ("n", "seconds") or k.endswith("invalid"), first_seen[k]))
    out = [f"# Eval: {report.get('benchmark', '?')}", ""]
    for key in ("model", "input", "extract_mode"):
        if key in report:
            out.append(f"- {key}: `{report[key]}`")
    if isinstance(report.get("scorer"), dict):
        out.append(f"- device: `{report['scorer'].get('device', '?')}`, dtype `{report['scorer'].get('dtype', '?')}`")
    if report.get("hardware"):
        out.append(f"- hardware: {report['hardware']}")
    out += ["", "Accuracies in percent (ties count half); n = items; seconds = scoring time.", "",
            "| scorer | " + " | ".join(columns) + " |", "|---|" + "---|" * len(columns)]
    for name, flat, skipped in rows:
        if skipped:
            out.append(f"| {name} | skipped: {skipped} |" + " |" * max(0, len(columns) - 1))
            continue
        out.append(f"| {name} | " + " | ".join(_fmt(flat.get(c)) for c in columns) + " |")
    return "\n".join(out) + "\n"


def write_eval_report(report: dict[str, Any] | Path, path: Path) -> Path:
    """Render an eval report (the dict, or the path of its JSON) to Markdown at ``path`` atomically."""
    if isinstance(report, Path):
        from codescaler.errors import InputError

        source = report
        try:
            loaded = json.loads(source.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise InputError("eval report not found", path=str(source), fix="run `codescaler eval --output`") from None
        except json.JSONDecodeError as err:
            raise InputError(f"not valid JSON: {err.msg}", path=str(source), line=err.lineno) from None
        if not isinstance(loaded, dict):
            raise InputError("expected a JSON object from `codescaler eval`", path=str(source))
        report = loaded
    atomic_write_text(path, render_eval_markdown(report))
    return path
