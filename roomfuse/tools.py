"""``roomfuse inpaint`` and ``roomfuse extend``: the growers on single images.

    roomfuse inpaint --image room.jpg --mask hole.png --output filled.png [--grower nca]
    roomfuse extend --image webcam.jpg --width 853 --output wide.png [--grower nca]

The mask is any image of the same size; non-zero pixels are missing. ``extend`` centres
the image on a wider canvas (e.g. a 4:3 frame to 16:9) and grows the margins. Progress
goes to stderr, and a last line on stdout says what was written. Bad input (a missing or
undecodable file, a size mismatch) is one line on stderr naming the file and the reason,
exit status 2.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from .argtypes import add_device_argument
from .errors import RoomfuseError


class InputError(RoomfuseError):
    """A user-supplied file or value is unusable; the message names it and says why."""


def _read(path: str, flags: int) -> np.ndarray:
    import cv2

    p = Path(path)
    if not p.is_file():
        raise InputError(f"{path}: no such file")
    img = cv2.imread(str(p), flags)
    if img is None:
        raise InputError(f"{path}: not a readable image")
    return img


def read_rgb(path: str) -> np.ndarray:
    import cv2

    return cv2.cvtColor(_read(path, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def read_mask(path: str, shape: tuple[int, int]) -> np.ndarray:
    """Missing-pixel mask (True = missing) from any greyscale or colour image."""
    import cv2

    mask = _read(path, cv2.IMREAD_UNCHANGED)
    if mask.ndim == 3:
        mask = mask.max(axis=2)
    if mask.shape != shape:
        raise InputError(f"{path}: mask is {mask.shape[1]}x{mask.shape[0]} but the image is "
                         f"{shape[1]}x{shape[0]}; sizes must match")
    return mask != 0


def write_rgb(path: str, img: np.ndarray) -> None:
    import cv2

    p = Path(path)
    if p.parent and not p.parent.is_dir():
        raise InputError(f"{path}: folder {p.parent} does not exist")
    if not cv2.imwrite(str(p), cv2.cvtColor(img, cv2.COLOR_RGB2BGR)):
        raise InputError(f"{path}: cannot write an image there (unknown extension?)")


def extend_canvas(image: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """The image centred on a ``width``-wide canvas, and the mask of what is known."""
    h, w = image.shape[:2]
    if width < w:
        raise InputError(f"--width {width} is narrower than the image ({w} px)")
    x0 = (width - w) // 2
    canvas = np.zeros((h, width, 3), np.uint8)
    canvas[:, x0:x0 + w] = image
    known = np.zeros((h, width), bool)
    known[:, x0:x0 + w] = True
    return canvas, known


def _grower(name: str, device: str):
    from .growth import UnknownGrower, make_grower
    from .growth.checkpoint import CheckpointError

    try:
        return make_grower(name, device=device)
    except (UnknownGrower, CheckpointError, ValueError) as err:
        raise InputError(str(err)) from None


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--image", required=True, help="input image")
    parser.add_argument("--output", required=True, help="output image (extension sets the format)")
    parser.add_argument("--grower", default="rule-tex",
                        help="grower name: rule-tex (structure, then the picture's own texture), "
                             "nca-tex, or any live grower (nca, telea, blend, ...)")
    add_device_argument(parser)


def _fill(command: str, args: argparse.Namespace, load) -> str:
    """Read, grow and write, with progress on stderr once the input is known to be good;
    returns the line saying what was written. ``load()`` returns (canvas, known mask)."""
    import cv2

    from .progress import Progress

    t0 = time.perf_counter()
    canvas, known = load()
    out_path = Path(args.output)
    if out_path.parent and not out_path.parent.is_dir():
        raise InputError(f"{args.output}: folder {out_path.parent} does not exist")
    if not cv2.haveImageWriter(str(out_path)):
        raise InputError(f"{args.output}: cannot write an image there (unknown extension?)")
    grower = _grower(args.grower, args.device)
    with Progress(2, command) as bar:
        out = grower.fill(canvas, known)
        bar.update(1, note=f"grown with {args.grower}")
        write_rgb(args.output, out)
        bar.update(1, note="written")
    share = 100.0 * float((~known).mean())
    return (f"wrote {args.output} ({out.shape[1]}x{out.shape[0]}, {share:.0f} % grown with {args.grower}, "
            f"{time.perf_counter() - t0:.1f} s)")


def add_inpaint_arguments(parser: argparse.ArgumentParser) -> None:
    _common(parser)
    parser.add_argument("--mask", required=True, help="same-size image, non-zero = missing")


def add_extend_arguments(parser: argparse.ArgumentParser) -> None:
    _common(parser)
    parser.add_argument("--width", required=True, type=int, help="output width in pixels")


def inpaint_main(args: argparse.Namespace) -> int:
    def load():
        image = read_rgb(args.image)
        return image, ~read_mask(args.mask, image.shape[:2])

    try:
        print(_fill("inpaint", args, load), flush=True)
    except InputError as err:
        print(f"roomfuse inpaint: {err}", file=sys.stderr)
        return 2
    return 0


def extend_main(args: argparse.Namespace) -> int:
    try:
        print(_fill("extend", args, lambda: extend_canvas(read_rgb(args.image), args.width)), flush=True)
    except InputError as err:
        print(f"roomfuse extend: {err}", file=sys.stderr)
        return 2
    return 0
