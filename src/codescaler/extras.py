"""Optional dependencies ("extras") and the one-line error when one is missing (layer L0).

``pip install codescaler`` gives the core: extraction, shaping, scoring, best-of-N selection and the
TRL / verl reward callables. Each other job has an extra in pyproject.toml (docs/install.md): ``sandbox``,
``data``, ``server``, ``train``, ``rl``, ``plots``, ``models``, or ``all``.

``require(extra, *modules)`` imports the modules a job needs; when one is not installed it raises
``MissingExtra``, an ``InputError`` (the CLI prints it on one line and exits 2) that is also an
``ImportError`` (code that catches failed imports keeps working), e.g.::

    the reward server (codescaler serve) needs the Python package 'fastapi', which is not installed
    (pip install 'codescaler[server]')

Call it where the job starts (before any expensive work), not at import time.
"""

from __future__ import annotations

import importlib

from codescaler.errors import InputError

# extra -> the job that needs it, as the message names it.
EXTRAS: dict[str, str] = {
    "sandbox": "the sandbox",
    "data": "this dataset loader",
    "server": "the reward server (codescaler serve)",
    "train": "reward-model training (codescaler train)",
    "rl": "GRPO training (codescaler rl)",
    "plots": "plotting",
    "models": "preparing the embedded models",
}


def install_command(extra: str) -> str:
    """The pip command that installs ``extra``, quoted for a POSIX shell."""
    return f"pip install 'codescaler[{extra}]'"


class MissingExtra(InputError, ImportError):
    """A package of an optional extra is not installed; the message names the extra to install."""

    def __init__(self, extra: str, module: str) -> None:
        if extra not in EXTRAS:
            raise ValueError(f"unknown extra {extra!r}; known: {', '.join(EXTRAS)}")
        self.extra = extra
        super().__init__(f"{EXTRAS[extra]} needs the Python package {module!r}, which is not installed",
                         fix=install_command(extra))
        self.name = module  # ImportError's field: which module was missing


def require(extra: str, *modules: str) -> None:
    """Import each of ``modules`` (a cheap no-op when already imported); raise ``MissingExtra`` naming
    ``extra`` for the first one that is not installed, or whose own dependency is not (a partial install
    is fixed by the same command); the message names the top-level package. Other import failures (a
    broken build) propagate unchanged."""
    for module in modules:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as err:
            raise MissingExtra(extra, (err.name or module).split(".")[0]) from err
