"""`roomfuse render` on clips damaged mid-way: it renders what decodes, exits 0, and
warns once per damaged clip, naming the file; an intact clip gets no warning."""
from __future__ import annotations

import logging
import random

import av
import pytest

from roomfuse.capture import ClipSource
from roomfuse.cli import main

pytestmark = pytest.mark.timeout(180)

CLIP = "intel_asl_bird.mkv"  # 2.1 s, 63 frames


def damaged_copies(src, folder):
    data = src.read_bytes()
    cut = folder / "cut_off.mkv"  # a copy interrupted at 40 %
    cut.write_bytes(data[: len(data) * 2 // 5])
    noisy = bytearray(data)  # 64 garbage bytes every KB through the middle fifth
    rng = random.Random(0)
    for at in range(len(data) * 2 // 5, len(data) * 3 // 5, 997):
        noisy[at:at + 64] = bytes(rng.randrange(256) for _ in range(64))
    corrupt = folder / "corrupt.mkv"
    corrupt.write_bytes(bytes(noisy))
    return cut, corrupt


def test_render_warns_once_per_damaged_clip_and_renders_the_rest(person_clip, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    cut, corrupt = damaged_copies(person_clip(CLIP), tmp_path)
    intact = person_clip("pyfeat_single_face.mp4")
    out = tmp_path / "room.mp4"
    code = main(["render", str(cut), str(corrupt), str(intact), "-o", str(out), "--frames", "75",
                 "--grower", "telea"])
    assert code == 0
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 2, warnings
    assert sum(str(cut) in w and "cut off" in w for w in warnings) == 1, warnings
    assert sum(str(corrupt) in w and "corrupt data" in w for w in warnings) == 1, warnings
    assert not any(str(intact) in w for w in warnings)
    assert all("\n" not in w for w in warnings)
    with av.open(str(out)) as c:
        assert sum(1 for _ in c.decode(video=0)) == 75


def test_a_damaged_clip_loops_over_what_decodes(person_clip, tmp_path):
    cut, _ = damaged_copies(person_clip(CLIP), tmp_path)
    src = ClipSource(cut)
    try:
        times = [src.frame_at(i / 30).pts for i in range(90)]  # 3 s of a clip cut at 0.5 s
    finally:
        src.close()
    assert "0.5 s of the 2.1 s" in src.damage
    assert times == sorted(times) and times[-1] > 2.5  # time goes on across the loops
