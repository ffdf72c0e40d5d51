"""Bad input at the command line: one line naming the culprit, exit code 2."""
from __future__ import annotations

import subprocess
import sys

import pytest


def _run(*args):
    return subprocess.run([sys.executable, "-m", "roomfuse", *map(str, args)],
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("name, content, reason", [
    ("missing.mp4", None, "no such file"),
    ("empty.mkv", b"", "empty file"),
    ("corrupt.mp4", b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 40, "cannot"),
])
@pytest.mark.parametrize("command", ["render", "bench"])
def test_bad_clip_one_line_exit_2(tmp_path, command, name, content, reason):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    extra = ["-o", tmp_path / "out.mp4"] if command == "render" else []
    proc = _run(command, "synthetic:1", path, *extra)
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert str(path) in lines[0] and reason in lines[0]
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "out.mp4").exists()


@pytest.mark.parametrize("args, expect", [
    (["render", "synthetic:1", "-o", "x.mp4", "--frames", "0"], "--frames"),
    (["render", "synthetic:1", "-o", "x.mp4", "--gap", "-3"], "--gap"),
    (["render", "synthetic:1", "-o", "x.mp4", "--grower", "magic"], "--grower"),
    (["bench"] + ["synthetic:1"] * 9, "1 to 8"),
    (["render", "synthetic:1", "-o", "/no/such/dir/x.mp4", "--segmenter", "key"], "/no/such/dir"),
])
def test_bad_flags_one_line_exit_2(tmp_path, args, expect):
    proc = subprocess.run([sys.executable, "-m", "roomfuse", *args], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)
    assert proc.returncode == 2
    assert expect in proc.stderr and "Traceback" not in proc.stderr
