"""Integrity at read time: a shard whose size differs from dataset.json is refused by both
loaders before anything is read, whatever the cut; labels are checked against classes.json."""

from __future__ import annotations

import io
import json
import shutil
import tarfile

import numpy as np
import pytest

from pgnm.data.dali import DaliLoader
from pgnm.data.manifest import ClassInfo
from pgnm.data.shards import Encoding, Record, write_dali_index
from pgnm.data.spec import AugmentSpec
from pgnm.data.wds import WebDatasetLoader
from pgnm.data.writer import write_dataset
from pgnm.errors import DataError

SPEC = AugmentSpec(image_size=8, eval_resize=8)


def _dataset(root, labels=(0, 1, 2), per_class=8):
    classes = [ClassInfo(key=f"c{i}", label=i) for i in range(3)]
    rng = np.random.default_rng(0)
    records = [Record(split, f"img{split}{n}.png", f"c{label}", label,
                      pixels=rng.integers(0, 255, (12, 12), dtype=np.uint8))
               for split in ("train", "val", "test") for label in labels
               for n in range(per_class)]
    write_dataset(root, records, classes, "test", Encoding(), samples_per_shard=8, workers=1)
    return root


@pytest.fixture(scope="module")
def intact(tmp_path_factory):
    return _dataset(tmp_path_factory.mktemp("intact") / "shards")


def _loaders(root):
    return {
        "webdataset": lambda: WebDatasetLoader(root, "train", 4, True, SPEC, num_workers=0),
        "dali": lambda: DaliLoader(root, "train", 4, True, SPEC, num_threads=1),
    }


def _cut_offsets(tar_path):
    """Byte offsets to cut the tar at: a member boundary, inside a header, inside a payload."""
    with tarfile.open(tar_path) as tar:
        members = tar.getmembers()
    middle = members[len(members) // 2]
    return {"member boundary": middle.offset, "inside a header": middle.offset + 100,
            "inside a payload": middle.offset_data + max(1, middle.size // 2)}


@pytest.mark.parametrize("cut", ["member boundary", "inside a header", "inside a payload"])
@pytest.mark.parametrize("loader", ["webdataset", "dali"])
def test_a_truncated_shard_is_refused_before_training_naming_it(intact, tmp_path, cut, loader):
    root = tmp_path / "shards"
    shutil.copytree(intact, root)
    info = json.loads((root / "dataset.json").read_text())
    shard = root / "train" / info["splits"]["train"]["shards"][1]["name"]
    shard.write_bytes(shard.read_bytes()[:_cut_offsets(shard)[cut]])
    with pytest.raises(DataError, match=f"{shard.name}: .* bytes on disk, .* records "):
        _loaders(root)[loader]()


@pytest.mark.parametrize("loader", ["webdataset", "dali"])
def test_an_index_that_disagrees_with_the_plan_is_refused_naming_the_shard(intact, tmp_path,
                                                                          loader):
    root = tmp_path / "shards"
    shutil.copytree(intact, root)
    index = sorted((root / "train").glob("*.idx"))[1]
    lines = index.read_text().splitlines()
    header = lines[0].split()
    index.write_text(f"{header[0]} {int(header[1]) - 1}\n" + "\n".join(lines[1:-1]) + "\n")
    with pytest.raises(DataError, match=f"{index.with_suffix('.tar')}: its index lists 7 "
                                        "samples.*dataset.json plans 8"):
        list(_loaders(root)[loader]())


def test_an_intact_dataset_reads_in_both_loaders(intact):
    for make in _loaders(intact).values():
        labels = [int(label) for _, batch in make() for label in batch]
        assert labels and set(labels) <= {0, 1, 2}


def _relabel(root, label_bytes):
    """Rewrite the first train shard with every lbl replaced, keeping dataset.json in step."""
    info = json.loads((root / "dataset.json").read_text())
    entry = info["splits"]["train"]["shards"][0]
    path = root / "train" / entry["name"]
    with tarfile.open(path) as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar.getmembers()]
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
        for member, payload in members:
            if member.name.endswith(".lbl"):
                payload = label_bytes
            elif member.name.endswith(".cls"):
                payload = b"7"
            member.size = len(payload)
            tar.addfile(member, io.BytesIO(payload))
    write_dali_index(path, path.with_suffix(".idx"))
    entry["bytes"] = path.stat().st_size
    (root / "dataset.json").write_text(json.dumps(info))


@pytest.mark.parametrize(("label_bytes", "message"), [
    (np.int32(7).tobytes(), "label 7 is outside 0..2 \\(classes.json\\)"),
    (b"\x01\x00", "lbl holds 2 bytes, expected a 4-byte int32"),
])
def test_labels_outside_classes_json_are_refused_by_name(intact, tmp_path, label_bytes,
                                                          message):
    root = tmp_path / "shards"
    shutil.copytree(intact, root)
    _relabel(root, label_bytes)
    loader = WebDatasetLoader(root, "train", 4, False, SPEC, num_workers=0)
    with pytest.raises(DataError, match=f"shard-000000.tar: sample .*: {message}"):
        list(loader)
    if len(label_bytes) == 4:
        with pytest.raises(DataError, match="a sample's label is 7, outside 0..2"):
            list(DaliLoader(root, "train", 4, False, SPEC, num_threads=1))


def _corrupt_in_place(tar_path, member_suffix):
    """Overwrite one image's bytes with garbage of the same length: sizes and index stay valid."""
    with tarfile.open(tar_path) as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith(member_suffix))
    data = bytearray(tar_path.read_bytes())
    data[member.offset_data:member.offset_data + member.size] = b"\x00" * member.size
    tar_path.write_bytes(bytes(data))
    return member.name.rsplit(".", 1)[0]


@pytest.mark.parametrize("train", [True, False])
def test_a_dali_decode_error_is_located_by_decoding_only_the_failing_batches(
        tmp_path, monkeypatch, train):
    from pgnm.data import wds

    root = _dataset(tmp_path / "shards", per_class=24)  # 72 training images, 9 shards
    info = json.loads((root / "dataset.json").read_text())
    late = root / "train" / info["splits"]["train"]["shards"][7]["name"]
    key = _corrupt_in_place(late, ".png")  # its first image
    decoded: list[tuple[str, str]] = []
    original = wds._RankStream._decode

    def counting(self, shard, sample_key, payload, position):  # noqa: ANN001, ANN202
        decoded.append((shard.name, sample_key))
        return original(self, shard, sample_key, payload, position)

    monkeypatch.setattr(wds._RankStream, "_decode", counting)
    loader = DaliLoader(root, "train", 4, train, SPEC, num_threads=1)
    with pytest.raises(DataError, match=f"first bad sample: .*{late.name}: sample {key}: "
                                        "undecodable image"):
        list(loader)
    # The locate step decoded at most the failing batch and the two DALI may have prepared
    # ahead (3 x 4 images), all from the shards those batches came from, not the split's 72.
    assert 1 <= len(decoded) <= 12, decoded
    assert len({shard for shard, _ in decoded}) <= 3


@pytest.mark.parametrize("loader", ["webdataset", "dali"])
def test_a_rewritten_shard_of_the_same_size_is_refused_with_check_md5(intact, tmp_path,
                                                                      loader):
    root = tmp_path / "shards"
    shutil.copytree(intact, root)
    info = json.loads((root / "dataset.json").read_text())
    shard = root / "train" / info["splits"]["train"]["shards"][2]["name"]
    _corrupt_in_place(shard, ".png")
    make = {"webdataset": WebDatasetLoader, "dali": DaliLoader}[loader]
    make(root, "train", 4, True, SPEC)  # the size still matches: read as it is
    with pytest.raises(DataError, match=f"{shard.name}: md5 differs from the one "):
        make(root, "train", 4, True, SPEC, check_md5=True)
