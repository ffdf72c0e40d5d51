"""Value types for command-line flags.

Each returns a parser for argparse's ``type=``: a bad value becomes argparse's one-line
error naming the flag (``argument --fps: must be 1-60, got 90``) and exit code 2.
"""

from __future__ import annotations

import argparse
from typing import Callable, TypeVar

N = TypeVar("N", int, float)


def number(kind: Callable[[str], N], *, above: N | None = None, low: N | None = None,
           high: N | None = None) -> Callable[[str], N]:
    """A number of ``kind`` that is > ``above``, or within ``low``..``high`` (inclusive)."""
    def parse(text: str) -> N:
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}, "
                                             f"got {text!r}") from None
        if above is not None and not v > above:
            raise argparse.ArgumentTypeError(f"must be > {above}, got {text}")
        if low is not None and high is not None and not low <= v <= high:
            raise argparse.ArgumentTypeError(f"must be {low}-{high}, got {text}")
        if low is not None and high is None and not v >= low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {text}")
        return v
    return parse


positive_int = number(int, above=0)
non_negative_int = number(int, low=0)
positive_float = number(float, above=0)


def size(*, low: int = 1, high: int | None = None, even: bool = False) -> Callable[[str], tuple[int, int]]:
    """WIDTHxHEIGHT, each side in ``low``..``high`` pixels (and even, for video encoders)."""
    limits = f"{low}-{high} px" if high else f">= {low} px"
    rule = f"WIDTHxHEIGHT{', even' if even else ''}, {limits}"

    def parse(text: str) -> tuple[int, int]:
        w, sep, h = text.lower().partition("x")
        if not (sep and w.isdigit() and h.isdigit()):
            raise argparse.ArgumentTypeError(f"must be WIDTHxHEIGHT such as 1280x720, got {text!r}")
        dims = (int(w), int(h))
        if min(dims) < low or (high and max(dims) > high) or (even and (dims[0] % 2 or dims[1] % 2)):
            raise argparse.ArgumentTypeError(f"must be {rule}, got {text!r}")
        return dims
    return parse


DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("float32", "float16")


def add_device_argument(p: argparse.ArgumentParser, what: str = "the growth model") -> None:
    """``--device``, the same in every command. Only the name is checked here: whether
    CUDA is really there is known once torch is imported, when the grower is built
    (``growth.nca_grower.resolve_device``), which raises a ``ConfigError``."""
    p.add_argument("--device", choices=DEVICES, default="auto",
                   help=f"where {what} runs (auto: CUDA when present)")


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    """``--checkpoint`` and ``--precision``: which growth-model weights, and in what precision."""
    p.add_argument("--checkpoint", default=None, metavar="FILE",
                   help="growth-model weights (default: the ones shipped with roomfuse)")
    p.add_argument("--precision", choices=PRECISIONS, default="float32",
                   help="growth-model arithmetic; float16 is honoured on CUDA only, where it changes "
                        "results slightly")
