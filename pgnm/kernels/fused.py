"""The exact fast path: ``mask_b = A @ N_b @ A.T`` with a banded A, then one multiply.

On a 2-core CPU at 32 x 3 x 224 x 224 the reference chain spends ~100 ms in a 13 x 13
single-channel convolution; here the mask costs two small batched matrix products over the
64 x 64 grid and the image is read once and written once (README.md has the measurements).

Layout choices, so that no full-size tensor is rearranged:
  * the column pass runs first, on the small grid: P[g, b, j] = sum_c N[b, g, c] A[j, c];
  * the row pass treats the batch as extra columns: M[i, (b, j)] = sum_g A[i, g] P[g, (b, j)],
    one product per 16-row tile of A over just the strip of cells that tile touches;
  * M comes out as [i, b, j]; the multiply reads it through a permuted view (rows of S
    contiguous values), a few images at a time so that the mask stays in cache between the
    product that writes it and the multiply that reads it. The full mask is never stored.

The mask is computed in float32 (float64 for float64 images) whatever the image dtype. For
fp16/bf16 images it is rounded once to the image dtype before the multiply; the reference
computes the whole blur in the low precision, so this is at least as accurate.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from pgnm.kernels.operator import BandedOperator, banded_operator, check_inputs

# The mask is produced and consumed in chunks of images whose mask fits in about 1 MiB, so it
# stays in cache between the matrix product that writes it and the multiply that reads it.
_CHUNK_BYTES = 1 << 20


def _compute_dtype(images: Tensor) -> torch.dtype:
    return torch.float64 if images.dtype == torch.float64 else torch.float32


def _row_pass_inputs(
    values: Tensor, size: int, kernel_size: int, sigma: float, dtype: torch.dtype
) -> tuple[BandedOperator, Tensor]:
    """The banded A and the (T, w, B*S') strips of P = N A^T that each row tile multiplies."""
    batch, cells = values.shape
    grid = math.isqrt(cells)
    op = banded_operator(grid, size, kernel_size, float(sigma), dtype, values.device)
    count, _, width = op.tiles.shape
    grid_values = values.to(dtype).reshape(batch, grid, grid)

    # Column pass on the grid, tile by tile: (T, G*B, w) @ (T, w, rows) -> [J, (g, b), s].
    by_row = grid_values.transpose(0, 1).reshape(grid * batch, grid)
    strips = by_row.index_select(1, op.columns).view(grid * batch, count, width)
    partial = torch.bmm(strips.transpose(0, 1), op.tiles_t)
    partial = partial.permute(1, 0, 2).reshape(grid, batch * op.padded_size)  # [g, (b, j)]
    return op, partial.index_select(0, op.columns).view(count, width, batch * op.padded_size)


def _as_mask(rows_first: Tensor, images: int, size: int) -> Tensor:
    """[i, (b, j)] product -> (B, 1, S, S) view, rows of S contiguous values."""
    padded = rows_first.shape[0] * rows_first.shape[1]
    square = rows_first.view(padded, images, padded)[:size, :, :size]
    return square.permute(1, 0, 2).unsqueeze(1)


def build_mask(values: Tensor, size: int, kernel_size: int = 13, sigma: float = 6.0) -> Tensor:
    """(B, G*G) cell values -> contiguous (B, 1, size, size) mask (float32, or float64)."""
    probe = torch.empty(values.shape[0], 1, size, size, dtype=values.dtype, device=values.device)
    check_inputs(probe, values, kernel_size, sigma)
    dtype = torch.float64 if values.dtype == torch.float64 else torch.float32
    op, strips = _row_pass_inputs(values, size, kernel_size, sigma, dtype)
    return _as_mask(torch.bmm(op.tiles, strips), values.shape[0], size).contiguous()


def apply_mask(images: Tensor, values: Tensor, kernel_size: int = 13, sigma: float = 6.0) -> Tensor:
    """Same result as ``reference.apply_mask``; output keeps the images' dtype and layout."""
    check_inputs(images, values, kernel_size, sigma)
    batch, size = images.shape[0], images.shape[-1]
    dtype = _compute_dtype(images)
    op, strips = _row_pass_inputs(values, size, kernel_size, sigma, dtype)
    if torch.is_grad_enabled() and (images.requires_grad or values.requires_grad):
        # ``out=`` records no gradient: this path builds the whole mask but stays differentiable.
        mask = _as_mask(torch.bmm(op.tiles, strips), batch, size)
        return (images * mask).to(images.dtype)

    out = torch.empty_like(images)  # same strides: NCHW stays NCHW, channels-last stays so
    padded = op.padded_size
    per_image = padded * padded * strips.element_size()
    chunk = max(1, min(batch, _CHUNK_BYTES // per_image))
    buffer = strips.new_empty(op.tiles.shape[0], op.tiles.shape[1], chunk * padded)
    for start in range(0, batch, chunk):
        stop = min(start + chunk, batch)
        rows_first = buffer[:, :, : (stop - start) * padded]
        torch.bmm(op.tiles, strips[:, :, start * padded : stop * padded], out=rows_first)
        mask = _as_mask(rows_first, stop - start, size)
        if mask.dtype != images.dtype:
            # fp16/bf16: round the exact mask once (the reference builds it in low precision),
            # since a mixed-dtype multiply is an order of magnitude slower on CPU.
            mask = mask.to(images.dtype)
        torch.mul(images[start:stop], mask, out=out[start:stop])
    return out
