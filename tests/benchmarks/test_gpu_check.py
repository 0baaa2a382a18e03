"""make gpu-check: refuses at once without a GPU; its CPU-side parts work here."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from launching import ROOT, environment

from benchmarks import gpu_check


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the machine without a GPU")
def test_without_a_gpu_it_stops_at_once_and_says_why(tmp_path):
    out = tmp_path / "gpu_check.json"
    result = subprocess.run([sys.executable, "-m", "benchmarks.gpu_check", "--json", str(out)],
                            cwd=ROOT, env=environment(), capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2
    assert "needs a CUDA GPU" in result.stderr and "Traceback" not in result.stderr
    assert not out.exists() and not (tmp_path / "work").exists()


def test_shards_and_decoding_it_compares(tmp_path):
    shards = gpu_check.prepare_shards(tmp_path, images=48, size=64)
    assert sorted(shards) == ["jpeg", "png"]
    for root in shards.values():
        cpu = gpu_check.decoded(root, "train", None)
        assert cpu and all(image.ndim == 3 and image.shape[-1] == 1 for image in cpu)
        same = gpu_check.decode_agreement(cpu, cpu)
        assert same == {"images": len(cpu), "shape_mismatches": 0, "mean_abs_diff": 0.0,
                        "max_abs_diff": 0}
    png, jpeg = (gpu_check.decoded(shards[f], "train", None) for f in ("png", "jpeg"))
    lossy = gpu_check.decode_agreement(jpeg, png)  # JPEG's loss, seen by the same comparison
    assert 0 < lossy["mean_abs_diff"] < 10


def test_the_table_reports_every_check():
    result = {
        "device": {"name": "NVIDIA H200", "memory_gib": 139.8, "capability": "9.0",
                   "torch": "2.13.0", "cuda": "12.8", "dali": "2.4.0", "triton": "3.9.0"},
        "decode": {"png": {"images": 4, "mean_abs_diff": 0.0, "max_abs_diff": 0, "ok": True}},
        "mask": {"triton": {"fp32": {"ms": 0.02, "bytes_per_s": 3.9e12,
                                     "of_copy_bandwidth": 0.95, "of_spec_peak": 0.81,
                                     "max_abs_err_vs_reference": 1e-7}}},
        "step": {"ours/pgnm": {"median_ms": 80.0, "img_s": 800.0}},
        "loader": {"img_s": 4000.0}, "resume": {"ok": False},
    }
    text = gpu_check.table(result)
    assert "NVIDIA H200" in text and "png  mixed vs cpu" in text and "0.81 of peak" in text
    assert "ours/pgnm" in text and "4000.0 img/s" in text and "DIFFERENT" in text
    assert gpu_check.spec_peak("NVIDIA H200") == 4.8e12 and gpu_check.spec_peak("GTX") is None
