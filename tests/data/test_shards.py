"""One shard: the encoding, the written files, and reading samples and manifest rows back."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from pgnm.data.manifest import ClassInfo, ManifestError, load_dataset_info, read_manifest
from pgnm.data.shards import (
    Encoding,
    Record,
    ShardingError,
    encode,
    iter_samples,
    shard_complete,
    write_shard,
)
from pgnm.data.writer import write_dataset
from pgnm.errors import DataError


def test_encoding_is_recorded():
    assert Encoding().image_format == "png"


def pixels(seed: int, shape=(12, 10)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, np.uint8)


def test_a_written_shard_is_complete_and_leaves_no_partial_files(tmp_path):
    tar = tmp_path / "train" / "shard-000000.tar"
    tar.parent.mkdir()
    records = [Record("train", f"s{i}", "c", 0, pixels=pixels(i)) for i in range(3)]
    keyed = [(f"train{i:08d}", r) for i, r in enumerate(records)]
    sidecar = write_shard(tar, keyed, Encoding())
    assert shard_complete(tar) == json.loads(tar.with_suffix(".json").read_text()) == sidecar
    assert sidecar["samples"] == 3 and sidecar["bytes"] == tar.stat().st_size
    assert tar.with_suffix(".idx").read_text().startswith("v1.2 3\n")
    assert sorted(p.name for p in tar.parent.iterdir()) == [
        "shard-000000.idx", "shard-000000.json", "shard-000000.tar"
    ]  # fmt: skip
    tar.write_bytes(tar.read_bytes()[:-512])  # no longer the size the sidecar records
    assert shard_complete(tar) is None


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    out = tmp_path_factory.mktemp("shards")
    records = [
        Record(split, f"{split}{i}.png", f"c{i % 2}", i % 2, pixels=pixels(i, shape))
        for split, n, shape in (("train", 7, (12, 10)), ("test", 3, (12, 10, 3)))
        for i in range(n)
    ]
    classes = [ClassInfo(key="c0", label=0), ClassInfo(key="c1", label=1)]
    write_dataset(out, records, classes, "test", samples_per_shard=3, workers=1)
    return out, {r.source: r for r in records}


def test_iter_samples_reads_back_what_was_written(written):
    out, by_source = written
    samples = list(iter_samples(out, "train"))
    assert len(samples) == 7 and len({s.key for s in samples}) == 7
    for s in samples:
        record = by_source[s.source]
        assert (s.label, s.class_key) == (record.label, record.class_key)
        assert np.array_equal(s.pixels, record.pixels)
    colour = next(iter_samples(out, "test"))
    assert colour.pixels.shape == (12, 10, 3)
    wanted = {samples[1].key, samples[5].key}
    assert {s.key for s in iter_samples(out, "train", wanted)} == wanted


def test_raw_samples_come_back_at_their_stored_size(tmp_path):
    records = [Record("train", f"s{i}", "c", 0, pixels=pixels(i)) for i in range(2)]
    write_dataset(tmp_path, records, [ClassInfo(key="c", label=0)], "test",
                  Encoding("raw", raw_size=8), workers=1)  # fmt: skip
    assert [s.pixels.shape for s in iter_samples(tmp_path, "train")] == [(8, 8), (8, 8)]


def test_read_manifest_rows_match_the_samples(written):
    out, _ = written
    rows = read_manifest(out)
    assert len(rows) == 10 and {r.split for r in rows} == {"train", "test"}
    train = read_manifest(out, "train")
    by_key = {s.key: s for s in iter_samples(out, "train")}
    assert sorted(r.key for r in train) == sorted(by_key)
    for row in train:
        assert row.label == by_key[row.key].label and row.source == by_key[row.key].source
        assert isinstance(row.blank, bool) and row.width == 10 and row.height == 12


def test_a_broken_manifest_or_tar_is_named(written, tmp_path):
    out, _ = written
    with pytest.raises(ManifestError, match="manifest.csv is missing"):
        read_manifest(tmp_path)
    lines = (out / "manifest.csv").read_text().splitlines()
    copy = tmp_path / "copy"
    copy.mkdir()
    fields = lines[1].split(",")
    fields[5] = "x"  # the label column
    (copy / "manifest.csv").write_text("\n".join([lines[0], ",".join(fields)]) + "\n")
    with pytest.raises(ManifestError, match="manifest.csv:2: invalid literal"):
        read_manifest(copy)
    tar = out / "train" / "shard-000001.tar"
    original = tar.read_bytes()
    try:
        tar.write_bytes(original[:700])  # cut inside the first member's data
        with pytest.raises(DataError, match="shard-000001.tar"):
            list(iter_samples(out, "train"))
    finally:
        tar.write_bytes(original)


# ----------------------------------------------------------------------------- 16-bit grey


def grey16(seed: int, shape=(12, 10)) -> np.ndarray:
    return np.random.default_rng(seed).integers(256, 65536, shape, np.uint16)  # all above 255


def test_16_bit_pixels_are_written_and_read_back_as_16_bit(tmp_path):
    records = [Record("train", f"s{i}", "c", 0, pixels=grey16(i), value_offset=32768)
               for i in range(3)]
    flat = np.full((12, 10), 300, np.uint16)  # "L" clamps 300 and 256 alike: not blank here
    flat[0, 0] = 256
    records.append(Record("train", "flat", "c", 0, pixels=flat, value_offset=32768))
    info = write_dataset(tmp_path, records, [ClassInfo(key="c", label=0)], "test", workers=1)
    assert (info.bit_depth, info.value_offset) == (16, 32768)
    assert load_dataset_info(tmp_path) == info
    by_source = {r.source: r for r in records}
    for sample in iter_samples(tmp_path, "train"):
        assert sample.pixels.dtype == np.uint16
        assert np.array_equal(sample.pixels, by_source[sample.source].pixels)
    rows = read_manifest(tmp_path)
    assert {r.mode for r in rows} == {"I;16"} and not any(r.blank for r in rows)


def test_a_16_bit_png_file_is_kept_byte_for_byte(tmp_path):
    path = tmp_path / "sixteen.png"
    Image.fromarray(grey16(0)).save(path)
    stored, meta = encode(Record("train", "sixteen.png", "c", 0, path=str(path)), Encoding())
    assert stored == path.read_bytes() and meta["mode"] == "I;16" and not meta["blank"]
    for image_format in ("jpeg", "raw"):
        with pytest.raises(ShardingError, match="sixteen.png: a 16-bit image .*only --format png"):
            encode(Record("train", "sixteen.png", "c", 0, path=str(path)), Encoding(image_format))


def test_one_bit_depth_and_one_offset_per_directory(tmp_path):
    classes = [ClassInfo(key="c", label=0)]
    mixed = [Record("train", "a", "c", 0, pixels=pixels(0)),
             Record("train", "b", "c", 0, pixels=grey16(1))]
    with pytest.raises(ShardingError, match="8-bit and 16-bit images mixed"):
        write_dataset(tmp_path / "mixed", mixed, classes, "test", workers=1)
    offsets = [Record("train", "a", "c", 0, pixels=grey16(0), value_offset=0),
               Record("train", "b", "c", 0, pixels=grey16(1), value_offset=32768)]
    with pytest.raises(ShardingError, match=r"different value offsets \[0, 32768\]"):
        write_dataset(tmp_path / "offsets", offsets, classes, "test", workers=1)
    with pytest.raises(ShardingError, match="s: pixels must be uint8 .* or uint16 .*int32"):
        encode(Record("train", "s", "c", 0, pixels=np.zeros((4, 4), np.int32)), Encoding())


def test_a_new_rendering_is_a_new_plan(tmp_path):
    classes = [ClassInfo(key="c", label=0)]
    first = write_dataset(tmp_path, [Record("train", "a", "c", 0, pixels=pixels(0))], classes,
                          "test", workers=1)
    again = [Record("train", "a", "c", 0, pixels=pixels(1), rendering="dicom window=lung")]
    with pytest.raises(ShardingError, match="holds shards of another input or settings"):
        write_dataset(tmp_path, again, classes, "test", workers=1)
    assert write_dataset(tmp_path, again, classes, "test", workers=1,
                         overwrite=True).plan_hash != first.plan_hash


def test_manifests_from_before_16_bit_still_read(written, tmp_path):
    out, _ = written
    data = json.loads((out / "dataset.json").read_text())
    assert (data["bit_depth"], data["value_offset"]) == (8, 0)
    del data["bit_depth"], data["value_offset"]
    (tmp_path / "dataset.json").write_text(json.dumps(data))
    assert (load_dataset_info(tmp_path).bit_depth, load_dataset_info(tmp_path).value_offset) == \
        (8, 0)
    data.update(bit_depth=16, image_format="jpeg")
    (tmp_path / "dataset.json").write_text(json.dumps(data))
    with pytest.raises(ManifestError, match="bit_depth 16 needs image_format png"):
        load_dataset_info(tmp_path)
