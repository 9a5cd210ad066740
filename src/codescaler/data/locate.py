"""Where the public data folder is: ``--data-dir`` flag > ``CODESCALER_DATA`` > ``../shared/data``."""

from __future__ import annotations

import os
from pathlib import Path

from codescaler.errors import InputError

DATA_ENV = "CODESCALER_DATA"
_FIX = "pass --data-dir DIR or set CODESCALER_DATA=DIR to the public data folder (the one with README.md)"


def _default_candidates() -> list[Path]:
    # The repo root is three levels above this package (src/codescaler/data); installed copies fall back
    # to the working directory, where the CLI usually runs.
    repo_root = Path(__file__).resolve().parents[3]
    found = [repo_root.parent / "shared" / "data", Path.cwd().parent / "shared" / "data"]
    return list(dict.fromkeys(found))


def locate_data_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    """Return the public data folder, checked to be a readable directory.

    Order: ``explicit`` (the ``--data-dir`` flag), then the ``CODESCALER_DATA`` environment variable
    (read now, never at import), then ``../shared/data`` relative to the repository root or the current
    directory. An explicit or env path that is missing or unreadable raises ``InputError`` naming where it
    came from; so does finding no default.
    """
    env = os.environ.get(DATA_ENV)
    if explicit is not None and str(explicit) != "":
        return _checked(Path(explicit), "--data-dir")
    if env:
        return _checked(Path(env), DATA_ENV)
    for path in _default_candidates():
        if path.is_dir() and os.access(path, os.R_OK | os.X_OK):
            return path
    tried = ", ".join(str(p) for p in _default_candidates())
    raise InputError(f"no public data folder found (tried {tried})", fix=_FIX)


def _checked(path: Path, origin: str) -> Path:
    if not path.exists():
        raise InputError(f"data folder {str(path)!r} (from {origin}) does not exist", fix=_FIX)
    if not path.is_dir():
        raise InputError(f"data folder {str(path)!r} (from {origin}) is not a directory", fix=_FIX)
    if not os.access(path, os.R_OK | os.X_OK):
        raise InputError(f"data folder {str(path)!r} (from {origin}) is not readable", fix=_FIX + " that you can read")
    return path


def require_file(data_dir: Path, relative: str) -> Path:
    """``data_dir / relative``, or ``InputError`` naming the missing file and the data-dir flag/env var."""
    path = data_dir / relative
    if not path.is_file():
        raise InputError(f"expected dataset file {relative!r} under {str(data_dir)!r}, not found", path=str(path),
                         fix=_FIX)
    return path
