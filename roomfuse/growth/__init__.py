"""Growers: what fills the gaps between feeds and the background the people hide.

``make_grower(name)`` builds one by name; the pipeline, ``render``, ``bench``, ``serve``,
``inpaint`` and ``eval`` all pick growers through it (``--grower NAME``).

The growth model's modules, each building only on those before it:
``model`` (the network, torch only) and ``tiles`` (where the dense step works);
``rule`` (the growth rule, its carried ``GrowthState`` and its one step loop);
``staging`` (host to device and back) and ``cuda_graph`` (recorded replays);
``nca_grower`` (the pipeline stage); ``batch`` (many rooms on one device).
``scores`` (PSNR/SSIM, flicker) and ``train`` sit beside them; classical fills in
``classical``.
"""
from __future__ import annotations

from ..errors import RoomfuseError

from typing import Callable

from .base import Grower
from .classical import BlendGrower, TeleaGrower


def _nca(device: str = "auto", threads: int | None = None, **kw) -> Grower:
    import torch

    from .nca_grower import NCAGrower  # imports torch; only when asked for

    if threads:
        torch.set_num_threads(threads)
    return NCAGrower(device=device, **kw)


def _rule(device: str = "auto", threads: int | None = None, **kw) -> Grower:
    """The growth rule with its network at zero: exactly the rule's own fill (the row
    blend at 1/4, carried from frame to frame), what the learned network is measured
    against."""
    from .model import GrowthNet, NCAConfig
    from .rule import RuleConfig

    return _nca(device=device, threads=threads, net=GrowthNet(NCAConfig()), rule=RuleConfig(), **kw)


def _joined(structure: Callable[..., Grower], name: str) -> Callable[..., Grower]:
    """A still-image fill: ``structure`` (a grower) first, then the rooms' texture."""
    def make(device: str = "auto", threads: int | None = None, **kw) -> Grower:
        from .joiner import Joiner

        return Joiner(structure(device=device, threads=threads, **kw), name=name)
    return make


def _peer(name: str, **kw) -> Grower:
    from . import peers

    return getattr(peers, name)(**kw)


def _classical(cls, **fixed) -> Callable[..., Grower]:
    # Classical fills run on the CPU through OpenCV: device and threads do not apply.
    return lambda device="auto", threads=None, **kw: cls(**fixed, **kw)


# name -> factory(device=..., threads=..., **options). Reduced-resolution entries are
# the live ones.
GROWERS: dict[str, Callable[..., Grower]] = {
    "telea": _classical(TeleaGrower, scale=4, method="telea"),
    "ns": _classical(TeleaGrower, scale=4, method="ns"),
    "telea-full": _classical(TeleaGrower, scale=1, method="telea"),
    "ns-full": _classical(TeleaGrower, scale=1, method="ns"),
    "blend": _classical(BlendGrower, scale=1),
    "nca": _nca,
    "rule": _rule,
    # Still fills (about a second a picture on a CPU): structure, then texture. What
    # the room fill builds the joined background with (roomfill.py).
    "rule-tex": _joined(_rule, "rule-tex"),
    "nca-tex": _joined(_nca, "nca-tex"),
    # Peers for eval (seconds per picture): PatchMatch needs pypatchmatch (roomfuse[test]).
    "patchmatch": lambda device="auto", threads=None, **kw: _peer("PatchMatchGrower", **kw),
    "fsr": lambda device="auto", threads=None, **kw: _peer("FSRGrower", **kw),
}

DEFAULT_GROWER = "nca"


class UnknownGrower(RoomfuseError, ValueError):
    pass


def make_grower(name: str, device: str = "auto", threads: int | None = None, **options) -> Grower:
    """``threads``: torch intra-op threads for a learned grower (process-wide in torch,
    so only the live pipeline sets it); None leaves torch's setting alone."""
    try:
        factory = GROWERS[name]
    except KeyError:
        raise UnknownGrower(
            f"unknown grower {name!r}; choose one of: {', '.join(GROWERS)}") from None
    return factory(device=device, threads=threads, **options)


__all__ = ["Grower", "GROWERS", "DEFAULT_GROWER", "make_grower", "UnknownGrower",
           "TeleaGrower", "BlendGrower"]
