from __future__ import annotations

import itertools

import pytest
import torch

from pgnm.kernels.operator import (
    axis_operator,
    banded_operator,
    check_inputs,
    check_settings,
    row_extents,
)
from pgnm.method.mask import build_mask

SETTINGS = [
    (grid, size, kernel, sigma)
    for grid, size, kernel, sigma in itertools.product(
        [1, 7, 8, 16, 64], [16, 32, 56, 224], [1, 3, 5, 13], [0.8, 2.0, 6.0]
    )
]


@pytest.mark.parametrize(("grid", "size"), [(8, 32), (64, 224), (7, 56), (16, 16), (64, 32)])
def test_a_n_at_is_the_reference_mask(grid, size):
    values = torch.rand(3, grid * grid, dtype=torch.float64)
    a = axis_operator(grid, size, 13, 6.0)
    ours = a @ values.view(3, grid, grid) @ a.T  # float64: only rounding differs
    torch.testing.assert_close(ours, build_mask(values, size, 13, 6.0)[:, 0], atol=1e-12, rtol=0)


def test_rows_sum_to_one_and_nearest_gives_3_and_4_pixel_cells():
    a = axis_operator(64, 224, 1, 1.0)  # no blur: A is the upsampling matrix itself
    assert set(a.unique().tolist()) == {0.0, 1.0}
    assert set(a.sum(0).tolist()) == {3.0, 4.0}
    blurred = axis_operator(64, 224, 13, 6.0)
    torch.testing.assert_close(blurred.sum(1), torch.ones(224, dtype=torch.float64))


def test_operator_is_cached():
    assert axis_operator(8, 32, 5, 2.0) is axis_operator(8, 32, 5, 2.0)
    f32 = banded_operator(8, 32, 5, 2.0, torch.float32, torch.device("cpu"))
    assert f32 is banded_operator(8, 32, 5, 2.0, torch.float32, torch.device("cpu"))
    assert banded_operator(8, 32, 5, 2.0, torch.float64, torch.device("cpu")).tiles.dtype == (
        torch.float64
    )


@pytest.mark.parametrize(("grid", "size", "kernel", "sigma"), SETTINGS[::7])
def test_banded_tiles_reassemble_a(grid, size, kernel, sigma):
    if kernel // 2 >= size:
        pytest.skip("reflect padding needs kernel // 2 < size")
    dense = axis_operator(grid, size, kernel, sigma)
    op = banded_operator(grid, size, kernel, sigma, torch.float64, torch.device("cpu"))
    count, rows, width = op.tiles.shape
    rebuilt = torch.zeros(op.padded_size, grid, dtype=torch.float64)
    for t in range(count):
        rebuilt[t * rows : (t + 1) * rows, op.columns[t * width : (t + 1) * width]] = op.tiles[t]
    assert torch.equal(rebuilt[:size], dense) and not rebuilt[size:].any()
    torch.testing.assert_close(op.tiles_t, op.tiles.transpose(1, 2))


def test_band_is_narrow_and_monotone_at_paper_settings():
    first, last = row_extents(axis_operator(64, 224, 13, 6.0))
    assert (first.diff() >= 0).all() and (last.diff() >= 0).all()
    assert int((last - first).max()) + 1 <= 5  # a 13-px window covers at most 5 cells of 3-4 px
    op = banded_operator(64, 224, 13, 6.0, torch.float32, torch.device("cpu"))
    assert op.width < 12  # 16-row tiles touch ~9 of the 64 cells


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((0, 32, 5, 1.0), "grid must be a positive integer"),
        ((8, 32, 4, 1.0), "kernel_size must be a positive odd number"),
        ((8, 32, 5, 0.0), "sigma must be a positive number"),
        ((8, 32, 5, float("inf")), "sigma must be finite"),
        ((8, 6, 13, 1.0), "kernel_size 13 needs images larger than 6 px"),
        ((8, 32, 5.0, 1.0), "kernel_size must be a positive integer"),
    ],
)
def test_bad_settings_name_the_argument(args, message):
    with pytest.raises(ValueError, match=message):
        check_settings(*args)


@pytest.mark.parametrize(
    ("images", "values", "message"),
    [
        (torch.rand(3, 32, 32), torch.rand(1, 64), "images must be a \\(B, C, S, S\\) tensor"),
        (torch.ones(1, 3, 32, 32, dtype=torch.int64), torch.rand(1, 64), "images must be floating"),
        (torch.rand(1, 3, 32, 40), torch.rand(1, 64), "square images"),
        (torch.rand(2, 3, 32, 32), torch.rand(1, 64), "values must be \\(B, G\\*G\\) with B = 2"),
        (torch.rand(1, 3, 32, 32), torch.rand(1, 10), "G\\*G cell values"),
        (torch.rand(1, 3, 32, 32), torch.ones(1, 64, dtype=torch.int64), "values must be floating"),
    ],
)
def test_bad_inputs_name_the_argument(images, values, message):
    with pytest.raises(ValueError, match=message):
        check_inputs(images, values, 5, 1.0)
