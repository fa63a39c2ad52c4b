"""Fixtures of the runtime tests: a fresh copy of the committed tiny bundle per test."""

import shutil
from pathlib import Path

import pytest

TINY = Path(__file__).resolve().parents[1] / "data" / "tiny_bundle"


@pytest.fixture
def bundle(tmp_path):
    """A copy of tests/data/tiny_bundle that a test may damage."""
    copy = tmp_path / "bundle"
    shutil.copytree(TINY, copy)
    return copy
