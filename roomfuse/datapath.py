"""Where the team's recorded footage lives: ``ROOMFUSE_DATA``, else ``../shared/data``
from the current folder, else ``../shared/data`` beside this checkout."""
from __future__ import annotations

import os
from pathlib import Path


def data_root() -> Path:
    env = os.environ.get("ROOMFUSE_DATA")
    if env:
        return Path(env).expanduser().resolve()
    here = Path("../shared/data").resolve()
    if here.is_dir():
        return here
    beside_checkout = Path(__file__).resolve().parents[1].parent / "shared" / "data"
    return beside_checkout.resolve() if beside_checkout.is_dir() else here
