"""Broken input never hangs: it raises naming the shard and key, or is skipped and counted."""

from __future__ import annotations

import io
import json
import tarfile

import numpy as np
import pytest
from PIL import Image

from pgnm.data import DaliLoader, WebDatasetLoader
from pgnm.data.manifest import DatasetInfo, ShardInfo, SplitInfo
from pgnm.data.shards import write_dali_index
from pgnm.data.spec import AugmentSpec, DataError

SPEC = AugmentSpec(image_size=8, eval_resize=8)


def png(seed: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (12, 12), np.uint8)).save(
        buffer, "PNG"
    )
    return buffer.getvalue()


def build(root, samples, truncate=False):
    """One shard from ``samples``: a list of {component: bytes} (keys s0000, s0001, ...)."""
    (root / "train").mkdir(parents=True)
    tar_path = root / "train" / "shard-000000.tar"
    with tarfile.open(tar_path, "w", format=tarfile.USTAR_FORMAT) as tar:
        for i, components in enumerate(samples):
            for ext, payload in components.items():
                name = ext if "/" in ext else f"s{i:04d}.{ext}"
                info = tarfile.TarInfo(name)
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
    write_dali_index(tar_path, tar_path.with_suffix(".idx"))
    if truncate:
        data = tar_path.read_bytes()
        tar_path.write_bytes(data[: len(data) // 2 + 700])  # mid-member, past the middle
    shard = ShardInfo(
        name=tar_path.name, samples=len(samples), bytes=tar_path.stat().st_size, md5="-"
    )
    info = DatasetInfo(
        source="test",
        image_format="png",
        samples_per_shard=len(samples),
        seed=0,
        plan_hash="-",
        splits={"train": SplitInfo(samples=len(samples), shards=[shard])},
    )
    (root / "dataset.json").write_text(info.model_dump_json())
    (root / "classes.json").write_text(json.dumps([{"key": "a", "label": 0}]))
    return root


def good(i: int) -> dict:
    return {"png": png(i), "cls": b"0", "lbl": np.int32(0).tobytes()}


CASES = {
    "corrupt image": (
        lambda: {"png": b"\x89PNG garbage", "cls": b"0", "lbl": np.int32(0).tobytes()},
        "s0003",
    ),
    "zero-byte image": (lambda: {"png": b"", "cls": b"0", "lbl": np.int32(0).tobytes()}, "s0003"),
    "missing label": (lambda: {"png": png(99)}, "s0003"),
}


def samples_with(case: str) -> list[dict]:
    samples = [good(i) for i in range(8)]
    samples[3] = CASES[case][0]()
    return samples


def wds(root, on_bad):
    return WebDatasetLoader(
        root, "train", 4, True, SPEC, num_workers=0, on_bad_sample=on_bad
    )


@pytest.mark.parametrize("case", sorted(CASES))
def test_webdataset_error_names_shard_and_key(tmp_path, case):
    root = build(tmp_path, samples_with(case))
    with pytest.raises(DataError, match=f"shard-000000.tar: sample {CASES[case][1]}"):
        list(wds(root, "error"))


@pytest.mark.parametrize("case", sorted(CASES))
def test_webdataset_skip_keeps_full_batches_and_counts(tmp_path, case):
    loader = wds(build(tmp_path, samples_with(case)), "skip")
    batches = list(loader)
    assert len(batches) == loader.batches_per_epoch == 2
    assert all(len(labels) == 4 for _, labels in batches)
    assert loader.skipped >= 1


@pytest.mark.timeout(120)
@pytest.mark.parametrize("case", ["corrupt image", "missing label"])
def test_dali_raises_instead_of_hanging(tmp_path, case):
    root = build(tmp_path, samples_with(case))
    loader = DaliLoader(root, "train", 4, False, SPEC, num_threads=1)
    with pytest.raises(
        DataError, match="DALI could not read the shards in .*first bad sample: .*s0003"
    ):
        list(loader)


def test_skips_before_a_resume_still_count_in_the_epoch(tmp_path):
    root = build(tmp_path, samples_with("corrupt image"))
    whole = wds(root, "skip")
    list(whole)
    interrupted = wds(root, "skip")
    for _ in interrupted:  # stop right after the batch that skipped
        if interrupted.skipped_samples:
            break
    resumed = wds(root, "skip")
    resumed.load_state_dict(interrupted.state_dict())
    list(resumed)
    assert resumed.skipped_samples == whole.skipped_samples
    assert list(whole.skipped_samples) == [(str(root / "train" / "shard-000000.tar"), "s0003")]


def test_truncated_tar(tmp_path):
    root = build(tmp_path, [good(i) for i in range(8)], truncate=True)
    with pytest.raises(DataError, match="shard-000000.tar: sample s000[0-9]: the tar ends at"):
        list(wds(root, "error"))
    skipping = wds(root, "skip")
    assert len(list(skipping)) == 2  # the readable samples, repeated to fill the batches
    assert {key for _, key in skipping.skipped_samples} == {"s0005", "s0006", "s0007"}


def test_path_traversal_is_refused(tmp_path):
    samples = [good(i) for i in range(8)]
    samples[2] = {"../escape.png": png(1), "../escape.lbl": np.int32(0).tobytes()}
    root = build(tmp_path, samples)
    with pytest.raises(DataError, match="'../escape' has an absolute or parent path"):
        list(wds(root, "skip"))
