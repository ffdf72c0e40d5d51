"""Names under people: placement, following the person calmly, any name."""
from __future__ import annotations

import numpy as np

from roomfuse.frames import Rect
from roomfuse.rtc.labels import Labels

TILE = Rect(100, 0, 400, 240)


def canvas(person_x: int) -> tuple[np.ndarray, np.ndarray]:
    image = np.full((240, 600, 3), 120, np.uint8)
    people = np.zeros((240, 600), np.float32)
    people[60:240, person_x - 40:person_x + 40] = 1.0
    return image, people


def test_label_sits_at_the_bottom_of_the_tile_under_the_person():
    image, people = canvas(200)  # left of the tile's centre (300)
    before = image.copy()
    (r,) = Labels().draw(image, [TILE], ["Ada"], people=people)
    assert TILE.x <= r.x and r.x + r.w <= TILE.x + TILE.w
    assert TILE.h - 3 * r.h < r.y and r.y + r.h <= TILE.h
    assert abs(r.x + r.w / 2 - 200) < 5  # under the person, not the tile's middle
    changed = np.any(image != before, axis=2)
    assert changed[r.y:r.y + r.h, r.x:r.x + r.w].mean() > 0.5 and changed.sum() == changed[r.y:r.y + r.h, r.x:r.x + r.w].sum()
    patch = image[r.y:r.y + r.h, r.x:r.x + r.w].mean(axis=2)
    assert (patch > 180).mean() > 0.05 and (patch < 90).mean() > 0.3  # light letters on a dark box


def test_label_stays_put_for_a_sway_and_follows_a_real_move_gradually():
    labels = Labels()
    xs = []
    for person_x in [300, 310, 295, 305, 300]:  # swaying within a few pixels
        image, people = canvas(person_x)
        r = labels.draw(image, [TILE], ["Ada"], people=people, keys=["a"])[0]
        xs.append(r.x + r.w / 2)
    assert len(set(xs)) == 1
    moved = []
    for _ in range(20):  # steps aside by a quarter of the tile
        image, people = canvas(420)
        moved.append(labels.draw(image, [TILE], ["Ada"], people=people, keys=["a"])[0])
    centres = [r.x + r.w / 2 for r in moved]
    assert centres[0] - xs[0] < 40  # no jump
    assert all(b >= a for a, b in zip(centres, centres[1:]))
    assert abs(centres[-1] - 420) < 0.1 * TILE.w + 2  # there, within the dead band


def test_any_name_renders_and_long_names_are_cut():
    labels = Labels()
    for name in ("Björk Guðmundsdóttir", "Дмитрий", "Ελένη"):
        rgb, alpha = labels.render(name, 20)
        assert (alpha > 0.9).mean() > 0.05  # letters were drawn, not an empty box
    short = labels.render("x" * 10, 20)[1].shape[1]
    long = labels.render("x" * 200, 20)[1].shape[1]
    assert long < 4 * short


def test_label_follows_a_person_matte_drawn_smaller_than_the_composite():
    """The canvas is worked at the cameras' detail (half size here): the person is found
    in the small matte's tile, the label drawn in the composite's."""
    image, people = canvas(200)
    small = people[::2, ::2].copy()
    (r,) = Labels().draw(image, [TILE], ["Ada"], people=small, people_tiles=[Rect(50, 0, 200, 120)])
    assert abs(r.x + r.w / 2 - 200) < 5
