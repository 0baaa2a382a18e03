"""Triton kernel for CUDA: one pass over image tiles, mask built on the fly from the grid.

Each program owns one (BLOCK_I x BLOCK_J) pixel tile of one image. It builds that tile of

    mask = A[rows] @ N_b @ A[cols].T

from the per-axis operator A (see ``operator.py``) and the image's G x G cell values, reading
only the strip of cells the tile touches (``first``/``last`` give each row's extent), then
multiplies every channel of the tile by it: the image is read once and written once and the
mask never leaves registers. Products use IEEE fp32 (``input_precision="ieee"``) because
TF32 would cost ~1e-3 of accuracy; the arithmetic is tiny next to the memory traffic.

Importing this module imports triton, so ``pgnm.kernels`` only imports it on demand. Whether
triton compiles for the GPU or runs its Python interpreter (``TRITON_INTERPRET=1``, how the
CPU tests run it) is fixed when this module is first imported.
"""

from __future__ import annotations

import functools

import torch
import triton
import triton.language as tl
from torch import Tensor

from pgnm.kernels.operator import axis_operator, check_inputs, row_extents

# Whether this module's kernels were built for the interpreter (CPU tensors) or for the GPU.
# The kernel sticks to triton's builtins (tl.full, not the @jit-defined tl.zeros or tl.cdiv):
# those are built when triton is first imported, maybe before TRITON_INTERPRET was set, and
# then cannot run inside an interpreted kernel.
INTERPRETED = bool(triton.knobs.runtime.interpret)

# Cells per step of the K loop; 16 is the smallest K that tl.dot accepts.
CELLS = 16

# Candidate tile shapes for the autotuner. The interpreter cannot benchmark, so it runs
# ``INTERPRETER_CONFIG``; the tests run every entry of CONFIGS through it as well.
CONFIGS = [
    triton.Config({"BLOCK_I": 32, "BLOCK_J": 32}, num_warps=4),
    triton.Config({"BLOCK_I": 32, "BLOCK_J": 64}, num_warps=4),
    triton.Config({"BLOCK_I": 64, "BLOCK_J": 64}, num_warps=4),
    triton.Config({"BLOCK_I": 64, "BLOCK_J": 64}, num_warps=8),
    triton.Config({"BLOCK_I": 64, "BLOCK_J": 128}, num_warps=8),
]
INTERPRETER_CONFIG = {"BLOCK_I": 16, "BLOCK_J": 16}

SUPPORTED_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


@triton.jit
def _masked_product(
    image_ptr,
    out_ptr,
    values_ptr,
    operator_ptr,
    first_ptr,
    last_ptr,
    channels,
    size,
    grid,
    image_sb,
    image_sc,
    image_sh,
    image_sw,
    out_sb,
    out_sc,
    out_sh,
    out_sw,
    BLOCK_I: tl.constexpr,
    BLOCK_J: tl.constexpr,
    CELLS: tl.constexpr,
):
    tile = tl.program_id(0)
    image = tl.program_id(1).to(tl.int64)  # batch offsets can pass 2**31 elements
    tiles_j = (size + BLOCK_J - 1) // BLOCK_J
    tile_i = tile // tiles_j
    tile_j = tile % tiles_j
    rows = tile_i * BLOCK_I + tl.arange(0, BLOCK_I)
    cols = tile_j * BLOCK_J + tl.arange(0, BLOCK_J)
    row_in = rows < size
    col_in = cols < size

    # A's band moves monotonically, so the tile's cells run from its first row's first cell
    # to its last row's last cell. Cells past that (up to a multiple of CELLS) have A = 0.
    row_lo = tl.load(first_ptr + tile_i * BLOCK_I)
    row_hi = tl.load(last_ptr + tl.minimum(tile_i * BLOCK_I + BLOCK_I, size) - 1)
    col_lo = tl.load(first_ptr + tile_j * BLOCK_J)
    col_hi = tl.load(last_ptr + tl.minimum(tile_j * BLOCK_J + BLOCK_J, size) - 1)
    cell = tl.arange(0, CELLS)
    values_b = values_ptr + image * grid * grid

    mask = tl.full((BLOCK_I, BLOCK_J), 0.0, tl.float32)
    for ci in range(row_lo, row_hi + 1, CELLS):
        cells_i = ci + cell
        ci_in = cells_i < grid
        # inner = N[cells_i, strip] @ A[cols, strip].T, accumulated over the column strip
        inner = tl.full((CELLS, BLOCK_J), 0.0, tl.float32)
        for cj in range(col_lo, col_hi + 1, CELLS):
            cells_j = cj + cell
            cj_in = cells_j < grid
            n = tl.load(
                values_b + cells_i[:, None] * grid + cells_j[None, :],
                mask=ci_in[:, None] & cj_in[None, :],
                other=0.0,
            )
            a_cols = tl.load(
                operator_ptr + cols[None, :] * grid + cells_j[:, None],
                mask=cj_in[:, None] & col_in[None, :],
                other=0.0,
            )
            inner += tl.dot(n, a_cols, input_precision="ieee")
        a_rows = tl.load(
            operator_ptr + rows[:, None] * grid + cells_i[None, :],
            mask=row_in[:, None] & ci_in[None, :],
            other=0.0,
        )
        mask += tl.dot(a_rows, inner, input_precision="ieee")

    inside = row_in[:, None] & col_in[None, :]
    image_tile = image_ptr + image * image_sb + rows[:, None] * image_sh + cols[None, :] * image_sw
    out_tile = out_ptr + image * out_sb + rows[:, None] * out_sh + cols[None, :] * out_sw
    for c in range(channels):
        pixels = tl.load(image_tile + c * image_sc, mask=inside, other=0.0)
        product = pixels.to(tl.float32) * mask
        tl.store(out_tile + c * out_sc, product.to(out_ptr.dtype.element_ty), mask=inside)


_tuned_masked_product = triton.autotune(configs=CONFIGS, key=["channels", "size", "grid"])(
    _masked_product
)


@functools.lru_cache(maxsize=64)
def _operator_on(
    grid: int, size: int, kernel_size: int, sigma: float, device: torch.device
) -> tuple[Tensor, Tensor, Tensor]:
    """A as contiguous fp32 (S, G) plus int32 first/last cell per row, on ``device``."""
    dense = axis_operator(grid, size, kernel_size, sigma)
    first, last = row_extents(dense)
    if bool((first.diff() < 0).any() or (last.diff() < 0).any()):  # the kernel relies on it
        raise AssertionError("the mask operator's band is not monotone")
    return (
        dense.to(device=device, dtype=torch.float32).contiguous(),
        first.to(device=device, dtype=torch.int32),
        last.to(device=device, dtype=torch.int32),
    )


def apply_mask(
    images: Tensor,
    values: Tensor,
    kernel_size: int = 13,
    sigma: float = 6.0,
    config: dict[str, int] | None = None,
) -> Tensor:
    """Same result as ``reference.apply_mask`` (no autograd); dtype and layout are kept.

    ``config`` fixes the tile shape (BLOCK_I, BLOCK_J) instead of autotuning; the
    interpreter always needs one and uses ``INTERPRETER_CONFIG`` by default.
    """
    grid = check_inputs(images, values, kernel_size, sigma)
    if images.dtype not in SUPPORTED_DTYPES:
        raise ValueError(
            f"images: mask.kernel='triton' supports float32, float16 and bfloat16, "
            f"got {images.dtype}; use mask.kernel='fused'"
        )
    if images.is_cuda == INTERPRETED:
        where = "CUDA" if images.is_cuda else "CPU"
        raise ValueError(
            f"mask.kernel='triton': the kernel was loaded with TRITON_INTERPRET="
            f"{int(INTERPRETED)} and cannot run on {where} tensors"
        )
    if torch.is_grad_enabled() and (images.requires_grad or values.requires_grad):
        raise ValueError(
            "mask.kernel='triton' has no backward pass; use 'fused' (or 'auto') when the images "
            "or cell values need gradients"
        )
    batch, channels, size = images.shape[0], images.shape[1], images.shape[-1]
    operator, first, last = _operator_on(grid, size, kernel_size, float(sigma), images.device)
    cells = values.to(torch.float32).contiguous()
    out = torch.empty_like(images)
    if out.numel() == 0:
        return out
    args = (
        images,
        out,
        cells,
        operator,
        first,
        last,
        channels,
        size,
        grid,
        *images.stride(),
        *out.stride(),
    )
    if config is None and INTERPRETED:
        config = INTERPRETER_CONFIG
    if config is None:

        def launch_grid(meta: dict[str, int]) -> tuple[int, int]:
            return (triton.cdiv(size, meta["BLOCK_I"]) * triton.cdiv(size, meta["BLOCK_J"]), batch)

        _tuned_masked_product[launch_grid](*args, CELLS=CELLS)
    else:
        tiles = triton.cdiv(size, config["BLOCK_I"]) * triton.cdiv(size, config["BLOCK_J"])
        _masked_product[(tiles, batch)](
            *args, BLOCK_I=config["BLOCK_I"], BLOCK_J=config["BLOCK_J"], CELLS=CELLS
        )
    return out
