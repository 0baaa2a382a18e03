"""MedMNIST-format npz files and folder-per-class downstream sets from the generator."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]

from data_tools.synth import CompanionError, write_folder_dataset, write_medmnist_npz  # noqa: E402
from data_tools.synth_radimagenet import main as cli  # noqa: E402

KEYS = {f"{s}_{k}" for s in ("train", "val", "test") for k in ("images", "labels")}


@pytest.mark.parametrize(
    "flag, n_classes", [("organamnist", 11), ("breastmnist", 2), ("pneumoniamnist", 2)]
)
def test_npz_files_have_the_medmnist_format(tmp_path, flag, n_classes):
    counts = (2 * n_classes, 4, 4)
    paths = write_medmnist_npz(tmp_path, flag, sizes=(28, 64), counts=counts, seed=1)
    assert [p.name for p in paths] == [f"{flag}.npz", f"{flag}_64.npz"]
    for path, size in zip(paths, (28, 64)):
        with np.load(path) as npz:
            assert set(npz.files) == KEYS
            for split, n in zip(("train", "val", "test"), counts):
                images, labels = npz[f"{split}_images"], npz[f"{split}_labels"]
                assert images.dtype == np.uint8 and images.shape == (n, size, size)
                assert np.issubdtype(labels.dtype, np.integer) and labels.shape == (n, 1)
                assert labels.min() >= 0 and labels.max() < n_classes
                assert images.std() > 5  # real pictures, not constants
    with np.load(paths[0]) as a, np.load(paths[1]) as b:  # same labels at every size
        assert np.array_equal(a["train_labels"], b["train_labels"])
    if flag == "organamnist":
        with np.load(paths[0]) as npz:
            assert set(npz["train_labels"].ravel()) == set(range(11))


def test_rgb_npz_and_bad_flags(tmp_path):
    (path,) = write_medmnist_npz(tmp_path, "breastmnist", sizes=(32,), counts=(4, 4, 4), rgb=True)
    with np.load(path) as npz:
        images = npz["train_images"]
        assert images.shape == (4, 32, 32, 3)
        assert np.array_equal(images[..., 0], images[..., 2])
    with pytest.raises(CompanionError, match="organamnist"):
        write_medmnist_npz(tmp_path, "chestmnist")


@pytest.mark.parametrize(
    "name, classes",
    [
        ("busi", {"benign", "malignant", "normal"}),
        ("brain_tumor", {"glioma", "meningioma", "notumor", "pituitary"}),
        ("brain_mri", {"yes", "no"}),
        ("pneumonia_xr", {"NORMAL", "PNEUMONIA"}),
    ],
)
def test_folder_datasets_have_split_and_class_folders(tmp_path, name, classes):
    root = write_folder_dataset(tmp_path, name, per_class=(2, 1, 1), size=48, seed=0)
    assert root == tmp_path / name
    for split, n in (("train", 2), ("val", 1), ("test", 1)):
        assert {p.name for p in (root / split).iterdir()} == classes
        for cls in classes:
            files = sorted((root / split / cls).glob("*.png"))
            assert len(files) == n
            with Image.open(files[0]) as im:
                assert im.size == (48, 48) and im.mode == "L"
    if name == "busi":
        assert (root / "train" / "benign" / "benign (1).png").is_file()


def test_cli_companions_only(tmp_path):
    out = tmp_path / "comp"
    assert (
        cli(
            [
                "--out",
                str(out),
                "--no-radimagenet",
                "--medmnist-npz",
                "pneumoniamnist",
                "--sizes",
                "28",
                "--npz-counts",
                "4,2,2",
                "--downstream",
                "busi",
                "--downstream-per-class",
                "1,1,1",
                "--size",
                "32",
                "--quiet",
            ]
        )
        == 0
    )
    assert (out / "pneumoniamnist.npz").is_file() and (out / "busi" / "val").is_dir()
    assert not (out / "radiology_ai").exists()
