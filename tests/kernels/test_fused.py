from __future__ import annotations

import itertools

import pytest
import torch

from pgnm.kernels import fused
from pgnm.method import mask as reference

# Every (G, S, kernel, sigma) of the grid that reflect padding allows: G = S, G < S
# dividing and not dividing it (7 -> 32, 64 -> 224), and G > S (nearest downsampling).
GRID = [
    (grid, size, kernel, sigma)
    for grid, size, kernel, sigma in itertools.product(
        [1, 7, 8, 16, 64], [16, 32, 56, 224], [1, 3, 5, 13], [0.8, 2.0, 6.0]
    )
    if kernel // 2 < size
]


def _inputs(batch: int, grid: int, size: int, channels: int = 3, dtype=torch.float32):
    return torch.randn(batch, channels, size, size, dtype=dtype), torch.rand(batch, grid * grid)


@pytest.mark.parametrize("size", [16, 32, 56, 224])
def test_fp32_equals_the_reference_on_the_whole_grid(size):
    # One test per image size, looping over the rest, keeps the report short and the run fast.
    worst = 0.0
    for grid, s, kernel, sigma in GRID:
        if s != size:
            continue
        images, values = _inputs(2 if size < 224 else 1, grid, size)
        ours = fused.apply_mask(images, values, kernel, sigma)
        expected = reference.reference_apply(images, values, kernel, sigma)
        worst = max(worst, (ours - expected).abs().max().item())
    assert worst <= 1e-5


@pytest.mark.parametrize(("grid", "size"), [(64, 224), (16, 16), (7, 32)])
def test_mask_itself_matches_and_stays_inside_the_cell_range(grid, size):
    values = torch.rand(2, grid * grid)
    ours = fused.build_mask(values, size, 13, 6.0)
    expected = reference.build_mask(values, size, 13, 6.0)
    assert ours.shape == expected.shape == (2, 1, size, size) and ours.is_contiguous()
    torch.testing.assert_close(ours, expected, atol=1e-6, rtol=0)
    assert ours.min() >= values.min() - 1e-6 and ours.max() <= values.max() + 1e-6


@pytest.mark.parametrize(
    ("dtype", "tolerance"), [(torch.float64, 1e-12), (torch.bfloat16, 2e-2), (torch.float16, 2e-3)]
)
def test_other_dtypes_match_the_fp32_reference(dtype, tolerance):
    images, values = _inputs(2, 64, 224)
    images = images.to(dtype)
    ours = fused.apply_mask(images, values.to(dtype) if dtype == torch.float64 else values)
    assert ours.dtype == dtype
    # Against the exact answer on the same (rounded) pixels, relative to each pixel's size.
    expected = reference.reference_apply(images.double(), values.double())
    error = (ours.double() - expected).abs() / expected.abs().clamp_min(1.0)
    assert error.max().item() <= tolerance


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_is_no_worse_than_the_reference(dtype):
    images, values = _inputs(2, 8, 32)
    exact = reference.reference_apply(images.to(dtype).double(), values.double())
    ours = (fused.apply_mask(images.to(dtype), values).double() - exact).abs().mean()
    theirs = (reference.reference_apply(images.to(dtype), values).double() - exact).abs().mean()
    assert ours <= theirs


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_channels_last_in_channels_last_out(dtype):
    images, values = _inputs(2, 64, 56, channels=3, dtype=dtype)
    images = images.contiguous(memory_format=torch.channels_last)
    ours = fused.apply_mask(images, values, 13, 6.0)
    assert ours.is_contiguous(memory_format=torch.channels_last) and ours.dtype == dtype
    expected = fused.apply_mask(images.contiguous(), values, 13, 6.0)
    assert torch.equal(ours, expected)
    torch.testing.assert_close(
        ours.float(), reference.reference_apply(images.float(), values), atol=3e-2, rtol=1e-2
    )


def test_batches_larger_than_one_chunk_and_odd_channel_counts():
    images, values = _inputs(13, 64, 224, channels=1)  # 13 images: several cache-sized chunks
    torch.testing.assert_close(
        fused.apply_mask(images, values), reference.reference_apply(images, values),
        atol=1e-5, rtol=0,
    )


def test_non_contiguous_inputs():
    images = torch.randn(3, 5, 40, 40)[:, 1:4]  # channel slice: strided batch dimension
    values = torch.rand(3, 2 * 64)[:, ::2]  # strided cell values
    torch.testing.assert_close(
        fused.apply_mask(images, values, 5, 2.0),
        reference.reference_apply(images, values, 5, 2.0),
        atol=1e-5,
        rtol=0,
    )


def test_empty_batch():
    out = fused.apply_mask(torch.rand(0, 3, 32, 32), torch.rand(0, 64))
    assert out.shape == (0, 3, 32, 32)


def test_gradients_match_the_reference():
    images, values = _inputs(2, 8, 32)
    grads = []
    for implementation in (fused.apply_mask, reference.reference_apply):
        x = images.clone().requires_grad_()
        v = values.clone().requires_grad_()
        (implementation(x, v, 5, 2.0) * torch.linspace(-1, 1, 32)).sum().backward()
        grads.append((x.grad, v.grad))
    torch.testing.assert_close(grads[0][0], grads[1][0], atol=1e-5, rtol=0)
    torch.testing.assert_close(grads[0][1], grads[1][1], atol=1e-4, rtol=1e-5)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="kernel_size 13 needs images larger than 6 px"):
        fused.apply_mask(torch.rand(1, 3, 6, 6), torch.rand(1, 4))
    with pytest.raises(ValueError, match="sigma must be a positive number"):
        fused.apply_mask(torch.rand(1, 3, 32, 32), torch.rand(1, 64), 5, -1.0)
    with pytest.raises(ValueError, match="values must be \\(B, G\\*G\\)"):
        fused.build_mask(torch.rand(64), 32)


def test_matches_the_official_torchvision_chain_at_paper_settings():
    import torchvision.transforms.functional as TF

    values = torch.rand(2, 64 * 64)
    images = torch.randn(2, 3, 224, 224)
    upsampled = torch.nn.functional.interpolate(values.view(2, 1, 64, 64), size=224)
    official = images * TF.gaussian_blur(upsampled, kernel_size=13, sigma=6)
    torch.testing.assert_close(fused.apply_mask(images, values), official, atol=1e-5, rtol=0)
