from collections import Counter

import numpy as np
import pytest
from helpers import write_folder, write_npz

from pgnm.data import build_loader
from pgnm.data.manifest import ClassInfo, load_dataset_info
from pgnm.data.shards import Record
from pgnm.data.writer import write_dataset
from pgnm.protocol.subsets import (
    ProtocolDataError,
    prepare_dataset,
    read_samples,
    stratified_sample,
    train_labels,
    trial_seed,
    write_subset,
)

LABELS = {f"k{i:03d}": i % 5 for i in range(50)}  # 5 classes of 10


def _counts(keys, labels=LABELS):
    return Counter(labels[k] for k in keys)


@pytest.mark.parametrize("k", [5, 7, 10, 23, 50])
def test_every_class_as_even_as_k_allows(k):
    keys = stratified_sample(LABELS, k, seed=3)
    counts = _counts(keys)
    assert len(keys) == len(set(keys)) == k
    assert set(counts) == set(range(5)) and max(counts.values()) - min(counts.values()) <= 1


def test_fewer_samples_than_classes_draws_distinct_classes():
    keys = stratified_sample(LABELS, 3, seed=0)
    assert len(_counts(keys)) == 3
    drawn = {frozenset(_counts(stratified_sample(LABELS, 3, seed=s))) for s in range(20)}
    assert len(drawn) > 1  # which classes get the samples is itself random


def test_a_small_class_gives_its_shortfall_to_the_others():
    labels = {**{f"a{i}": 0 for i in range(2)}, **{f"b{i}": 1 for i in range(20)}}
    counts = _counts(stratified_sample(labels, 10, seed=0), labels)
    assert counts == {0: 2, 1: 8}
    with pytest.raises(ProtocolDataError, match="only 22"):
        stratified_sample(labels, 23, seed=0)


def test_draws_are_seeded():
    assert stratified_sample(LABELS, 10, 1) == stratified_sample(LABELS, 10, 1)
    assert stratified_sample(LABELS, 10, 1) != stratified_sample(LABELS, 10, 2)
    assert trial_seed(0, "a", 8, 0) == trial_seed(0, "a", 8, 0) != trial_seed(0, "a", 8, 1)


def test_subset_shards_hold_k_samples_and_link_the_full_test_split(tmp_path):
    shards = prepare_dataset("tiny", str(write_npz(tmp_path / "t.npz")), tmp_path / "shards")
    labels, sources = train_labels(shards)
    keys = stratified_sample(labels, 4, seed=0)
    subset = write_subset(shards, tmp_path / "k4", read_samples(shards, set(keys)), keys)
    info, full = load_dataset_info(subset), load_dataset_info(shards)
    assert info.splits["train"].samples == 4
    assert info.splits["test"] == full.splits["test"] and (subset / "test").is_symlink()
    from pgnm.config import load_config

    config = load_config(overrides=[f"data.root={subset}", "data.batch_size=4",
                                    "data.image_size=32", "data.eval_resize=32",
                                    "data.num_workers=0"])
    batch_labels = [int(y) for _, ys in build_loader(config, "train", True) for y in ys]
    assert sorted(batch_labels) == sorted(labels[k] for k in keys)
    assert sum(len(y) for _, y in build_loader(config, "test", False)) == 20
    assert all(sources[k].startswith("t.npz:train[") for k in keys)


def test_a_subset_of_a_16_bit_set_keeps_its_bit_depth_and_offset(tmp_path):
    rng = np.random.default_rng(0)
    records = [Record(split, f"{split}{i}", f"c{i % 2}", i % 2, value_offset=32768,
                      pixels=rng.integers(0, 65536, (8, 8), np.uint16))
               for split in ("train", "val", "test") for i in range(4)]
    classes = [ClassInfo(key="c0", label=0), ClassInfo(key="c1", label=1)]
    write_dataset(tmp_path / "shards", records, classes, "dicom_to_wds", workers=1)
    labels, _ = train_labels(tmp_path / "shards")
    keys = stratified_sample(labels, 2, seed=0)
    subset = write_subset(tmp_path / "shards", tmp_path / "k2",
                          read_samples(tmp_path / "shards", set(keys)), keys)
    assert (load_dataset_info(subset).bit_depth, load_dataset_info(subset).value_offset) == \
        (16, 32768)


def test_folder_sets_are_sharded_and_bad_sources_named(tmp_path):
    shards = prepare_dataset("busi", str(write_folder(tmp_path / "busi")), tmp_path / "out")
    assert load_dataset_info(shards).splits["train"].samples == 15
    assert prepare_dataset("again", str(shards), tmp_path / "unused") == shards
    with pytest.raises(ProtocolDataError, match="fewshot.datasets.nope"):
        prepare_dataset("nope", str(tmp_path / "missing"), tmp_path / "x")


def test_a_folder_set_without_val_gets_one_carved_from_train(tmp_path):
    import shutil

    from pgnm.data.manifest import ValCarving, read_manifest
    from pgnm.protocol.subsets import check_splits

    src = write_folder(tmp_path / "busi", counts=(10, 1, 2))  # 10 train images per class
    shutil.rmtree(src / "val")  # shipped as train/ and test/, like BUSI
    with pytest.raises(ProtocolDataError, match=r"has no \['val'\].*--val-fraction"):
        check_splits("busi", prepare_dataset("busi", str(src), tmp_path / "plain"))
    carving = ValCarving(fraction=0.2, seed=7)
    shards = prepare_dataset("busi", str(src), tmp_path / "carved", carving)
    check_splits("busi", shards)
    info = load_dataset_info(shards)
    assert info.val_carved == carving
    assert (info.splits["train"].samples, info.splits["val"].samples) == (24, 6)
    train = {r.source for r in read_manifest(shards, "train")}
    val = read_manifest(shards, "val")
    assert not train & {r.source for r in val}  # carved out, not copied
    assert Counter(r.label for r in val) == {0: 2, 1: 2, 2: 2}  # stratified
    again = prepare_dataset("busi", str(src), tmp_path / "again", carving)
    assert {r.source for r in read_manifest(again, "val")} == {r.source for r in val}
