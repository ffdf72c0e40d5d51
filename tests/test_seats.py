"""Seats: alike rooms side by side, decided rarely and kept."""
from __future__ import annotations

import numpy as np
import pytest

from roomfuse.config import LayoutConfig, MemoryConfig
from roomfuse.frames import Canvas, Cutout, Frame, Rect
from roomfuse.layout import Placer
from roomfuse.seats import Seats, adjacency, best_order, side_features


def _room(wall, floor_at=0.75, floor=(60, 50, 40), size=(320, 240), seed=0):
    w, h = size
    rng = np.random.default_rng(seed)
    img = np.empty((h, w, 3), np.float32)
    img[:] = wall
    img[int(floor_at * h):] = floor
    img += rng.normal(0, 3, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def _cut(img):
    return Cutout(Frame(img, 0.0, 0), np.zeros(img.shape[:2], np.float32))


def _run(placer, rooms, keys, frames):
    orders = []
    for _ in range(frames):
        canvas = placer([_cut(rooms[k]) for k in keys], keys)
        by_x = sorted(zip(canvas.tiles, keys), key=lambda tk: tk[0].x)
        orders.append(tuple(k for _, k in by_x))
    return orders


def test_alike_rooms_are_seated_together_once_and_kept():
    rooms = {"blue": _room((60, 80, 170)), "beige": _room((200, 180, 150)), "navy": _room((50, 70, 150), seed=1)}
    placer = Placer(LayoutConfig(height=120, gap=16, order="auto"), MemoryConfig(enabled=False))
    orders = _run(placer, rooms, ["blue", "beige", "navy"], 400)
    assert orders[0] == ("blue", "beige", "navy")  # as given until the rooms are seen
    final = orders[-1]
    assert abs(final.index("blue") - final.index("navy")) == 1  # the two blue rooms meet
    changes = sum(a != b for a, b in zip(orders, orders[1:]))
    assert changes <= 12 + 1  # one reseat (a 12-frame slide), never reshuffled
    assert placer.seats.decisions >= 2  # it did review the order again, and kept it


def test_floor_lines_at_the_same_height_meet():
    wall = (150, 150, 150)
    rooms = {"low": _room(wall, floor_at=0.8), "high": _room(wall, floor_at=0.45), "low2": _room(wall, floor_at=0.78)}
    placer = Placer(LayoutConfig(height=120, gap=16, order="auto"), MemoryConfig(enabled=False))
    final = _run(placer, rooms, ["low", "high", "low2"], 60)[-1]
    assert abs(final.index("low") - final.index("low2")) == 1


def test_given_order_is_kept():
    rooms = {"blue": _room((60, 80, 170)), "beige": _room((200, 180, 150)), "navy": _room((50, 70, 150))}
    placer = Placer(LayoutConfig(height=120, gap=16, order="given"), MemoryConfig(enabled=False))
    assert set(_run(placer, rooms, ["blue", "beige", "navy"], 60)) == {("blue", "beige", "navy")}


def test_small_gains_do_not_move_anyone():
    seats = Seats("auto", settle_frames=1, hysteresis=0.15)
    tiles = [Rect(0, 0, 40, 30), Rect(50, 0, 40, 30), Rect(100, 0, 40, 30)]
    # A canvas showing three nearly identical rooms: whatever the best order, it is not
    # worth a reseat.
    img = np.concatenate([_room(c, size=(40, 30)) for c in ((100, 100, 100), (104, 100, 100), (100, 104, 100))], axis=1)
    canvas = Canvas(image=img, background=img, known=np.ones(img.shape[:2], bool),
                    alpha=np.zeros(img.shape[:2], np.float32), tiles=(Rect(0, 0, 40, 30), Rect(40, 0, 40, 30),
                                                                      Rect(80, 0, 40, 30)), keys=("a", "b", "c"))
    feats = [side_features(img[:, 40 * i:40 * (i + 1)], np.ones((30, 40), bool)) for i in range(3)]
    assert best_order(feats, tiles)[1] < 1.0  # near-identical: all orders cost little
    seats(["a", "b", "c"], canvas, lambda order: tiles)
    for _ in range(5):
        assert seats(["a", "b", "c"], canvas, lambda order: tiles) == ("a", "b", "c")


def test_newcomer_takes_the_next_seat_and_others_stay():
    seats = Seats("auto")
    assert seats(["a", "b", "c"], None) == ("a", "b", "c")
    assert seats(["a", "c"], None) == ("a", "c")  # b left: nobody else moves
    assert seats(["d", "a", "c"], None) == ("a", "c", "d")  # d sits at the end for now


def test_adjacency_of_a_grid():
    tiles = [Rect(0, 0, 10, 10), Rect(20, 0, 10, 10), Rect(0, 20, 10, 10), Rect(20, 20, 10, 10)]
    horiz, vert = adjacency(tiles)
    assert sorted(horiz) == [(0, 1), (2, 3)] and sorted(vert) == [(0, 2), (1, 3)]


def test_bad_order_is_a_clear_error():
    with pytest.raises(ValueError, match="order"):
        Seats("random")


def test_side_colours_are_the_rooms_lab_colours():
    """Each side's colour is the mean Lab colour of what the tile shows there."""
    import cv2

    img = _room((200, 120, 60), floor=(40, 90, 160))
    feats = side_features(img, np.ones(img.shape[:2], bool))
    half = img[::2, ::2]
    lab = cv2.cvtColor(half.astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab)
    h, w = half.shape[:2]
    strips = {"left": lab[:, :w // 4], "right": lab[:, w - w // 4:], "top": lab[:h // 4], "bottom": lab[h - h // 4:]}
    for side, strip in strips.items():
        assert feats[side][0] == pytest.approx(strip.reshape(-1, 3).mean(axis=0), abs=0.5), side
    # The wall and the floor are told apart: the bottom strip is the floor's blue.
    assert feats["bottom"][0][2] < feats["top"][0][2] - 40
