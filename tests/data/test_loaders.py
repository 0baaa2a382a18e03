"""Both loaders against the same contract: shapes, equal batches per rank, coverage, resume."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pgnm.config import load_config
from pgnm.data import DaliLoader, WebDatasetLoader, build_loader, choose_loader
from pgnm.data.manifest import ClassInfo
from pgnm.data.shards import Record
from pgnm.data.spec import AugmentSpec, DataError, rank_range
from pgnm.data.writer import write_dataset

SPEC = AugmentSpec(image_size=16, eval_resize=20)
N_TRAIN, N_VAL = 23, 11  # uneven on purpose: 23 samples over 2 ranks, shards of 5


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """Every sample is its own class, so labels identify samples."""
    out = tmp_path_factory.mktemp("loader_shards")
    rng = np.random.default_rng(0)
    records = [
        Record(split, f"{split}{i}", f"c{i}", i, pixels=rng.integers(0, 256, (24, 28), np.uint8))
        for split, n in (("train", N_TRAIN), ("val", N_VAL))
        for i in range(n)
    ]
    classes = [ClassInfo(key=f"c{i}", label=i) for i in range(N_TRAIN)]
    write_dataset(out, records, classes, "test", samples_per_shard=5, workers=1)
    return out


def make(kind, root, split, train, **kw):
    if kind == "dali":
        return DaliLoader(root, split, 4, train, SPEC, num_threads=1, shuffle_buffer=4, **kw)
    return WebDatasetLoader(
        root, split, 4, train, SPEC, num_workers=kw.pop("num_workers", 0), **kw
    )


KINDS = ["dali", "webdataset"]


@pytest.mark.parametrize("kind", KINDS)
def test_batch_contract(kind, shards):
    images, labels = next(iter(make(kind, shards, "train", True)))
    assert images.shape == (4, 3, 16, 16) and images.dtype == torch.float32
    assert labels.shape == (4,) and labels.dtype == torch.int64
    assert torch.equal(images[:, 0], images[:, 2])  # grey replicated
    # normalised with the RadImageNet statistics: values span (0 - m)/s .. (1 - m)/s
    assert (
        images.min() >= (0 - 0.3162) / 0.3213 - 1e-4
        and images.max() <= (1 - 0.3162) / 0.3213 + 1e-4
    )


@pytest.mark.parametrize("kind", KINDS)
def test_two_ranks_get_the_same_number_of_batches_on_uneven_shards(kind, shards):
    counts = []
    for rank in range(2):
        loader = make(kind, shards, "train", True, rank=rank, world_size=2)
        batches = list(loader)
        counts.append(len(batches))
        assert all(len(labels) == 4 for _, labels in batches)
    assert counts == [2, 2]  # floor(23 / 2) = 11 samples -> 2 full batches each


@pytest.mark.parametrize("kind", KINDS)
def test_evaluation_covers_every_sample_once_across_ranks(kind, shards):
    seen = []
    for rank in range(2):
        loader = make(kind, shards, "val", False, rank=rank, world_size=2)
        labels = torch.cat([lab for _, lab in loader]).tolist()
        start, stop = rank_range(N_VAL, rank, 2)
        assert len(labels) == stop - start
        seen += labels
    assert sorted(seen) == list(range(N_VAL))


@pytest.mark.parametrize("kind", KINDS)
def test_training_order_reshuffles_between_epochs(kind, shards):
    loader = make(kind, shards, "train", True)
    first = torch.cat([lab for _, lab in loader]).tolist()
    second = torch.cat([lab for _, lab in loader]).tolist()
    assert loader.epoch == 2
    assert first != second and len(set(first)) == len(first) == 20


@pytest.mark.parametrize("kind", KINDS)
def test_resume_mid_epoch_gives_identical_batches(kind, shards):
    loader = make(kind, shards, "train", True, rank=1, world_size=2, seed=5)
    loader.set_epoch(1)
    iterator = iter(loader)
    next(iterator)
    state = loader.state_dict()
    rest = list(iterator)
    resumed = make(kind, shards, "train", True, rank=1, world_size=2, seed=5)
    resumed.load_state_dict(state)
    again = list(resumed)
    assert len(rest) == len(again) == 1
    for (xa, ya), (xb, yb) in zip(rest, again, strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


def test_webdataset_batches_do_not_depend_on_the_worker_count(shards):
    runs = [list(make("webdataset", shards, "train", True, num_workers=w)) for w in (0, 2, 4)]
    for batches in runs[1:]:
        for (xa, ya), (xb, yb) in zip(runs[0], batches, strict=True):
            assert torch.equal(xa, xb) and torch.equal(ya, yb)


@pytest.mark.parametrize("workers", [0, 2, 4])
def test_an_epoch_reads_each_sample_once_whatever_the_worker_count(shards, workers):
    evaluation = make("webdataset", shards, "val", False, num_workers=workers)
    assert len(torch.cat([labels for _, labels in evaluation])) == N_VAL
    every_sample = sum(evaluation.shard_index(s).span_bytes for s in range(len(evaluation.tars)))
    assert evaluation.bytes_read == every_sample  # the whole split, once
    training = make("webdataset", shards, "train", True, num_workers=workers, world_size=2)
    labels = torch.cat([labels for _, labels in training]).tolist()
    numbers = training.epoch_order(0)
    assert len(set(numbers.tolist())) == len(numbers) == len(labels) == 8
    assert training.bytes_read == training.sample_bytes(numbers)  # what it trains on, once


def test_resuming_mid_epoch_reads_only_the_batches_left(shards):
    loader = make("webdataset", shards, "train", True, num_workers=2)
    loader.load_state_dict({"epoch": 1, "step": 3})
    assert len(list(loader)) == 2
    assert loader.bytes_read == loader.sample_bytes(loader.epoch_order(1)[12:])


def test_too_few_samples_for_a_batch_per_rank(shards):
    with pytest.raises(DataError, match="cannot fill one batch of 4 on each of 8 ranks"):
        make("webdataset", shards, "val", True, world_size=8)


def test_build_loader_from_config(shards):
    config = load_config(
        overrides=[
            f"data.root={shards}",
            "data.batch_size=2",
            "data.image_size=16",
            "data.eval_resize=20",
            "mask.kernel_size=3",
            "data.num_workers=0",
        ]
    )
    assert choose_loader(config) == "dali"
    loader = build_loader(config, "val", train=False)
    assert isinstance(loader, DaliLoader) and len(loader) == 6
    skip = load_config(overrides=[f"data.root={shards}", "data.on_bad_sample=skip"])
    assert choose_loader(skip) == "webdataset"
    with pytest.raises(DataError, match="data.root is not set"):
        build_loader(load_config(), "train", train=True)
