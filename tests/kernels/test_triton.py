"""The Triton kernel, run by Triton's interpreter on CPU tensors (TRITON_INTERPRET=1).

The interpreter executes the same kernel source as the GPU, block by block in NumPy, so
these tests check the kernel's indexing, masking and arithmetic; they cannot check GPU
compilation or speed. Shapes stay tiny because the interpreter is slow. On a machine with a
GPU and TRITON_INTERPRET unset, the same tests run the compiled kernel on CUDA tensors.
"""

from __future__ import annotations

import importlib
import itertools
import os
import sys

import pytest
import torch

pytest.importorskip("triton")

from pgnm.method import mask as reference  # noqa: E402
from pgnm.method.mask import apply_mask  # noqa: E402

_ON_GPU = torch.cuda.is_available() and os.environ.get("TRITON_INTERPRET") is None
DEVICE = "cuda" if _ON_GPU else "cpu"
_MODULE = "pgnm.kernels.triton_kernel"


@pytest.fixture(scope="module")
def kernel():
    """pgnm.kernels.triton_kernel, loaded for the interpreter unless a GPU runs it for real."""
    if _ON_GPU:
        yield importlib.import_module(_MODULE)
        return
    with pytest.MonkeyPatch.context() as patch:
        # Triton decides at decoration time whether a kernel is compiled or interpreted, so
        # the variable must be set before the module is (re)loaded.
        patch.setenv("TRITON_INTERPRET", "1")
        loaded = sys.modules.get(_MODULE)
        module = importlib.reload(loaded) if loaded else importlib.import_module(_MODULE)
        assert module.INTERPRETED
        yield module


def _inputs(batch, grid, size, channels=3, dtype=torch.float32):
    images = torch.randn(batch, channels, size, size, device=DEVICE).to(dtype)
    return images, torch.rand(batch, grid * grid, device=DEVICE)


SETTINGS = [
    (grid, size, k, sigma)
    for grid, size, k, sigma in itertools.product(
        [1, 7, 8, 16, 40], [16, 32], [1, 5, 13], [0.8, 6.0]
    )
    if k // 2 < size
]


@pytest.mark.parametrize("grid", [1, 7, 8, 16, 40])
def test_fp32_equals_the_reference(kernel, grid):
    worst = 0.0
    for g, size, k, sigma in SETTINGS:
        if g != grid:
            continue
        images, values = _inputs(2, grid, size)
        ours = kernel.apply_mask(images, values, k, sigma)
        worst = max(
            worst, (ours - reference.reference_apply(images, values, k, sigma)).abs().max().item()
        )
    assert worst <= 1e-5


def test_every_autotune_config_is_exact(kernel):
    images, values = _inputs(2, 7, 40)  # 40 px: partial tiles for every block shape
    expected = reference.reference_apply(images, values, 13, 6.0)
    for config in kernel.CONFIGS:
        ours = kernel.apply_mask(images, values, 13, 6.0, config=config.kwargs)
        torch.testing.assert_close(ours, expected, atol=1e-5, rtol=0, msg=str(config))


def test_paper_grid_on_a_small_crop(kernel):
    images, values = _inputs(1, 64, 56)  # G > S / 4 and G not dividing S
    torch.testing.assert_close(
        kernel.apply_mask(images, values), reference.reference_apply(images, values),
        atol=1e-5, rtol=0,
    )


@pytest.mark.parametrize(("dtype", "tolerance"), [(torch.bfloat16, 2e-2), (torch.float16, 2e-3)])
def test_low_precision_is_rounded_once(kernel, dtype, tolerance):
    images, values = _inputs(2, 8, 32, dtype=dtype)
    ours = kernel.apply_mask(images, values, 13, 6.0)
    assert ours.dtype == dtype
    exact = reference.reference_apply(images.double(), values.double(), 13, 6.0)
    assert ((ours.double() - exact).abs() / exact.abs().clamp_min(1.0)).max() <= tolerance


def test_channels_last_in_channels_last_out(kernel):
    images, values = _inputs(2, 8, 32)
    images = images.contiguous(memory_format=torch.channels_last)
    ours = kernel.apply_mask(images, values, 5, 2.0)
    assert ours.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(
        ours, reference.reference_apply(images, values, 5, 2.0), atol=1e-5, rtol=0
    )


def test_dispatch_runs_it_when_asked(kernel):
    images, values = _inputs(1, 8, 16, channels=2)
    ours = apply_mask(images, values, 5, 2.0, kernel="triton")
    torch.testing.assert_close(
        ours, reference.reference_apply(images, values, 5, 2.0), atol=1e-5, rtol=0
    )


def test_empty_batch_and_unsupported_dtype(kernel):
    assert kernel.apply_mask(*_inputs(0, 8, 16)).shape == (0, 3, 16, 16)
    images, values = _inputs(1, 8, 16, dtype=torch.float64)
    with pytest.raises(ValueError, match="images: mask.kernel='triton' supports float32"):
        kernel.apply_mask(images, values, 5, 2.0)


def test_gradients_are_refused_unless_no_graph_is_recorded(kernel):
    images, values = _inputs(1, 8, 16)
    images.requires_grad_()
    with pytest.raises(ValueError, match="has no backward pass"):
        kernel.apply_mask(images, values, 5, 2.0)
    with torch.no_grad():
        kernel.apply_mask(images, values, 5, 2.0)  # fine when no graph is recorded
