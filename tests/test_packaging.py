"""A wheel built from the repository carries what roomfuse needs at run time: the page
files and the growth model's weights, which the default grower loads from the package."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.timeout(300)

LOAD = """
import numpy as np, roomfuse
from roomfuse.growth import make_grower
from roomfuse.growth.nca_grower import DEFAULT_CHECKPOINT
image = np.zeros((64, 128, 3), np.uint8); image[:, :40] = (200, 120, 40); image[:, 88:] = (40, 120, 200)
known = np.zeros((64, 128), bool); known[:, :40] = known[:, 88:] = True
grower = make_grower("nca", device="cpu")
out = grower.fill(image, known)
assert (out[known] == image[known]).all() and out[:, 40:88].std() > 0
print(roomfuse.__file__); print(DEFAULT_CHECKPOINT); print(len(grower.meta.get("history", [])))
"""


def test_a_wheel_built_from_the_repository_loads_the_default_grower(tmp_path):
    dist, site, src = tmp_path / "dist", tmp_path / "site", tmp_path / "src"
    # A copy of what the build reads (pip builds a folder in place, leaving build/ behind).
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "roomfuse", src / "roomfuse", ignore=shutil.ignore_patterns("__pycache__"))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    # No build isolation: the build uses this environment's setuptools, offline.
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(dist), str(src)],
                   check=True, cwd=tmp_path, capture_output=True, timeout=240)
    wheels = list(dist.glob("roomfuse-*.whl"))
    assert len(wheels) == 1, wheels
    subprocess.run([*pip, "install", "--no-deps", "--target", str(site), str(wheels[0])],
                   check=True, cwd=tmp_path, capture_output=True, timeout=120)
    # Run from the temporary folder with the installed copy first on the path: the
    # checkout (and its models/ folder) is nowhere in reach.
    env = {**os.environ, "PYTHONPATH": str(site)}
    done = subprocess.run([sys.executable, "-c", LOAD], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    module, checkpoint, history = done.stdout.split()
    assert Path(module).is_relative_to(site), module
    assert Path(checkpoint).is_relative_to(site) and Path(checkpoint).is_file(), checkpoint
    assert int(history) > 0  # the shipped checkpoint, with its training record
