"""verify's detection of damaged shards, and its command line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from data_tools.radimagenet_to_wds import main
from data_tools.verify import verify

ROOT = Path(__file__).resolve().parents[2]


def test_verify_names_a_truncated_shard_and_a_manifest_mismatch(raw_release, tmp_path):
    src, _ = raw_release
    out = tmp_path / "shards"
    main(["--src", str(src), "--out", str(out), "--samples-per-shard", "5", "--workers", "1"])
    tar = out / "train" / "shard-000001.tar"
    tar.write_bytes(tar.read_bytes()[: tar.stat().st_size // 2])
    result = verify(out)
    assert not result["ok"]
    assert any("shard-000001.tar" in p for p in result["problems"])
    assert any("DALI" in p for p in result["problems"])


def test_verify_cli_exit_status_and_json(raw_release, tmp_path):
    src, _ = raw_release
    out = tmp_path / "shards"
    main(["--src", str(src), "--out", str(out), "--samples-per-shard", "50", "--workers", "1"])
    ok = subprocess.run(
        [sys.executable, "-m", "data_tools.verify", str(out), "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert ok.returncode == 0 and json.loads(ok.stdout)["splits"] == {
        "test": 5,
        "train": 20,
        "val": 5,
    }
    (out / "classes.json").unlink()
    bad = subprocess.run(
        [sys.executable, "-m", "data_tools.verify", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert bad.returncode == 1 and "classes.json is missing" in bad.stdout
