"""Names under people, drawn into the room's composite.

Drawn into the picture rather than over the page's video so that every viewer (a
browser, `roomfuse join`, a meeting app reading the virtual camera) sees who is who.
Each label is rasterised once per name and size, with a TrueType font (OpenCV's own fonts
know only ASCII, and names do not), then only blended into each frame: 0.3 ms for two
labels on a 1280x360 composite (benchmarks/RESULTS.md).
"""
from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import Sequence

import numpy as np

from ..frames import Rect

log = logging.getLogger(__name__)

# matplotlib (a dependency) ships DejaVu Sans, which covers Latin, Greek and Cyrillic;
# a system copy is the fallback, then Pillow's built-in font.
_FONT_FILES = ("mpl-data/fonts/ttf/DejaVuSans.ttf",)
_SYSTEM_FONTS = ("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",)


def font_path() -> str | None:
    spec = importlib.util.find_spec("matplotlib")
    roots = list(spec.submodule_search_locations or []) if spec else []
    for root in roots:
        for rel in _FONT_FILES:
            if (Path(root) / rel).is_file():
                return str(Path(root) / rel)
    return next((p for p in _SYSTEM_FONTS if Path(p).is_file()), None)


class Labels:
    """Renders and places name labels; one instance per room, used from its thread."""

    MAX_CHARS = 32

    # A label follows its person calmly: it stays put while the person's centre is within
    # DEADBAND of the tile's width from it, and otherwise eases over (EASE per frame).
    DEADBAND = 0.1
    EASE = 0.2

    def __init__(self):
        self._font_file = font_path()
        self._fonts: dict[int, object] = {}
        self._cache: dict[tuple[str, int], tuple[np.ndarray, np.ndarray]] = {}
        self._centre: dict[object, float] = {}  # key -> label centre, as a share of its tile's width

    def _font(self, px: int):
        from PIL import ImageFont

        font = self._fonts.get(px)
        if font is None:
            if self._font_file is not None:
                font = ImageFont.truetype(self._font_file, px)
            else:
                font = ImageFont.load_default(px)
            self._fonts[px] = font
        return font

    def render(self, name: str, px: int) -> tuple[np.ndarray, np.ndarray]:
        """(RGB, alpha in [0, 1]) of one label: light text on a dark rounded box."""
        key = (name, px)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        from PIL import Image, ImageDraw

        text = name if len(name) <= self.MAX_CHARS else name[:self.MAX_CHARS - 1] + "\u2026"
        font = self._font(px)
        x0, y0, x1, y1 = font.getbbox(text)
        pad_x, pad_y = px // 2, px // 4
        w, h = (x1 - x0) + 2 * pad_x, (y1 - y0) + 2 * pad_y
        box = Image.new("L", (w, h), 0)
        ImageDraw.Draw(box).rounded_rectangle((0, 0, w - 1, h - 1), radius=max(2, h // 3), fill=255)
        ink = Image.new("L", (w, h), 0)
        ImageDraw.Draw(ink).text((pad_x - x0, pad_y - y0), text, font=font, fill=255)
        box_a = np.asarray(box, np.float32) / 255.0 * 0.62
        ink_a = np.asarray(ink, np.float32) / 255.0
        # Text over a translucent box: the text opaque, the box letting the room through.
        alpha = ink_a + box_a * (1.0 - ink_a)
        shade = np.float32(12.0)
        rgb_val = (ink_a * 245.0 + box_a * (1.0 - ink_a) * shade) / np.maximum(alpha, 1e-6)
        rgb = np.repeat(rgb_val[..., None], 3, axis=2)
        if len(self._cache) > 256:  # names come and go; never grow without bound
            self._cache.clear()
        hit = self._cache[key] = (rgb.astype(np.float32), alpha)
        return hit

    def draw(self, image: np.ndarray, tiles: Sequence[Rect], names: Sequence[str],
             people: np.ndarray | None = None, opacity: Sequence[float] | None = None,
             keys: Sequence | None = None, people_tiles: Sequence[Rect] | None = None) -> list[Rect]:
        """Blend each feed's name into ``image`` (in place) at the bottom of its tile,
        under the person (the column mass of ``people``, the canvas's person matte) where
        there is one, followed calmly from frame to frame per feed ``keys``. Returns where
        each label went. ``people_tiles``: the tiles in ``people`` where it is drawn at
        another size than ``image`` (by default ``tiles``)."""
        out = []
        H, W = image.shape[:2]
        keys = list(range(len(tiles))) if keys is None else list(keys)
        for gone in set(self._centre) - set(keys):
            del self._centre[gone]
        for i, (tile, name) in enumerate(zip(tiles, names)):
            if not name:
                out.append(Rect(0, 0, 0, 0))
                continue
            px = int(min(28, max(11, tile.h / 16)))
            rgb, alpha = self.render(name, px)
            if opacity is not None:
                alpha = alpha * float(max(0.0, min(1.0, opacity[i])))
            h, w = alpha.shape
            target = 0.5
            matte_tile = tile if people_tiles is None else people_tiles[i]
            if people is not None and matte_tile.w > 0 and matte_tile.h > 0:
                ys, xs = matte_tile.slices
                cols = people[ys, xs].sum(axis=0)
                if cols.sum() > 0.02 * matte_tile.w * matte_tile.h:
                    target = float((cols * np.arange(len(cols))).sum() / cols.sum()) / max(1, len(cols))
            centre = self._centre.get(keys[i], target)
            if abs(target - centre) > self.DEADBAND:
                centre += (target - centre) * self.EASE
            self._centre[keys[i]] = centre
            x = int(round(tile.x + centre * tile.w - w / 2))
            x = max(tile.x, min(x, tile.x + tile.w - w))
            y = tile.y + tile.h - h - max(4, px // 2)
            # Clip to the canvas (a tile sliding in or out can hang off it).
            x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, W), min(y + h, H)
            if x1 <= x0 or y1 <= y0:
                out.append(Rect(0, 0, 0, 0))
                continue
            a = alpha[y0 - y:y1 - y, x0 - x:x1 - x, None]
            roi = image[y0:y1, x0:x1].astype(np.float32)
            image[y0:y1, x0:x1] = (roi * (1.0 - a) + rgb[y0 - y:y1 - y, x0 - x:x1 - x] * a + 0.5).astype(np.uint8)
            out.append(Rect(x0, y0, x1 - x0, y1 - y0))
        return out
