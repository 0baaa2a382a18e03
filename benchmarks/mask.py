"""The noise-mask stage, side by side in one run, on the same batch and the same cell values.

    python -m benchmarks.mask --json PATH [--batch 32 --grid 64 --size 224] [--threads N]

Measured (median of ``--repeats`` runs after ``--warmup`` runs, each op on the same tensors):

* ``reference``: the official chain -- ``torch.distributions.Beta`` sample, then nearest
  upsample, 13x13 reflect-padded blur and multiply (``pgnm.method.mask``);
* ``reference_mask``: that chain without the sampling;
* ``fused``: the exact fast path, mask built from the grid and multiplied in (build + apply);
* ``sample``: Beta draws alone, the fast log-space sampler (``sample_ms``) and torch's
  (``torch_sample_ms``);
* ``full``: the whole masked-batch op as pgnm runs it on CPU -- fast sample + fused mask;
* ``memcpy``: one copy of the image batch into a preallocated tensor, the floor.

Also: the largest |fused - reference| on the batch, the ratios the project tracks, and an
*estimate* of the Triton kernel's GPU floor: bytes it must move over the H100 SXM's 3.35 TB/s
HBM bandwidth. ``run(..., device=cuda)`` (``benchmarks.gpu_check``) runs everything on the GPU,
timed with CUDA events, and measures the compiled Triton kernel in fp32 and bf16 beside the
estimate. CPU timings on a shared 2-core machine are noisy; run it twice and compare.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

import pgnm  # noqa: F401  (makes torchvision importable on CPU-only torch)
from benchmarks.clock import median_ms
from pgnm.kernels import fused
from pgnm.kernels.gamma import sample_beta
from pgnm.method import mask as reference

H100_SXM_HBM_BYTES_PER_S = 3.35e12  # spec sheet peak; real copies reach ~80-90% of it


def _gpu_estimate(batch: int, channels: int, size: int, grid: int) -> dict[str, Any]:
    """Bytes the one-pass kernel must move (image in, image out, cell values) / HBM peak."""
    pixels = batch * channels * size * size
    side = batch * grid * grid * 4 + size * grid * 4 + 2 * size * 4  # values, A, row extents
    estimate: dict[str, Any] = {
        "what": "estimate, not a measurement: bytes moved / peak HBM bandwidth",
        "device": "H100 SXM",
        "hbm_bytes_per_s": H100_SXM_HBM_BYTES_PER_S,
    }
    for name, itemsize in (("fp32", 4), ("bf16", 2)):
        moved = 2 * pixels * itemsize + side
        estimate[f"{name}_bytes"] = moved
        estimate[f"{name}_us"] = round(1e6 * moved / H100_SXM_HBM_BYTES_PER_S, 2)
    return estimate


def _triton(images: torch.Tensor, values: torch.Tensor, kernel_size: int, sigma: float,
            repeats: int, warmup: int) -> dict[str, Any]:
    """The compiled kernel on the GPU, fp32 and bf16: time, bytes moved per second, and its
    largest difference from the reference chain."""
    from pgnm.kernels import triton_kernel

    out: dict[str, Any] = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        batch = images.to(dtype)
        ms = median_ms(lambda b=batch: triton_kernel.apply_mask(b, values, kernel_size, sigma),
                       repeats, warmup, images.device)
        expected = reference.reference_apply(batch.float(), values, kernel_size, sigma)
        got = triton_kernel.apply_mask(batch, values, kernel_size, sigma).float()
        moved = 2 * batch.numel() * batch.element_size() + values.numel() * 4
        out[name] = {"ms": round(ms, 4), "bytes_per_s": moved / (ms / 1e3),
                     "max_abs_err_vs_reference": float((got - expected).abs().max())}
    return out


def run(
    batch: int,
    grid: int,
    size: int,
    channels: int,
    kernel_size: int,
    sigma: float,
    repeats: int,
    warmup: int,
    seed: int,
    device: torch.device | None = None,
) -> dict[str, Any]:
    device = device or torch.device("cpu")
    torch.manual_seed(seed)
    images = torch.randn(batch, channels, size, size, device=device)
    # Beta(2, 5) per cell.
    alpha = torch.full((batch, grid * grid), 2.0, device=device)
    beta = torch.full((batch, grid * grid), 5.0, device=device)
    values = torch.distributions.Beta(alpha, beta).sample()
    copy = torch.empty_like(images)

    def _median_ms(fn: Callable[[], object], repeats: int, warmup: int) -> float:
        return median_ms(fn, repeats, warmup, device)

    def reference_chain() -> torch.Tensor:
        drawn = torch.distributions.Beta(alpha, beta).sample()
        return reference.reference_apply(images, drawn, kernel_size, sigma)

    def full() -> torch.Tensor:
        return fused.apply_mask(images, sample_beta(alpha, beta), kernel_size, sigma)

    with torch.inference_mode():
        error = (
            (
                fused.apply_mask(images, values, kernel_size, sigma)
                - reference.reference_apply(images, values, kernel_size, sigma)
            )
            .abs()
            .max()
            .item()
        )
        timings = {
            "memcpy_ms": _median_ms(lambda: copy.copy_(images), repeats, warmup),
            "fused_ms": _median_ms(
                lambda: fused.apply_mask(images, values, kernel_size, sigma), repeats, warmup
            ),
            "sample_ms": _median_ms(lambda: sample_beta(alpha, beta), repeats, warmup),
            "torch_sample_ms": _median_ms(
                lambda: torch.distributions.Beta(alpha, beta).sample(), repeats, warmup
            ),
            "full_ms": _median_ms(full, repeats, warmup),
            "reference_mask_ms": _median_ms(
                lambda: reference.reference_apply(images, values, kernel_size, sigma),
                repeats, warmup),
            "reference_ms": _median_ms(reference_chain, repeats, warmup),
        }
    result: dict[str, Any] = {key: round(value, 3) for key, value in timings.items()}
    result["max_abs_err"] = error
    result["ratios"] = {
        "reference_over_full": round(timings["reference_ms"] / timings["full_ms"], 2),
        "reference_mask_over_fused": round(timings["reference_mask_ms"] / timings["fused_ms"], 2),
        "fused_over_memcpy": round(timings["fused_ms"] / timings["memcpy_ms"], 2),
        "torch_sample_over_sample": round(timings["torch_sample_ms"] / timings["sample_ms"], 2),
    }
    result["goals"] = {
        "full_at_least_8x_faster_than_reference": result["ratios"]["reference_over_full"] >= 8,
        "fused_within_2x_memcpy": result["ratios"]["fused_over_memcpy"] <= 2,
    }
    result["gpu_roofline_estimate"] = _gpu_estimate(batch, channels, size, grid)
    if device.type == "cuda":  # measured, beside the estimate
        with torch.inference_mode():
            result["triton"] = _triton(images, values, kernel_size, sigma, repeats, warmup)
        result["copy_bytes_per_s"] = 2 * images.numel() * 4 / (timings["memcpy_ms"] / 1e3)
    result["setup"] = {
        "batch": batch,
        "channels": channels,
        "size": size,
        "grid": grid,
        "kernel_size": kernel_size,
        "sigma": sigma,
        "dtype": "float32",
        "repeats": repeats,
        "warmup": warmup,
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "machine": platform.machine(),
        "processor": platform.processor() or "unknown",
    }
    return result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.mask",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--json", type=Path, required=True, help="where to write the results")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--grid", type=int, default=64)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--channels", type=int, default=3)
    parser.add_argument("--kernel-size", type=int, default=13)
    parser.add_argument("--sigma", type=float, default=6.0)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: as is)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    for name in ("batch", "grid", "size", "channels", "repeats"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    result = run(
        args.batch,
        args.grid,
        args.size,
        args.channels,
        args.kernel_size,
        args.sigma,
        args.repeats,
        max(args.warmup, 0),
        args.seed,
    )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    for key in (
        "reference_ms",
        "reference_mask_ms",
        "fused_ms",
        "torch_sample_ms",
        "sample_ms",
        "full_ms",
        "memcpy_ms",
    ):
        print(f"{key:>20}  {result[key]:9.3f}")
    print(f"{'max_abs_err':>20}  {result['max_abs_err']:.2e}")
    for key, value in result["ratios"].items():
        print(f"{key:>28}  {value}")
    estimate = result["gpu_roofline_estimate"]
    print(
        f"GPU floor (estimate, H100 SXM 3.35 TB/s): fp32 {estimate['fp32_us']} us, "
        f"bf16 {estimate['bf16_us']} us"
    )
    return result


if __name__ == "__main__":
    main()
