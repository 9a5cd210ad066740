"""Shared fixtures: where the public data lives, and a scratch directory per test."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def _shared_data_dir() -> Path | None:
    env = os.environ.get("CODESCALER_DATA")
    candidates = [Path(env)] if env else []
    candidates.append(REPO_ROOT.parent / "shared" / "data")
    for path in candidates:
        if (path / "README.md").is_file():
            return path
    return None


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The read-only public data folder (../shared/data). In CI its absence is a failure, not a skip."""
    path = _shared_data_dir()
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("../shared/data not found: set CODESCALER_DATA to the public data folder")
        pytest.skip("public data folder not found (set CODESCALER_DATA)")
    return path


@pytest.fixture(scope="module")
def tiny_rm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random RM (Qwen3 architecture, chat-template input) whose metadata names a real tiny backbone
    folder, so that the untrained-backbone baseline can load it. Modules with other needs define their own."""
    from codescaler.rm_checkpoint import InputFormat, RMMetadata, write_metadata
    from codescaler.testing import build_tiny_model

    backbone = build_tiny_model(tmp_path_factory.mktemp("backbone"), arch="qwen3", seed=3)
    rm = build_tiny_model(tmp_path_factory.mktemp("rm"), arch="qwen3", seed=4)
    write_metadata(rm, RMMetadata(input_format=InputFormat.CHAT_TEMPLATE, max_length=512, backbone=str(backbone)))
    return rm
