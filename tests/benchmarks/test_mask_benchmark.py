from __future__ import annotations

import json

from benchmarks.mask import main


def test_mask_benchmark_reports_every_variant_side_by_side(tmp_path):
    out = tmp_path / "mask.json"
    argv = [
        "--json",
        str(out),
        "--batch",
        "2",
        "--grid",
        "8",
        "--size",
        "32",
        "--repeats",
        "2",
        "--warmup",
        "1",
    ]
    returned = main(argv)
    result = json.loads(out.read_text())
    assert result == json.loads(json.dumps(returned))
    for key in (
        "reference_ms",
        "reference_mask_ms",
        "fused_ms",
        "sample_ms",
        "torch_sample_ms",
        "full_ms",
        "memcpy_ms",
    ):
        assert result[key] > 0, key
    assert result["max_abs_err"] <= 1e-5
    assert set(result["ratios"]) == {
        "reference_over_full",
        "reference_mask_over_fused",
        "fused_over_memcpy",
        "torch_sample_over_sample",
    }
    assert set(result["goals"]) == {
        "full_at_least_8x_faster_than_reference",
        "fused_within_2x_memcpy",
    }
    estimate = result["gpu_roofline_estimate"]
    assert "estimate" in estimate["what"] and estimate["hbm_bytes_per_s"] == 3.35e12
    assert estimate["fp32_bytes"] > 2 * 2 * 3 * 32 * 32 * 4 - 1  # image read and written once
    assert result["setup"]["batch"] == 2 and result["setup"]["threads"] >= 1
