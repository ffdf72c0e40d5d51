"""Where the dense step works: square tiles of cells that hold something to update.

The gathered step (``rule.Cells``) indexes every unknown cell's 3x3 neighbourhood, which
suits a CPU: the work follows the hole exactly. On an accelerator the better shape is a
dense one: cut the canvas into ``size`` x ``size`` tiles, keep those holding at least one
cell to update (an unknown cell that is not skipped), read each with a one-cell border
into an (n, C, size + 2, size + 2) batch, step the batch with convolutions and matmuls,
and write the inner cells back. Known regions cost nothing; a tile on the edge of a hole
costs as much as one inside it.

Shapes stay static: the tile count is rounded up to a few sizes per octave (``bucket``)
with spare tiles that read real cells and write only to a spare row at the end of the
state, so a frame whose hole changes a little reuses the last frame's CUDA graph or
compiled kernel instead of building a new one.

Planning (which tiles) happens wherever the masks live: the grower plans on the host,
from the masks it already has there, and sends the device only the tile coordinates
and the flat mask, so planning never waits on the device. The index arithmetic
(``tile_index``) is plain tensor code that can run inside a CUDA graph.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

# 8 x 8: the holes are long thin gaps and silhouettes. On the team's canvases 8-cell
# tiles hold about 2x the cells to update, 16-cell tiles 3-4x, and their one-cell
# borders add 56 % and 27 % to what is read: 8 does less work and moves fewer bytes.
TILE = 8


def bucket(n: int) -> int:
    """``n`` rounded up to one of four sizes per octave (8, 10, 12, 14, 16, 20, 24, ...):
    at most a quarter of the work spent on spare tiles, few distinct shapes."""
    if n <= 8:
        return 8
    step = 1 << (n.bit_length() - 3)
    return -(-n // step) * step


@dataclass(frozen=True)
class Tiles:
    """The tiles of a (B, 1, H, W) canvas batch that hold a cell to update.

    ``coords`` (count, 3) long: (canvas, tile row, tile column) of each tile, then spare
    rows of -1 up to a bucket size. ``todo`` (B*H*W + 1,) bool: the cells to update,
    flattened like a channels-last state, with the spare cell last (never updated).
    ``plan`` builds one from the masks, wherever they are; the grower plans on the host
    and rebuilds the plan from its two tensors on the device, inside a recorded graph."""

    coords: torch.Tensor
    todo: torch.Tensor
    size: int = TILE

    @classmethod
    def plan(cls, known: torch.Tensor, skip: torch.Tensor | None = None, size: int = TILE) -> "Tiles":
        b, _, h, w = known.shape
        todo = ~known[:, 0] if skip is None else ~known[:, 0] & ~skip[:, 0]
        rows, cols = -(-h // size), -(-w // size)
        grid = todo.new_zeros(b, rows * size, cols * size)
        grid[:, :h, :w] = todo
        occupied = grid.view(b, rows, size, cols, size).any(4).any(2)
        coords = occupied.nonzero()
        used = int(coords.shape[0])
        spare = coords.new_full((bucket(used) - used, 3), -1)
        return cls(torch.cat([coords, spare]), torch.cat([todo.reshape(-1), todo.new_zeros(1)]), size)

    @property
    def count(self) -> int:
        return int(self.coords.shape[0])

    @property
    def used(self) -> int:
        """Tiles that hold work (the rest are spare). Reads ``coords``: ask on the host."""
        return int((self.coords[:, 0] >= 0).sum())


def tile_index(coords: torch.Tensor, shape: tuple[int, int, int], size: int):
    """Flat indices into a channels-last state of B*H*W rows plus one spare row.

    Returns (read (n*(size+2)^2,), write (n*size^2,), ys (n, size), xs (n, size), canvas
    (n,)). ``read`` covers each tile and its one-cell border, clamped to the canvas edge
    (the replicate padding of ``GrowthNet.perceive``); ``write`` covers the inner cells,
    with cells past the canvas edge and whole spare tiles sent to the spare row, so a
    tile's write never lands on a cell another tile owns."""
    b, h, w = shape
    spare_row = b * h * w
    valid = coords[:, 0] >= 0
    canvas = coords[:, 0].clamp(min=0)
    r = torch.arange(-1, size + 1, device=coords.device)
    ys = coords[:, 1:2] * size + r                                   # (n, size + 2)
    xs = coords[:, 2:3] * size + r
    base = canvas.view(-1, 1, 1) * h
    read = (base + ys.clamp(0, h - 1)[:, :, None]) * w + xs.clamp(0, w - 1)[:, None, :]
    iy, ix = ys[:, 1:-1], xs[:, 1:-1]
    inside = (iy < h)[:, :, None] & (ix < w)[:, None, :] & valid.view(-1, 1, 1)
    write = torch.where(inside, (base + iy[:, :, None]) * w + ix[:, None, :],
                        torch.full_like(inside, spare_row, dtype=torch.long))
    return read.reshape(-1), write.reshape(-1), iy, ix, canvas
