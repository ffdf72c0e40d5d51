"""``roomfuse inpaint`` and ``roomfuse extend``: the growers on single images.

    roomfuse inpaint --image room.jpg --mask hole.png --output filled.png [--grower nca]
    roomfuse extend --image webcam.jpg --width 853 --output wide.png [--grower nca]

The mask is any image of the same size; non-zero pixels are missing. ``extend`` centres
the image on a wider canvas (e.g. a 4:3 frame to 16:9) and grows the margins. Bad input
(a missing or undecodable file, a size mismatch) is one line on stderr naming the file
and the reason, exit status 2.
"""
from __future__ import annotations

import argparse
import sys
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
    parser.add_argument("--grower", default="nca", help="grower name (default: nca)")
    add_device_argument(parser)


def add_inpaint_arguments(parser: argparse.ArgumentParser) -> None:
    _common(parser)
    parser.add_argument("--mask", required=True, help="same-size image, non-zero = missing")


def add_extend_arguments(parser: argparse.ArgumentParser) -> None:
    _common(parser)
    parser.add_argument("--width", required=True, type=int, help="output width in pixels")


def inpaint_main(args: argparse.Namespace) -> int:
    try:
        image = read_rgb(args.image)
        missing = read_mask(args.mask, image.shape[:2])
        out = _grower(args.grower, args.device).fill(image, ~missing)
        write_rgb(args.output, out)
    except InputError as err:
        print(f"roomfuse inpaint: {err}", file=sys.stderr)
        return 2
    return 0


def extend_main(args: argparse.Namespace) -> int:
    try:
        image = read_rgb(args.image)
        canvas, known = extend_canvas(image, args.width)
        out = _grower(args.grower, args.device).fill(canvas, known)
        write_rgb(args.output, out)
    except InputError as err:
        print(f"roomfuse extend: {err}", file=sys.stderr)
        return 2
    return 0
