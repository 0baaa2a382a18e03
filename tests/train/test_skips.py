"""Skipped samples are counted per epoch over workers and ranks, named in skipped.log, and a
run that skips more than ``data.max_skipped`` stops saying so."""

from __future__ import annotations

import json
import shutil
import tarfile

import pytest
from launching import train

from pgnm.tracking.store import mlflow_client

pytestmark = pytest.mark.slow


def _corrupt(shards, count):
    """Zero the first ``count`` training images in place (sizes and indexes stay valid)."""
    info = json.loads((shards / "dataset.json").read_text())
    names = []
    for shard in info["splits"]["train"]["shards"][:count]:
        path = shards / "train" / shard["name"]
        with tarfile.open(path) as tar:
            member = next(m for m in tar.getmembers() if m.name.endswith(".png"))
        data = bytearray(path.read_bytes())
        data[member.offset_data:member.offset_data + member.size] = b"\x00" * member.size
        path.write_bytes(bytes(data))
        names.append((path.name, member.name.rsplit(".", 1)[0]))
    return names


def test_skips_over_two_ranks_and_two_workers_are_counted_and_named(tiny_shards, tmp_path):
    shards = tmp_path / "shards"
    shutil.copytree(tiny_shards, shards)
    bad = _corrupt(shards, 2)
    train("pretrain.py", 2, shards, tmp_path, "name=skips", "data.loader=webdataset",
          "data.on_bad_sample=skip", "data.num_workers=2", "schedule.epochs=2",
          "data.max_skipped=0.05")  # 2 of 128 is 1.6%: past the default 1%
    epochs = [json.loads(line) for line in (tmp_path / "skips" / "metrics.jsonl").open()
              if '"epoch"' in line and '"kind": "epoch"' in line]
    # each epoch every rank reads its rotating half: both bad images are met once in total
    assert [e["data/skipped"] for e in epochs] == [2, 2]
    logged = (tmp_path / "skips" / "skipped.log").read_text().splitlines()
    assert len(logged) == 4
    assert {tuple(line.split("\t")[1:3]) for line in logged} == {
        (str(shards / "train" / shard), key) for shard, key in bad}
    client = mlflow_client(f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("pgnm").experiment_id])
    history = client.get_metric_history(run.info.run_id, "data/skipped")
    assert [m.value for m in sorted(history, key=lambda m: m.step)] == [2.0, 2.0]  # as logged


def test_a_run_past_the_skip_limit_stops_naming_the_log(tiny_shards, tmp_path):
    shards = tmp_path / "shards"
    shutil.copytree(tiny_shards, shards)
    _corrupt(shards, 2)
    result = train("pretrain.py", 1, shards, tmp_path, "name=limit", "data.loader=webdataset",
                   "data.on_bad_sample=skip", "data.max_skipped=0.001", "tracking.enabled=false",
                   expect_ok=False)
    assert result.returncode == 2, result.stderr[-3000:]
    assert "training samples were skipped" in result.stderr
    assert "data.max_skipped=0.001" in result.stderr and "skipped.log" in result.stderr
