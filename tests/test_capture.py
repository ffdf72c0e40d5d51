"""Sources: clip files (PyAV) with their timestamps and loops, errors, the synthetic room."""
from __future__ import annotations

import numpy as np
import pytest

from roomfuse.capture import ClipSource, SourceError, open_source
from roomfuse.sinks import VideoWriter
from roomfuse.synthetic import SyntheticSource


def _write_clip(path, n=10, fps=10.0, size=(64, 48)):
    with VideoWriter(path, fps=fps) as w:
        for i in range(n):
            img = np.full((size[1], size[0], 3), i * 20, np.uint8)
            w.write(img)


def test_clip_frames_follow_timestamps_and_loop(tmp_path):
    path = tmp_path / "ramp.mp4"
    _write_clip(path, n=10, fps=10.0)
    src = ClipSource(path)
    assert src.duration == pytest.approx(1.0, abs=0.15)
    # At 30 fps output a 10 fps clip holds each frame for three output frames.
    values = [int(src.frame_at(i / 30).image.mean()) for i in range(6)]
    assert values[0] == values[1] == values[2]
    assert values[3] == values[4] == values[5]
    assert abs(values[3] - values[0] - 20) <= 3
    # Past the end it loops: 1.0 s is the first frame again, with time still moving on.
    f = src.frame_at(1.02)
    assert abs(int(f.image.mean()) - values[0]) <= 3
    assert f.pts == pytest.approx(1.0, abs=0.02)
    src.close()


def test_read_delivers_every_frame_in_order(tmp_path):
    path = tmp_path / "ramp.mkv"
    _write_clip(path, n=5)
    src = ClipSource(path)
    pts = [src.read().pts for _ in range(12)]
    assert pts == sorted(pts)
    assert np.allclose(np.diff(pts), 0.1, atol=0.01)
    src.close()


def test_irregular_timestamps_are_respected(data_dir):
    # opencv's tree.avi has frames at 0, 0.733, 1.133 s ...: the first frame stays on
    # screen until 0.733 s.
    src = ClipSource(data_dir / "scene_clips" / "opencv_tree.avi")
    first = src.frame_at(0.0)
    assert src.frame_at(0.7).index == first.index
    second = src.frame_at(0.75)
    assert second.index == first.index + 1
    assert second.pts == pytest.approx(0.7333, abs=0.01)
    src.close()


@pytest.mark.parametrize("name, content, reason", [
    ("missing.mp4", None, "no such file"),
    ("empty.mp4", b"", "empty file"),
    ("corrupt.mp4", bytes(range(256)) * 64, "cannot"),
    ("notes.txt", b"this is not a video\n" * 10, "cannot"),
])
def test_bad_files_raise_one_line_naming_the_file(tmp_path, name, content, reason):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(SourceError) as err:
        ClipSource(path)
    msg = str(err.value)
    assert str(path) in msg and reason in msg and "\n" not in msg


def test_truncated_clip_is_an_error_not_a_crash(tmp_path, data_dir):
    good = (data_dir / "person_clips" / "intel_asl_bird.mkv").read_bytes()
    path = tmp_path / "truncated.mkv"
    path.write_bytes(good[:300])  # header only, no decodable picture
    with pytest.raises(SourceError, match="truncated.mkv"):
        ClipSource(path)


def test_open_source_specs():
    src = open_source("synthetic:3")
    assert isinstance(src, SyntheticSource) and src.seed == 3
    with pytest.raises(SourceError, match="camera index"):
        open_source("camera:front")
    with pytest.raises(SourceError, match="seed"):
        open_source("synthetic:x")


def test_synthetic_source_is_deterministic_and_moves():
    a, b = SyntheticSource(seed=1), SyntheticSource(seed=1)
    assert np.array_equal(a.frame_at(0.5).image, b.frame_at(0.5).image)
    assert not np.array_equal(a.truth_alpha(0.0), a.truth_alpha(1.0))
    assert not np.array_equal(SyntheticSource(seed=2).background, a.background)
