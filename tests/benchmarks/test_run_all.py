"""``benchmarks.run_all --quick`` end to end: structure and sanity of what it writes, no timing
thresholds (CI machines are too noisy for those)."""

from __future__ import annotations

import json
import math

import pytest

from benchmarks.run_all import main
from benchmarks.step import OURS, REFERENCE


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run_all")
    main(["--out", str(out), "--quick"])
    return out, json.loads((out / "results.json").read_text())


def _lookup(result: dict, dotted: str) -> float:
    """``steps.resnet18.ours/pgnm.median_ms`` -> the number at that path of the results."""
    node = result
    for key in dotted.split("."):
        node = node[key]
    return node


def test_writes_json_table_and_plots(quick_run):
    out, result = quick_run
    assert (out / "results.md").read_text().startswith("# pgnm benchmarks (quick run)")
    assert result["plots"] and all((out / name).stat().st_size > 0 for name in result["plots"])
    assert {"step_times.png", "loader_rss.png", "pretrain_img_s.png"} <= set(result["plots"])


def test_machine_is_described(quick_run):
    machine = quick_run[1]["machine"]
    for key in ("cpu_model", "cores", "ram_gib", "torch", "timm", "dali", "torch_threads"):
        assert machine[key], key
    assert len(machine["load_start"]) == len(machine["load_end"]) == 3


def test_every_step_variant_is_timed(quick_run):
    result = quick_run[1]
    assert list(result["steps"]) == result["setup"]["backbones"]
    expected = {f"ours/{v}" for v in OURS} | {f"reference/{v}" for v in REFERENCE}
    for variants in result["steps"].values():
        assert set(variants) == expected
        for timing in variants.values():
            assert 0 < timing["min_ms"] <= timing["median_ms"] <= timing["max_ms"]
            assert timing["repeats"] == result["setup"]["step_repeats"]


def test_ratios_are_quotients_of_measured_numbers(quick_run):
    result = quick_run[1]
    for name, r in result["ratios"].items():
        numerator, denominator = _lookup(result, r["numerator"]), _lookup(result, r["denominator"])
        assert (numerator, denominator) == (r["numerator_value"], r["denominator_value"]), name
        assert numerator > 0 and denominator > 0, name
        assert math.isclose(r["value"], numerator / denominator), name
        assert (r["pass"] is None) == (r["goal"] is None), name
    arches = result["setup"]["backbones"]
    for arch in arches:
        assert result["ratios"][f"{arch}: ours pgnm / reference pgnm"]["goal"] == "<= 0.8"
        assert result["ratios"][f"{arch}: ours pgnm_light / ours baseline"]["goal"] == "<= 1.10"
    assert result["ratios"]["pretrain: ours/pgnm / reference img/s"]["goal"] == ">= 1.5"
    assert all(isinstance(passed, bool) for passed in result["goals"].values())


def test_pretraining_and_loader_memory_per_epoch(quick_run):
    result = quick_run[1]
    epochs = result["setup"]["loader_epochs"]
    for name in ("dali", "webdataset", "reference"):
        record = result["memory"][name]
        assert len(record["rss_mb"]) == epochs and min(record["rss_mb"]) > 0
        assert isinstance(record["flat"], bool) and math.isfinite(record["slope_mb_per_epoch"])
    for name in ("ours/pgnm", "ours/pgnm_light", "reference/pgnm"):
        pipeline = result["pretrain"][name]
        assert pipeline["img_s"] > 0 and pipeline["images"] > 0
        assert len(pipeline["rss_mb_per_epoch"]) == result["setup"]["pretrain_epochs"]
    assert result["data"]["shard_img_s"] > 0
    assert result["mask"]["max_abs_err"] <= 1e-5


def test_rejects_bad_arguments(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(SystemExit):
        main(["--out", str(tmp_path / "file"), "--quick"])
    with pytest.raises(SystemExit):
        main(["--out", str(tmp_path), "--quick", "--threads", "0"])


def test_memory_is_judged_after_the_allocator_settles():
    from benchmarks.run_all import memory_record

    settling = memory_record([530.0, 690.0, 710.0, 420.0, 421.0, 420.5, 421.0, 420.0])
    assert settling["flat"] and abs(settling["slope_mb_per_epoch"]) < 0.5
    leaking = memory_record([500.0 + 6.0 * epoch for epoch in range(8)])  # a batch per epoch
    assert not leaking["flat"] and leaking["slope_mb_per_epoch"] == pytest.approx(6.0)
