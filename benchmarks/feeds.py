"""Feeds for the benchmarks, decoded once and held in memory, with or without PyAV.

A live server gets decoded frames from its WebRTC receivers; what the compositor costs
starts after that. So the room and roofline benchmarks decode a short loop of each feed
up front (OpenCV, which every machine here has, PyAV or not) and hand the pipeline
frames from memory; their "decode" stage is only the pick of a frame.

Two kinds of feed:
- ``clips``: the team's 640x480 webcam clips. At another feed size the frame is first
  cropped to that aspect around its centre, then resized (a 16:9 feed from a 4:3 clip
  loses a band at the top and bottom; 1280x720 from 640x480 is an upscale of a 640x360
  crop). Segmented by mediapipe.
- ``synthetic``: ``roomfuse.synthetic`` rooms with a swaying flat-coloured person,
  rendered at the feed size. Segmented by the colour key, so no mediapipe is needed:
  the form that runs on a machine without it.
"""
from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np

from roomfuse.frames import Frame
from roomfuse.synthetic import SyntheticSource

# 640x480 webcam clips of people in an office (each one a different signer).
WEBCAMS = ["intel_asl_bird.mkv", "intel_asl_again.mkv", "intel_asl_book.mkv", "intel_asl_yes.mkv",
           "intel_asl_brother.mkv", "intel_asl_help.mkv", "intel_asl_learn.mkv", "intel_asl_milk.mkv"]


class FeedError(RuntimeError):
    pass


def fit(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Crop ``image`` to the aspect of ``size`` (w, h) around its centre, then resize."""
    w, h = size
    ih, iw = image.shape[:2]
    if (iw, ih) == (w, h):
        return image
    if iw * h > ih * w:   # too wide: crop the sides
        cw = int(round(ih * w / h))
        x = (iw - cw) // 2
        image = image[:, x:x + cw]
    else:                 # too tall: crop top and bottom
        ch = int(round(iw * h / w))
        y = (ih - ch) // 2
        image = image[y:y + ch]
    interp = cv2.INTER_AREA if image.shape[1] > w else cv2.INTER_LINEAR
    return np.ascontiguousarray(cv2.resize(image, (w, h), interpolation=interp))


class MemoryFeed:
    """A looping feed of frames held in memory; ``frame_at(t)`` like capture's sources."""

    def __init__(self, frames: list[np.ndarray], fps: float, name: str, offset: int = 0):
        self.frames = frames
        self.fps = fps
        self.name = name
        self.offset = offset  # rooms that share a loop start at different frames

    def frame_at(self, t: float) -> Frame:
        i = int(math.floor(t * self.fps + 1e-6))
        image = self.frames[(i + self.offset) % len(self.frames)]
        return Frame(image=image, pts=t, index=i, source=self.name)

    def shifted(self, offset: int) -> "MemoryFeed":
        return MemoryFeed(self.frames, self.fps, self.name, offset)

    def close(self) -> None:
        pass


def decode_clip(path: Path, size: tuple[int, int], frames: int) -> tuple[list[np.ndarray], float]:
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise FeedError(f"{path}: OpenCV cannot open it")
    fps = cap.get(cv2.CAP_PROP_FPS) or 30.0
    out = []
    try:
        while len(out) < frames:
            ok, bgr = cap.read()
            if not ok:
                break
            out.append(fit(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), size))
    finally:
        cap.release()
    if not out:
        raise FeedError(f"{path}: no frame decoded")
    return out, fps


def open_feeds(kind: str, count: int, size: tuple[int, int], frames: int = 60,
               data: Path | None = None, fps: float = 30.0) -> list[MemoryFeed]:
    """``count`` different feeds of ``size`` (w, h), ``frames`` frames each."""
    if kind == "synthetic":
        feeds = []
        for seed in range(count):
            src = SyntheticSource(seed=seed + 1, size=size, fps=fps)
            feeds.append(MemoryFeed([src.frame_at(i / fps).image for i in range(frames)], fps,
                                    f"synthetic:{seed + 1}"))
        return feeds
    if kind == "clips":
        if data is None:
            from roomfuse.datapath import data_root

            data = data_root()
        feeds = []
        for i in range(count):
            path = Path(data) / "person_clips" / WEBCAMS[i % len(WEBCAMS)]
            images, clip_fps = decode_clip(path, size, frames)
            feeds.append(MemoryFeed(images, clip_fps, path.name))
        return feeds
    raise FeedError(f"feed kind must be 'synthetic' or 'clips', got {kind!r}")


def segmenter_for(kind: str) -> str:
    return "key" if kind == "synthetic" else "mediapipe"


def parse_size(text: str) -> tuple[int, int]:
    w, _, h = text.lower().partition("x")
    return int(w), int(h)
