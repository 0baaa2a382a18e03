"""Atomic shard writes under SIGKILL, and verify's detection of damaged shards."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from data_tools.radimagenet_to_wds import main
from data_tools.verify import verify

ROOT = Path(__file__).resolve().parents[2]

# Runs the real converter, slowed down per tar member so a kill lands mid-shard.
SLOW_CONVERTER = """
import sys, time
import data_tools.common as common
original = common._add_member
def slow(tar, name, payload):
    time.sleep(0.02)
    original(tar, name, payload)
common._add_member = slow
from data_tools.radimagenet_to_wds import main
main(sys.argv[1:])
"""


def complete_shards(out: Path) -> list[Path]:
    done = []
    for tar in sorted(out.glob("*/*.tar")):
        sidecar = json.loads(tar.with_suffix(".json").read_text())
        assert sidecar["bytes"] == tar.stat().st_size
        assert sidecar["md5"] == hashlib.md5(tar.read_bytes()).hexdigest()
        done.append(tar)
    return done


def test_sigkill_leaves_only_complete_shards_and_a_rerun_finishes(raw_release, tmp_path):
    src, _ = raw_release
    out = tmp_path / "shards"
    args = ["--src", str(src), "--out", str(out), "--samples-per-shard", "2", "--workers", "1"]
    proc = subprocess.Popen(
        [sys.executable, "-c", SLOW_CONVERTER, *args],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while len(list(out.glob("*/*.json"))) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    finished = complete_shards(out)  # every tar under a final name is whole
    assert 3 <= len(finished) < 16
    assert not (out / "dataset.json").exists()  # the dataset is not marked usable
    main(args)
    assert len(complete_shards(out)) == 16
    assert verify(out)["ok"]


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
