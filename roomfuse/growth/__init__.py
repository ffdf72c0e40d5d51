"""Growers: what fills the gaps between feeds and the background the people hide.

``make_grower(name)`` builds one by name; the pipeline, ``render``, ``bench``, ``serve``,
``inpaint`` and ``eval`` all pick growers through it (``--grower NAME``).
"""
from __future__ import annotations

from ..errors import RoomfuseError

from typing import Callable

from .base import Grower
from .classical import BlendGrower, TeleaGrower


def _nca(device: str = "auto", **kw) -> Grower:
    from .nca_grower import NCAGrower  # imports torch; only when asked for

    return NCAGrower(device=device, **kw)


# name -> factory(device=..., **options). Reduced-resolution entries are the live ones.
GROWERS: dict[str, Callable[..., Grower]] = {
    "telea": lambda device="auto", **kw: TeleaGrower(scale=4, method="telea", **kw),
    "ns": lambda device="auto", **kw: TeleaGrower(scale=4, method="ns", **kw),
    "telea-full": lambda device="auto", **kw: TeleaGrower(scale=1, method="telea", **kw),
    "ns-full": lambda device="auto", **kw: TeleaGrower(scale=1, method="ns", **kw),
    "blend": lambda device="auto", **kw: BlendGrower(scale=1, **kw),
    "nca": _nca,
}

DEFAULT_GROWER = "telea"


class UnknownGrower(RoomfuseError, ValueError):
    pass


def make_grower(name: str, device: str = "auto", **options) -> Grower:
    try:
        factory = GROWERS[name]
    except KeyError:
        raise UnknownGrower(
            f"unknown grower {name!r}; choose one of: {', '.join(GROWERS)}") from None
    return factory(device=device, **options)


__all__ = ["Grower", "GROWERS", "DEFAULT_GROWER", "make_grower", "UnknownGrower",
           "TeleaGrower", "BlendGrower"]
