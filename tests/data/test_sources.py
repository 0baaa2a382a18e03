"""The source readers: RadImageNet paths, folder-per-class sets and MedMNIST-format files."""

from __future__ import annotations

import numpy as np
import pytest
from medmnist_files import write_npz
from PIL import Image

from pgnm.data.shards import ShardingError
from pgnm.data.sources import (
    radimagenet_class_key,
    records_from_folder,
    records_from_medmnist,
)


@pytest.mark.parametrize(
    ("filename", "key"),
    [
        ("radiology_ai/CT/lung/Nodule/lung009382.png", "CT__lung__Nodule"),
        ("radiology_ai/MR/af/ca++_tendinosis/foot000001.png", "MR__af__ca++_tendinosis"),
        ("radiology_ai/MR/af/achilles_pathology_/ankle000002.png", "MR__af__achilles_pathology_"),
        ("radiology_ai/CT/lung/Airspace_opacity/x.png", "CT__lung__Airspace_opacity"),
        ("radiology_ai/US/thyroid/usn418235.png", "US__thyroid"),
    ],
)
def test_class_key_comes_from_the_path_untouched(filename, key):
    assert radimagenet_class_key(filename)[0] == key


@pytest.mark.parametrize(
    "filename",
    [
        "CT/lung/Nodule/x.png",
        "radiology_ai/XR/chest/x.png",
        "radiology_ai/US/thyroid/a/x.png",
        "radiology_ai/CT/lung/x.png",
    ],
)
def test_other_path_shapes_are_refused(filename):
    with pytest.raises(ValueError, match="expected|paths are"):
        radimagenet_class_key(filename)


def save(path, pixels):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)


def test_flat_folder_becomes_train_and_non_images_are_named(tmp_path):
    save(tmp_path / "src" / "benign" / "a.png", np.zeros((8, 8), np.uint8))
    save(tmp_path / "src" / "malignant" / "b.png", np.ones((8, 8), np.uint8))
    records, classes = records_from_folder(tmp_path / "src")
    assert {r.split for r in records} == {"train"} and [c.key for c in classes] == [
        "benign",
        "malignant",
    ]
    (tmp_path / "src" / "benign" / "notes.txt").write_text("x")
    with pytest.raises(ShardingError, match="notes.txt: not an image file"):
        records_from_folder(tmp_path / "src")


def test_medmnist_refuses_multilabel_and_missing_keys(tmp_path):
    write_npz(tmp_path / "chest.npz", labels_shape=None)
    arrays = dict(np.load(tmp_path / "chest.npz"))
    arrays["train_labels"] = np.zeros((6, 14), np.int64)
    np.savez(tmp_path / "chest.npz", **arrays)
    with pytest.raises(ShardingError, match="train_labels has shape \\(6, 14\\)"):
        records_from_medmnist(tmp_path / "chest.npz", None)
    del arrays["val_images"]
    np.savez(tmp_path / "broken.npz", **arrays)
    with pytest.raises(ShardingError, match="broken.npz: missing key\\(s\\) val_images"):
        records_from_medmnist(tmp_path / "broken.npz", None)
    (tmp_path / "junk.npz").write_bytes(b"junk")
    with pytest.raises(ShardingError, match="junk.npz: not a readable .npz"):
        records_from_medmnist(tmp_path / "junk.npz", None)
