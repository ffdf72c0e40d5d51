"""Shared fixtures.

The team data set is read from ``ROOMFUSE_DATA`` (default ``../shared/data``). On a
developer machine without it, tests that need it skip; CI sets
``ROOMFUSE_REQUIRE_DATA=1`` so that a missing data set fails those tests instead.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from roomfuse.datapath import data_root


def _require_data() -> bool:
    return os.environ.get("ROOMFUSE_REQUIRE_DATA", "") not in ("", "0")


@pytest.fixture(scope="session")
def data_dir() -> Path:
    root = data_root()
    if not (root / "person_clips").is_dir():
        msg = f"team data not found at {root} (set ROOMFUSE_DATA)"
        if _require_data():
            pytest.fail(msg)
        pytest.skip(msg)
    return root


@pytest.fixture(scope="session")
def person_clip(data_dir: Path):
    """Return a function name -> Path of a clip in person_clips/ that must exist."""
    def get(name: str) -> Path:
        p = data_dir / "person_clips" / name
        if not p.is_file():
            pytest.fail(f"team clip missing: {p}")
        return p
    return get
