"""The layer contract of DESIGN.md, read from the imports of every module (ast; nothing is imported).

L4 cli > L3 integrations, server, bench, rl > L2 I/O and models > L1 pure > L0 records. A module may
import only from its own layer or lower; imports inside functions count too (a lazy import is still a
dependency). Further rules: L0/L1 stay pure (no torch, no OS, no network); one CLI verb never imports
another verb's module; no module imports another module's private (``_name``) names; benchmarks and
scripts use the library, not the CLI's modules (only ``codescaler.cli.main``, the entry point).
Exceptions are listed below by name, each with its reason; an exception that no longer occurs fails the
test, so the list cannot silently rot.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# Module (or package prefix) -> layer. The longest matching prefix wins; every module must match one.
LAYERS: dict[str, int] = {
    "codescaler": 0,  # the package root holds only __version__
    "codescaler.records": 0, "codescaler.errors": 0, "codescaler.extras": 0,
    "codescaler.extract": 1, "codescaler.shaping": 1, "codescaler.pairs": 1, "codescaler.pair_rules": 1,
    "codescaler.pair_labels": 1, "codescaler.rerank": 1,
    "codescaler.python_source": 1, "codescaler.batching": 1, "codescaler.scoring": 1,
    "codescaler.sandbox": 2, "codescaler.sandbox_launch": 2, "codescaler.sandbox_bwrap": 2,
    "codescaler.sandbox_io": 2, "codescaler.sandbox_harness": 2, "codescaler.sandbox_harness_jobs": 2,
    "codescaler.sandbox_seccomp": 2, "codescaler.executor": 2, "codescaler.data": 2, "codescaler.training": 2,
    "codescaler.training_settings": 2, "codescaler.training_pairs": 2, "codescaler.training_backbone": 2,
    "codescaler.training_checkpoint": 2,
    "codescaler.scorer": 2, "codescaler.model_device": 2, "codescaler.rm_loading": 2,
    "codescaler.rm_checkpoint": 2, "codescaler.mutate": 2, "codescaler.mutation_sites": 2,
    "codescaler.models": 2,
    "codescaler.models.__main__": 4, "codescaler.sampling": 2, "codescaler.features": 2,
    "codescaler.feature_spec": 2, "codescaler.feature_backbone": 2,
    "codescaler.feature_cache": 2, "codescaler.heads": 2, "codescaler.head_training": 2,
    "codescaler.model_card": 2, "codescaler.testing": 2,
    "codescaler.hub_push": 2,
    "codescaler.integrations": 3, "codescaler.server": 3, "codescaler.bench": 3, "codescaler.rl": 3,
    "codescaler.rl_settings": 3, "codescaler.rl_problems": 3, "codescaler.rl_rewards": 3,
    "codescaler.rl_metrics": 3, "codescaler.report": 3, "codescaler.bon": 3, "codescaler.bon_signals": 3,
    "codescaler.cli": 4, "codescaler.__main__": 4,
}
LAYER_NAMES = {0: "L0 records", 1: "L1 pure", 2: "L2 I/O and models", 3: "L3 services", 4: "L4 cli"}

# L0 and L1 are pure: values in, values out. These top-level packages do I/O, run things or load models.
IMPURE = frozenset({"torch", "transformers", "trl", "peft", "accelerate", "datasets", "numpy", "fastapi",
                    "uvicorn", "httpx", "aiohttp", "requests", "os", "subprocess", "socket", "shutil",
                    "tempfile", "multiprocessing", "urllib", "http"})

CLI_SHARED = frozenset({"codescaler.cli", "codescaler.cli.options"})  # the parser + error handler; the flags

# (importing file relative to the repo, imported module, name or "") -> why it is allowed for now.
EXCEPTIONS: dict[tuple[str, str, str], str] = {}


@dataclass(frozen=True)
class Import:
    path: str        # the importing file, relative to the root given
    source: str      # the importing module, or "" for a script
    target: str      # the imported codescaler module
    name: str        # the imported name for `from m import name` when it is not a module, else ""
    line: int


def module_name(path: Path, src: Path) -> str:
    parts = list(path.relative_to(src).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def read_imports(path: Path, source: str, modules: set[str], shown: str) -> list[Import]:
    """Every ``codescaler`` import of one file, absolute or relative, at any depth."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_package = path.name == "__init__.py"
    out: list[Import] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [Import(shown, source, a.name, "", node.lineno) for a in node.names
                    if a.name.split(".")[0] == "codescaler"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = source.split(".") if is_package else source.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                base_name = ".".join(base + ([node.module] if node.module else []))
            else:
                base_name = node.module or ""
            if base_name.split(".")[0] != "codescaler":
                continue
            for alias in node.names:
                sub = f"{base_name}.{alias.name}"
                if sub in modules:
                    out.append(Import(shown, source, sub, "", node.lineno))
                else:
                    out.append(Import(shown, source, base_name, alias.name, node.lineno))
    return out


def third_party_imports(path: Path) -> Iterable[tuple[str, int]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from ((a.name.split(".")[0], node.lineno) for a in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            yield node.module.split(".")[0], node.lineno


def layer_of(module: str, layers: Mapping[str, int]) -> int | None:
    parts = module.split(".")
    if len(parts) == 1:
        return layers.get(module)
    for k in range(len(parts), 1, -1):  # the root's entry is for the root module alone
        found = layers.get(".".join(parts[:k]))
        if found is not None:
            return found
    return None


def violations(root: Path, layers: Mapping[str, int] = LAYERS,
               exceptions: Mapping[tuple[str, str, str], str] = EXCEPTIONS,
               script_dirs: Iterable[str] = ("benchmarks", "scripts")) -> tuple[list[str], set[tuple[str, str, str]]]:
    """(violations as "file:line: what", exceptions that were used) for the tree under ``root``.

    ``root/src/codescaler`` is the package; ``script_dirs`` hold scripts that may use the library.
    """
    src = root / "src"
    files = sorted((src / "codescaler").rglob("*.py"))
    modules = {module_name(f, src) for f in files}
    found: list[str] = []
    used: set[tuple[str, str, str]] = set()

    def report(imp: Import, what: str) -> None:
        key = (imp.path, imp.target, imp.name)
        if key in exceptions:
            used.add(key)
        else:
            found.append(f"{imp.path}:{imp.line}: {what}")

    imports: list[Import] = []
    for f in files:
        source = module_name(f, src)
        shown = f.relative_to(root).as_posix()
        mine = layer_of(source, layers)
        if mine is None:
            found.append(f"{shown}: module {source} has no layer; add it to LAYERS (tests/test_layers.py)")
            continue
        if mine <= 1:
            for top, line in third_party_imports(f):
                if top in IMPURE:
                    found.append(f"{shown}:{line}: {LAYER_NAMES[mine]} module imports {top} (L0/L1 are pure)")
        imports += read_imports(f, source, modules, shown)
    for folder in script_dirs:
        for f in sorted((root / folder).rglob("*.py")) if (root / folder).is_dir() else []:
            imports += read_imports(f, "", modules, f.relative_to(root).as_posix())

    for imp in imports:
        private = imp.name.startswith("_") or any(p.startswith("_") and not p.startswith("__")
                                                  for p in imp.target.split("."))
        if imp.source == "":  # a benchmark or script: the library, never the CLI's modules
            if imp.target.startswith("codescaler.cli.") or (imp.target == "codescaler.cli" and imp.name != "main"):
                report(imp, f"script imports {imp.target}{':' + imp.name if imp.name else ''}; use the library "
                       "(or codescaler.cli.main to run a verb)")
            elif private:
                report(imp, f"script imports the private {imp.target}:{imp.name}")
            continue
        mine, theirs = layer_of(imp.source, layers), layer_of(imp.target, layers)
        if theirs is None:
            found.append(f"{imp.path}:{imp.line}: imports unknown module {imp.target}")
            continue
        if mine is not None and theirs > mine:
            report(imp, f"{LAYER_NAMES[mine]} module {imp.source} imports {LAYER_NAMES[theirs]} module "
                   f"{imp.target}{':' + imp.name if imp.name else ''}")
        if imp.source.startswith("codescaler.cli.") and imp.target.startswith("codescaler.cli.") \
                and imp.target not in CLI_SHARED:
            report(imp, f"CLI verb {imp.source} imports another verb's module {imp.target}:{imp.name}")
        own_package = imp.target == imp.source.rsplit(".", 1)[0] or imp.source.startswith(imp.target + ".")
        if private and imp.target != imp.source and not own_package:
            report(imp, f"{imp.source} imports the private {imp.target}:{imp.name}")
    return found, used


def test_every_module_imports_only_from_its_own_layer_or_below():
    found, used = violations(REPO)
    assert not found, "layer contract broken (DESIGN.md):\n" + "\n".join(found)
    stale = set(EXCEPTIONS) - used
    assert not stale, f"these exceptions no longer occur; remove them from EXCEPTIONS: {sorted(stale)}"


def _tree(tmp_path: Path, files: Mapping[str, str]) -> Path:
    for name, text in {"src/codescaler/__init__.py": "", **files}.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return tmp_path


CLEAN = {
    "src/codescaler/records.py": "import dataclasses\n",
    "src/codescaler/extract.py": "from codescaler.records import Language\n",
    "src/codescaler/scorer.py": "from codescaler import extract\ndef pick_dtype(): ...\n",
    "src/codescaler/cli/__init__.py": "def main(): ...\n",
    "src/codescaler/cli/pairs_cmd.py": "from codescaler.cli import main\nfrom . import __name__ as n\n",
    "benchmarks/b.py": "from codescaler.cli import main\nfrom codescaler.scorer import pick_dtype\n",
}


@pytest.mark.parametrize(("name", "text", "expected"), [
    ("src/codescaler/extract.py", "def f():\n    from codescaler.scorer import pick_dtype\n",
     "L1 pure module codescaler.extract imports L2 I/O and models module codescaler.scorer:pick_dtype"),
    ("src/codescaler/records.py", "from .cli import main\n", "L0 records module codescaler.records imports L4"),
    ("src/codescaler/extract.py", "import torch\n", "imports torch (L0/L1 are pure)"),
    ("src/codescaler/cli/mutate_cmd.py", "from codescaler.cli.pairs_cmd import write\n",
     "CLI verb codescaler.cli.mutate_cmd imports another verb's module codescaler.cli.pairs_cmd:write"),
    ("src/codescaler/bench/baselines.py", "from codescaler.scorer import _pick_dtype\n",
     "imports the private codescaler.scorer:_pick_dtype"),
    ("benchmarks/c.py", "from codescaler.cli.eval_cmd import data_dir\n", "script imports codescaler.cli.eval_cmd"),
    ("src/codescaler/newthing.py", "", "module codescaler.newthing has no layer"),
])
def test_the_checker_catches_a_deliberate_violation(tmp_path: Path, name: str, text: str, expected: str):
    clean, _ = violations(_tree(tmp_path / "clean", CLEAN), exceptions={})
    assert clean == []
    found, _ = violations(_tree(tmp_path / "bad", {**CLEAN, name: text}), exceptions={})
    assert len(found) == 1 and expected in found[0], found
    assert found[0].startswith(name)


def test_a_listed_exception_silences_exactly_its_import(tmp_path: Path):
    root = _tree(tmp_path, {**CLEAN, "benchmarks/c.py": "from codescaler.cli.eval_cmd import data_dir\n"})
    key = ("benchmarks/c.py", "codescaler.cli.eval_cmd", "data_dir")
    found, used = violations(root, exceptions={key: "why"})
    assert found == [] and used == {key}
