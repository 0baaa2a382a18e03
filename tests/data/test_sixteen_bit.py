"""16-bit data sets: both loaders read every bit (no clamping to 8), and a window in the
data's own units (Hounsfield) is applied the same way by both."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from pgnm.data import DaliLoader, WebDatasetLoader
from pgnm.data.manifest import ClassInfo
from pgnm.data.shards import Record
from pgnm.data.spec import AugmentSpec, DataError
from pgnm.data.writer import write_dataset

OFFSET = 32768  # signed CT values are stored as HU + 32768
SIDE = 16


def hounsfield(i: int) -> np.ndarray:
    """A CT-like image: air (-1000), water (0), bone (+1200), a ramp in between."""
    rng = np.random.default_rng(i)
    return rng.choice([-1000, -300, 0, 40, 400, 1200], size=(SIDE, SIDE)).astype(np.int32)


@pytest.fixture(scope="module")
def ct_shards(tmp_path_factory):
    out = tmp_path_factory.mktemp("sixteen")
    records = [
        Record("val", f"ct{i}.dcm", "c0", 0, pixels=(hounsfield(i) + OFFSET).astype(np.uint16),
               value_offset=OFFSET)
        for i in range(4)
    ]
    write_dataset(out, records, [ClassInfo(key="c0", label=0)], "test", samples_per_shard=2,
                  workers=1)
    return out


def same_images(got: torch.Tensor, expected: np.ndarray) -> bool:
    """The same images in any order (the writer shuffles samples across shards)."""
    want = [torch.from_numpy(e).float() for e in expected]
    return all(any(torch.allclose(g, w, atol=1e-5) for w in want) for g in got) and len(
        got) == len(want)


def evaluate(kind: str, root, window) -> torch.Tensor:
    # no resize, no crop: evaluation at the stored size shows the values themselves
    spec = AugmentSpec(image_size=SIDE, eval_resize=SIDE, window=window)
    if kind == "dali":
        loader = DaliLoader(root, "val", 4, False, spec, num_threads=1)
    else:
        loader = WebDatasetLoader(root, "val", 4, False, spec, num_workers=0)
    images, _ = next(iter(loader))
    return images[:, 0] * spec.std + spec.mean  # back to 0..1


def test_the_manifest_records_sixteen_bits_and_the_offset(ct_shards):
    info = json.loads((ct_shards / "dataset.json").read_text())
    assert info["bit_depth"] == 16 and info["value_offset"] == OFFSET


@pytest.mark.parametrize("kind", ["webdataset", "dali"])
def test_sixteen_bit_values_are_read_without_clamping(ct_shards, kind):
    got = evaluate(kind, ct_shards, None)
    assert same_images(got, np.stack([(hounsfield(i) + OFFSET) / 65535.0 for i in range(4)]))
    assert len(torch.unique(torch.round(got * 65535))) == 6  # six HU levels, none merged


@pytest.mark.parametrize("kind", ["webdataset", "dali"])
def test_a_window_in_hounsfield_units_maps_and_clips_like_a_viewer(ct_shards, kind):
    low, high = -160.0, 240.0  # a mediastinum-like window
    got = evaluate(kind, ct_shards, (low, high))
    hu = np.stack([hounsfield(i) for i in range(4)]).astype(np.float64)
    assert same_images(got, np.clip((hu - low) / (high - low), 0, 1))


def test_a_window_on_an_eight_bit_set_is_refused(tmp_path):
    records = [Record("val", f"x{i}", "c0", 0, pixels=np.zeros((8, 8), np.uint8) + i)
               for i in range(2)]
    write_dataset(tmp_path, records, [ClassInfo(key="c0", label=0)], "test", workers=1)
    with pytest.raises(DataError, match="data.window is set but .* holds 8-bit images"):
        WebDatasetLoader(tmp_path, "val", 2, False, AugmentSpec(window=(0, 1)), num_workers=0)
