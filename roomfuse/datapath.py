"""Where the team's recorded footage lives: ``ROOMFUSE_DATA`` or ``../shared/data``."""
from __future__ import annotations

import os
from pathlib import Path


def data_root() -> Path:
    return Path(os.environ.get("ROOMFUSE_DATA", "../shared/data")).expanduser().resolve()
