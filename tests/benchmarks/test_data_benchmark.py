from __future__ import annotations

import json

from benchmarks.data import main


def test_data_benchmark_runs_every_loader_side_by_side(raw_release, tmp_path):
    src, _ = raw_release
    out = tmp_path / "data.json"
    main(["--json", str(out), "--src", str(src), "--epochs", "1", "--batch", "4"])
    result = json.loads(out.read_text())
    for key in ("dali_img_s", "webdataset_img_s", "reference_img_s", "decode_only_img_s", "cores"):
        assert result[key] > 0, key
    assert result["dali"]["images"] == result["webdataset"]["images"] == 20  # 1 epoch of 20
    assert len(result["dali"]["rss_mb_per_epoch"]) == 1
    assert set(result["goals"]) == {
        "dali_at_least_2x_reference",
        "dali_per_core_at_least_0.7x_decode_only",
    }
