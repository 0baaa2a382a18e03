from __future__ import annotations

import csv
import io
import json
import shutil

import numpy as np
import pytest
from PIL import Image
from webdataset import WebDataset

from data_tools.radimagenet_to_wds import main
from data_tools.verify import verify
from pgnm.data.manifest import load_classes, load_dataset_info
from pgnm.data.shards import ShardingError
from pgnm.data.sources import records_from_radimagenet


def shard(src, out, *args):
    main(
        ["--src", str(src), "--out", str(out), "--samples-per-shard", "5", "--workers", "1", *args]
    )


def read_all(out, split, ext="png"):
    samples = []
    for tar in sorted((out / split).glob("*.tar")):
        samples += list(WebDataset(str(tar), shardshuffle=False, empty_check=False))
    return samples


def test_png_pixels_round_trip_losslessly(raw_release, tmp_path):
    src, pixels = raw_release
    out = tmp_path / "shards"
    shard(src, out)
    by_source = {}
    for sample in read_all(out, "train"):
        meta = json.loads(sample["json"])
        by_source[meta["source"]] = np.asarray(Image.open(io.BytesIO(sample["png"])))
        assert int(np.frombuffer(sample["lbl"], "<i4")[0]) == int(sample["cls"])
    assert len(by_source) == 20
    for source, image in by_source.items():
        assert np.array_equal(image, pixels[source])
    assert verify(out, use_dali=True)["ok"]


def test_classes_json_and_manifest(raw_release, tmp_path):
    src, _ = raw_release
    out = tmp_path / "shards"
    shard(src, out)
    classes = load_classes(out)
    assert [c.key for c in classes] == sorted(c.key for c in classes)
    by_key = {c.key: c for c in classes}
    assert set(by_key) == {
        "CT__abd__normal",
        "CT__lung__Nodule",
        "MR__af__achilles_pathology_",
        "MR__af__ca++_tendinosis",
        "US__thyroid",
    }
    assert (by_key["US__thyroid"].modality, by_key["US__thyroid"].organ) == ("US", "thyroid")
    assert by_key["MR__af__ca++_tendinosis"].name == "ca++_tendinosis"
    with open(out / "manifest.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 30 and {r["split"] for r in rows} == {"train", "val", "test"}
    assert all(len(r["md5"]) == 32 and r["mode"] == "L" for r in rows)
    info = load_dataset_info(out)
    assert info.splits["train"].samples == 20 and [
        s.samples for s in info.splits["train"].shards
    ] == [5, 5, 5, 5]


def test_samples_are_shuffled_across_classes_at_write_time(raw_release, tmp_path):
    src, _ = raw_release
    out = tmp_path / "shards"
    shard(src, out)
    first_shard = [int(s["cls"]) for s in read_all(out, "train")[:5]]
    assert len(set(first_shard)) >= 3  # class-ordered writing would give one or two classes
    labels = [int(s["cls"]) for s in read_all(out, "train")]
    assert labels != sorted(labels)


def test_duplicates_and_blanks_are_reported(raw_release, tmp_path):
    src, _ = raw_release
    nodule = src / "radiology_ai/CT/lung/Nodule"
    shutil.copy(nodule / "img000000.png", src / "radiology_ai/CT/abd/normal/copy.png")
    Image.fromarray(np.zeros((40, 48), np.uint8)).save(src / "radiology_ai/US/thyroid/blank.png")
    with open(src / "RadiologyAI_train.csv", "a") as handle:
        handle.write("radiology_ai/CT/abd/normal/copy.png,x\nradiology_ai/US/thyroid/blank.png,y\n")
    out = tmp_path / "shards"
    shard(src, out)
    report = json.loads((out / "report.json").read_text())
    assert report["duplicate_groups"] == 1 and report["cross_class_duplicate_groups"] == 1
    assert report["duplicates"][0]["classes"] == ["CT__abd__normal", "CT__lung__Nodule"]
    assert report["blanks"] == ["radiology_ai/US/thyroid/blank.png"]


def test_jpeg_and_raw_formats(raw_release, tmp_path):
    src, pixels = raw_release
    jpeg = tmp_path / "jpeg"
    shard(src, jpeg, "--format", "jpeg", "--jpeg-quality", "95")
    info = load_dataset_info(jpeg)
    assert info.image_format == "jpeg" and info.jpeg_quality == 95
    assert 20.0 < info.jpeg_psnr_db < 60.0  # random-noise images are JPEG's worst case
    assert verify(jpeg)["ok"]
    raw = tmp_path / "raw"
    shard(src, raw, "--format", "raw", "--raw-size", "32")
    sample = read_all(raw, "train", "u8")[0]
    assert len(sample["u8"]) == 32 * 32
    assert load_dataset_info(raw).raw_size == 32
    assert verify(raw)["ok"]


def test_rerun_skips_finished_shards_and_refuses_another_plan(raw_release, tmp_path, capsys):
    src, _ = raw_release
    out = tmp_path / "shards"
    shard(src, out)
    before = {p: p.stat().st_mtime_ns for p in out.glob("*/*.tar")}
    (out / "train" / "shard-000002.json").unlink()  # as if killed before this shard finished
    capsys.readouterr()
    shard(src, out)
    assert "1 shards to write, 5 already done" in capsys.readouterr().err
    after = {p: p.stat().st_mtime_ns for p in out.glob("*/*.tar")}
    changed = [p.name for p in before if before[p] != after[p]]
    assert changed == ["shard-000002.tar"]
    with pytest.raises(SystemExit) as exit_info:
        shard(src, out, "--format", "jpeg")
    assert exit_info.value.code == 2
    assert "another input or settings" in capsys.readouterr().err
    shard(src, out, "--format", "jpeg", "--overwrite")
    assert load_dataset_info(out).image_format == "jpeg"


def test_bad_rows_and_files_are_named(raw_release, tmp_path, capsys):
    src, _ = raw_release
    with open(src / "RadiologyAI_val.csv", "a") as handle:
        handle.write("radiology_ai/CT/lung/Nodule/missing.png,z\n")
    with pytest.raises(SystemExit):
        shard(src, tmp_path / "a")
    err = capsys.readouterr().err
    assert "RadiologyAI_val.csv:7" in err and "file not found" in err and "Traceback" not in err
    (src / "RadiologyAI_val.csv").write_text("path,label\n")
    with pytest.raises(ShardingError, match="RadiologyAI_val.csv: expected a header"):
        records_from_radimagenet(src)


def test_an_undecodable_image_is_named(raw_release, tmp_path, capsys):
    src, _ = raw_release
    (src / "radiology_ai/CT/lung/Nodule/img000000.png").write_bytes(b"not a png")
    with pytest.raises(SystemExit):
        shard(src, tmp_path / "out")
    assert (
        "radiology_ai/CT/lung/Nodule/img000000.png: not a decodable image"
        in capsys.readouterr().err
    )
