from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[2]


def test_preview_trains_and_writes_a_gallery(tmp_path):
    args = [
        sys.executable,
        str(ROOT / "launch" / "preview.py"),
        "--config",
        str(ROOT / "configs" / "preview.yaml"),
        f"run_dir={tmp_path}",
        "data.image_size=64",
        "mask.grid=16",
        "policy.hidden_dim=32",
        "data.batch_size=8",
        "data.synthetic_images=24",
    ]
    result = subprocess.run(args, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    out = tmp_path / "preview" / "preview"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 3
    assert summary["config"]["mask.grid"] == "16"
    assert 0.0 < summary["mask_mean"] < 1.0
    with Image.open(out / "mask_gallery.png") as png:
        assert png.width > 300 and png.height > 300
    assert "mask gallery:" in result.stdout


def test_preview_rejects_a_bad_key_with_a_named_error(tmp_path):
    args = [sys.executable, str(ROOT / "launch" / "preview.py"), "mask.sigmaa=3"]
    result = subprocess.run(args, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 2
    assert "mask.sigmaa" in result.stderr and "Traceback" not in result.stderr
