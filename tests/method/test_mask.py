from __future__ import annotations

import math

import pytest
import torch
import torchvision.transforms.functional as TF

from pgnm.method import mask as reference
from pgnm.method.mask import apply_mask, build_mask, gaussian_blur, gaussian_kernel1d, upsample_grid


def test_kernel_is_truncated_at_one_sigma_and_normalised():
    k = gaussian_kernel1d(13, 6.0, dtype=torch.float64)
    assert k.sum().item() == pytest.approx(1.0)
    assert torch.equal(k, k.flip(0))
    assert (k[0] / k[6]).item() == pytest.approx(math.exp(-0.5))  # edge/centre = 0.61: near box


@pytest.mark.parametrize(("kernel_size", "sigma"), [(13, 6.0), (5, 1.5), (3, 0.8), (1, 1.0)])
def test_blur_equals_torchvision(kernel_size, sigma):
    images = torch.rand(2, 3, 40, 40)
    ours = gaussian_blur(images, kernel_size, sigma)
    theirs = TF.gaussian_blur(images, [kernel_size, kernel_size], [sigma, sigma])
    torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=0)


def test_nearest_upsampling_64_to_224_makes_runs_of_3_and_4_pixels():
    values = torch.arange(64 * 64, dtype=torch.float32).reshape(1, -1)
    up = upsample_grid(values, 224)[0, 0]
    row = up[0]
    runs = torch.unique_consecutive(row, return_counts=True)[1]
    assert len(runs) == 64 and set(runs.tolist()) == {3, 4} and runs.sum() == 224
    assert torch.equal(up[:, 0], up[:, 0].unique_consecutive().repeat_interleave(runs))


def test_grid_equal_to_size_is_not_resampled():
    values = torch.rand(2, 16 * 16)
    assert torch.equal(upsample_grid(values, 16), values.reshape(2, 1, 16, 16))


def test_constant_grid_gives_constant_mask():
    mask = build_mask(torch.full((2, 64), 0.25), size=56, kernel_size=13, sigma=6.0)
    torch.testing.assert_close(mask, torch.full_like(mask, 0.25))


def test_mask_multiplies_every_channel_by_the_same_values():
    images = torch.randn(2, 3, 32, 32)
    values = torch.rand(2, 8 * 8)
    masked = reference.reference_apply(images, values, 13, 6.0)
    mask = build_mask(values, 32, 13, 6.0)
    for c in range(3):
        torch.testing.assert_close(masked[:, c], images[:, c] * mask[:, 0])
    assert (mask > 0).all() and (mask < 1).all()


def test_matches_the_official_chain_at_paper_settings():
    values = torch.rand(2, 64 * 64)
    images = torch.randn(2, 3, 224, 224)
    official_mask = TF.gaussian_blur(
        torch.nn.functional.interpolate(values.view(2, 1, 64, 64), size=224),
        kernel_size=13,
        sigma=6,
    )
    torch.testing.assert_close(
        reference.reference_apply(images, values), images * official_mask, atol=1e-6, rtol=0
    )


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_images(dtype):
    images = torch.randn(1, 3, 32, 32)
    values = torch.rand(1, 64)
    low = reference.reference_apply(images.to(dtype), values)
    assert low.dtype == dtype
    torch.testing.assert_close(
        low.float(), reference.reference_apply(images, values), atol=3e-2, rtol=3e-2
    )


def test_bad_shapes_are_named():
    with pytest.raises(ValueError, match="needs images larger than 6 px"):
        gaussian_blur(torch.rand(1, 1, 6, 6), 13, 6.0)
    with pytest.raises(ValueError, match="G\\*G cell values"):
        upsample_grid(torch.rand(1, 10), 32)
    with pytest.raises(ValueError, match="square images"):
        reference.reference_apply(torch.rand(1, 3, 32, 40), torch.rand(1, 64))
    with pytest.raises(ValueError, match="positive odd"):
        gaussian_kernel1d(4, 1.0)


def test_unknown_kernel_is_named():
    with pytest.raises(ValueError, match="mask.kernel='cuda-magic'"):
        apply_mask(torch.rand(1, 3, 32, 32), torch.rand(1, 64), kernel="cuda-magic")
