"""The folder and MedMNIST converters end to end (their readers: tests/data/test_sources.py)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from medmnist_files import write_npz
from PIL import Image
from webdataset import WebDataset

from data_tools import folder_to_wds, medmnist_to_wds
from data_tools.verify import verify
from pgnm.data.manifest import load_classes, load_dataset_info


def save(path, pixels):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)


def test_folder_with_splits(tmp_path):
    rng = np.random.default_rng(0)
    for split, count in (("train", 4), ("test", 2)):
        for name in ("NORMAL", "PNEUMONIA"):
            for i in range(count):
                save(
                    tmp_path / "src" / split / name / f"{i}.png",
                    rng.integers(0, 255, (20, 20), np.uint8),
                )
    (tmp_path / "src" / "train" / "NORMAL" / ".DS_Store").write_text("ignored")
    out = tmp_path / "out"
    folder_to_wds.main(["--src", str(tmp_path / "src"), "--out", str(out), "--workers", "1"])
    assert [c.key for c in load_classes(out)] == ["NORMAL", "PNEUMONIA"]
    info = load_dataset_info(out)
    assert (info.splits["train"].samples, info.splits["test"].samples) == (8, 4)
    assert verify(out)["ok"]


@pytest.mark.parametrize("channels", [None, 3])
def test_medmnist_npz_round_trip(tmp_path, channels):
    arrays = write_npz(tmp_path / "organamnist_64.npz", side=64, channels=channels)
    out = tmp_path / "out"
    medmnist_to_wds.main(
        [
            "--src",
            str(tmp_path / "organamnist_64.npz"),
            "--out",
            str(out),
            "--workers",
            "1",
            "--classes",
            "bladder,femur-left,femur-right",
        ]
    )
    assert [c.key for c in load_classes(out)] == ["bladder", "femur-left", "femur-right"]
    decoded = {}
    for tar in sorted((out / "train").glob("*.tar")):
        for sample in WebDataset(str(tar), shardshuffle=False, empty_check=False):
            index = int(sample["json"].decode().split("[")[1].split("]")[0])
            decoded[index] = (np.asarray(Image.open(io.BytesIO(sample["png"]))), int(sample["cls"]))
    assert len(decoded) == 6
    for i, (image, label) in decoded.items():
        assert np.array_equal(image, arrays["train_images"][i])
        assert label == arrays["train_labels"][i, 0]
    assert verify(out)["ok"]


def test_folder_to_wds_carves_a_seeded_stratified_val_split(tmp_path):
    from collections import Counter

    from pgnm.data.manifest import read_manifest

    src = tmp_path / "set"
    rng = np.random.default_rng(0)
    for name, n in (("benign", 10), ("malignant", 5), ("normal", 1)):
        for split, count in (("train", n), ("test", 2)):
            (src / split / name).mkdir(parents=True)
            for i in range(count):
                Image.fromarray(rng.integers(0, 256, (16, 16), dtype=np.uint8)).save(
                    src / split / name / f"{i}.png")

    def carve(out, seed):
        folder_to_wds.main(["--src", str(src), "--out", str(out), "--val-fraction", "0.2",
                       "--seed", str(seed), "--workers", "1"])
        return {r.source for r in read_manifest(out, "val")}, load_dataset_info(out)

    first, info = carve(tmp_path / "a", 0)
    assert info.val_carved.fraction == 0.2 and info.val_carved.seed == 0
    # 20% of each class, at least one where a class has two; a lone sample stays in train
    assert Counter(s.split("/")[1] for s in first) == {"benign": 2, "malignant": 1}
    assert info.splits["train"].samples == 16 - 3 and info.splits["test"].samples == 6
    assert carve(tmp_path / "b", 0)[0] == first
    assert carve(tmp_path / "c", 1)[0] != first
    (src / "val" / "benign").mkdir(parents=True)
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(src / "val" / "benign" / "0.png")
    with pytest.raises(SystemExit) as stop:
        carve(tmp_path / "d", 0)
    assert stop.value.code == 2
