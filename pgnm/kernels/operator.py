"""The per-axis mask operator A: nearest upsampling G -> S, then the reflect-padded blur.

Upsampling and blurring both act on rows and columns separately and both are linear, so the
reference chain collapses exactly into

    mask_b = A @ N_b @ A.T        N_b: the (G, G) cell grid of image b,  A: (S, G)

A is built by pushing identity matrices through the same 1-D operations the reference uses
(``F.interpolate`` in nearest mode, ``F.pad`` in reflect mode, a convolution with the truncated
Gaussian), in float64, so it inherits their exact index rules, including G not dividing S
(64 -> 224 gives cells of 3 and 4 px) and the reflection at the borders.

A is banded: row i only touches the few cells under the blur window around pixel i. The fused
CPU kernel uses that by cutting A into row tiles, each with the narrow strip of columns it
touches (``BandedOperator``); the Triton kernel reads the first and last touched cell of each
row (``row_extents``). All of these are cached per (G, S, kernel, sigma[, dtype, device]).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from pgnm.method.mask import check_blur, gaussian_kernel1d


def check_settings(grid: int, size: int, kernel_size: int, sigma: float) -> None:
    """Raise a ValueError naming the argument for any setting the reference cannot run."""
    check_blur(kernel_size, sigma, size, grid)


@functools.lru_cache(maxsize=64)
def axis_operator(grid: int, size: int, kernel_size: int, sigma: float) -> Tensor:
    """A as a (size, grid) float64 CPU tensor. Cached and shared: do not modify it."""
    check_settings(grid, size, kernel_size, sigma)
    cells = torch.eye(grid, dtype=torch.float64)
    if grid == size:
        upsample = cells  # the reference skips interpolation when the sizes agree
    else:
        # Column j of the upsampling matrix is cell j's indicator, upsampled along one axis.
        # Interpolating (1, G) -> (1, S) runs the same per-axis index rule as the 2-D call.
        stretched = F.interpolate(cells.view(grid, 1, 1, grid), size=(1, size), mode="nearest")
        upsample = stretched.view(grid, size).T
    pad = kernel_size // 2
    weights = gaussian_kernel1d(kernel_size, sigma, torch.float64).view(1, 1, kernel_size)
    pixels = torch.eye(size, dtype=torch.float64).view(size, 1, size)
    blurred = F.conv1d(F.pad(pixels, (pad, pad), mode="reflect"), weights).view(size, size)
    # blurred[j] is the blur of pixel j's indicator, i.e. column j of the blur matrix.
    return blurred.T @ upsample


def row_extents(operator: Tensor) -> tuple[Tensor, Tensor]:
    """First and last nonzero column of every row of ``operator`` (int64, on its device)."""
    nonzero = operator != 0
    columns = torch.arange(operator.shape[1], device=operator.device)
    first = torch.where(nonzero, columns, operator.shape[1]).amin(dim=1)
    last = torch.where(nonzero, columns, -1).amax(dim=1)
    return first, last


@dataclass(frozen=True)
class BandedOperator:
    """A cut into row tiles of ``rows`` rows; tile t uses only cells ``columns[t*w:(t+1)*w]``.

    ``tiles[t]`` is A[t*rows:(t+1)*rows, start_t:start_t+w] with zero rows past the image, so
    ``tiles[t] @ X[columns of tile t]`` is exactly rows t*rows.. of ``A @ X``.
    """

    tiles: Tensor  # (T, rows, w)
    tiles_t: Tensor  # (T, w, rows), contiguous: the right-hand factor for the column pass
    columns: Tensor  # (T * w,) int64 cell indices, tile by tile
    padded_size: int  # T * rows >= S

    @property
    def width(self) -> int:
        return self.tiles.shape[2]


def _tile_rows(size: int) -> int:
    # 16-row tiles: measured fastest on CPU for 64 -> 224 (wider tiles touch more zero cells,
    # narrower ones make the matrix products too small to run efficiently).
    return min(16, size)


@functools.lru_cache(maxsize=64)
def banded_operator(
    grid: int, size: int, kernel_size: int, sigma: float, dtype: torch.dtype, device: torch.device
) -> BandedOperator:
    """The tiled, banded form of A in ``dtype`` on ``device``. Cached and shared."""
    dense = axis_operator(grid, size, kernel_size, sigma)
    rows = _tile_rows(size)
    count = math.ceil(size / rows)
    padded = torch.zeros(count * rows, grid, dtype=torch.float64)
    padded[:size] = dense
    first, last = row_extents(dense)
    starts, width = [], 1
    for t in range(count):
        lo = int(first[t * rows : (t + 1) * rows].min())
        hi = int(last[t * rows : (t + 1) * rows].max())
        starts.append(lo)
        width = max(width, hi - lo + 1)
    starts = [min(lo, grid - width) for lo in starts]  # one common width, kept inside the grid
    tiles = torch.stack(
        [padded[t * rows : (t + 1) * rows, lo : lo + width] for t, lo in enumerate(starts)]
    )
    columns = (torch.tensor(starts)[:, None] + torch.arange(width)).reshape(-1)
    return BandedOperator(
        tiles=tiles.to(dtype=dtype, device=device),
        tiles_t=tiles.transpose(1, 2).contiguous().to(dtype=dtype, device=device),
        columns=columns.to(device),
        padded_size=count * rows,
    )


def check_inputs(images: Tensor, values: Tensor, kernel_size: int, sigma: float) -> int:
    """Validate an ``apply_mask`` call; returns the grid side G."""
    if not isinstance(images, Tensor) or images.dim() != 4:
        shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise ValueError(f"images must be a (B, C, S, S) tensor, got {shape}")
    if not images.is_floating_point():
        raise ValueError(f"images must be floating point, got {images.dtype}")
    if images.shape[-1] != images.shape[-2]:
        raise ValueError(f"expected square images, got {tuple(images.shape[-2:])}")
    if not isinstance(values, Tensor) or values.dim() != 2 or values.shape[0] != images.shape[0]:
        shape = tuple(values.shape) if isinstance(values, Tensor) else type(values).__name__
        raise ValueError(f"values must be (B, G*G) with B = {images.shape[0]} images, got {shape}")
    if not values.is_floating_point():
        raise ValueError(f"values must be floating point, got {values.dtype}")
    if values.device != images.device:
        raise ValueError(f"values are on {values.device} but images on {images.device}")
    grid = math.isqrt(values.shape[1])
    if grid * grid != values.shape[1] or grid == 0:
        raise ValueError(f"expected G*G cell values per image, got {values.shape[1]}")
    check_settings(grid, images.shape[-1], kernel_size, sigma)
    return grid
