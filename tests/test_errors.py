"""One line for pgnm's own errors, on every rank and from DataLoader workers; a traceback for
everything else."""

from __future__ import annotations

import re
import shutil
import subprocess
import tarfile

import pytest
from launching import ROOT, command, environment

from pgnm.errors import ConfigError, PgnmError, reported_as_one_line


def test_pgnm_errors_become_one_line_and_status_2(capsys, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    with pytest.raises(SystemExit) as stop, reported_as_one_line("pretrain"):
        raise ConfigError("optim.lr: must be positive")
    assert stop.value.code == 2
    assert capsys.readouterr().err == "error (pretrain, rank 1): optim.lr: must be positive\n"


def test_other_errors_keep_their_traceback(monkeypatch):
    with pytest.raises(ValueError, match="deep inside"), reported_as_one_line("pretrain"):
        raise ValueError("deep inside a library")
    monkeypatch.setenv("PGNM_DEBUG", "1")
    with pytest.raises(PgnmError), reported_as_one_line("pretrain"):
        raise PgnmError("shown with its traceback under PGNM_DEBUG")


def _corrupt_an_image(shards, copy, split):
    """Garble the last PNG of the split's last shard in place (the tar and its index stay
    valid). Rank 1 of 2 reads it in evaluation; in training the rank that reaches it depends on
    the shuffle (the shard order is permuted every epoch). Returns (shard, key)."""
    shutil.copytree(shards, copy)
    tar_path = sorted((copy / split).glob("*.tar"))[-1]
    with tarfile.open(tar_path) as tar:
        member = [m for m in tar.getmembers() if m.name.endswith(".png")][-1]
    with open(tar_path, "r+b") as handle:
        handle.seek(member.offset_data)
        handle.write(b"\0" * member.size)
    return tar_path, member.name.rsplit(".", 1)[0]


@pytest.mark.slow
@pytest.mark.parametrize("split", ["train", "val"])  # in a training step; in an evaluation
def test_a_data_error_in_a_worker_stops_every_rank_with_one_line(tiny_shards, tmp_path, split):
    shards = tmp_path / "shards"
    tar_path, key = _corrupt_an_image(tiny_shards, shards, split)
    cmd = command("pretrain.py", 2, shards, tmp_path, "name=bad", "data.loader=webdataset",
                  "data.num_workers=2", "tracking.enabled=false", launcher="deepspeed")
    result = subprocess.run(cmd, cwd=ROOT, env=environment(), capture_output=True, text=True,
                            timeout=300)  # a hang fails here instead of stalling the suite
    assert result.returncode == 2
    err = result.stderr
    line = f"): {tar_path}: sample {key}: undecodable image"
    assert re.search(r"error \(pretrain, rank [01]" + re.escape(line), err), err[-3000:]
    assert "Traceback" not in err and "DataLoader worker" not in err
    assert "Connection closed by peer" not in err


@pytest.mark.slow
def test_an_error_raised_inside_a_library_keeps_its_traceback(tiny_shards, tmp_path):
    settings = tmp_path / "ds.json"  # DeepSpeed's own config validation rejects this value
    settings.write_text('{"zero_optimization": {"reduce_bucket_size": "lots"}}')
    cmd = command("pretrain.py", 1, tiny_shards, tmp_path, "name=lib", "tracking.enabled=false",
                  f"engine.deepspeed_config={settings}")
    result = subprocess.run(cmd, cwd=ROOT, env=environment(), capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 1
    assert "Traceback" in result.stderr and "reduce_bucket_size" in result.stderr
