"""The webdataset loader: the same batches-per-rank contract as DALI, for machines without it.

The epoch's order comes first, from the plan alone (:mod:`pgnm.data.order`: shard order
permuted across ranks, then a shuffle within the rank's range). Batch b holds positions
``b*B .. b*B + B - 1`` of that order; DataLoader worker w builds every ``num_workers``-th
batch and reads just its samples, each by byte range through the shard index
(:mod:`pgnm.data.spans`, parsed by the stock ``webdataset`` tar reader). So one epoch reads
each sample once whatever ``num_workers`` is, the batches do not depend on the worker count,
and resuming at (epoch, step) reads nothing of the batches already done. Workers decode and
augment with PIL and torch and emit uint8 grey images (float for 16-bit data sets); the main
process windows and normalises them (for 8 bits, a quarter of the bytes through shared memory).

Everything random is a function of (seed, epoch, rank, position in the epoch), so resuming at
(epoch, step) regenerates exactly the batches an uninterrupted run would have seen. With
``elastic`` the order is the split's global one (:func:`pgnm.data.order.elastic_rank_order`)
and the augmentation a function of (seed, epoch, global position): no rank in it, so a run
can resume at another world size and see the same global batches.

Bad samples (undecodable image, missing label, a member that does not match the index) raise
a :class:`DataError` naming the shard and key, or with ``on_bad_sample="skip"`` are dropped
and counted, their batch refilled with copies of its good samples so every batch keeps its
size. Shards whose size or index does not match ``dataset.json`` are refused before reading.
"""

from __future__ import annotations

import io
import warnings
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import NamedTuple

import numpy as np
import torch
import torchvision.transforms.v2.functional as TF
from PIL import Image
from torch import Tensor
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from pgnm.data.heap import fix_mmap_threshold
from pgnm.data.manifest import check_shard_sizes, load_classes, split_shards
from pgnm.data.order import elastic_rank_order, locate, rank_order
from pgnm.data.shards import image_error
from pgnm.data.spans import ShardIndex, read_index, read_samples
from pgnm.data.spec import (
    AugmentSpec,
    DataError,
    batches_per_epoch,
    random_resized_crop_box,
    value_range,
)
from pgnm.seeds import derive


def _label(sample: dict, num_classes: int) -> tuple[int | None, str]:
    """The sample's label (``lbl``: little-endian int32; else ``cls``: decimal text), or a
    problem: missing, malformed, or outside the classes ``classes.json`` lists."""
    raw = sample.get("lbl")
    if raw is not None and len(raw) != 4:
        return None, f"lbl holds {len(raw)} bytes, expected a 4-byte int32"
    if raw is not None:
        label = int(np.frombuffer(raw, "<i4")[0])
    elif sample.get("cls"):
        try:
            label = int(sample["cls"].decode().strip())
        except (UnicodeDecodeError, ValueError):
            return None, f"cls is not an integer: {sample['cls'][:20]!r}"
    else:
        return None, "missing label"
    if not 0 <= label < num_classes:
        return None, f"label {label} is outside 0..{num_classes - 1} (classes.json)"
    return label, ""


def _check_key(key: str, shard: Path) -> None:
    path = PurePosixPath(key)
    if path.is_absolute() or ".." in path.parts:
        raise DataError(f"{shard}: member {key!r} has an absolute or parent path; refusing it")


class Skip(NamedTuple):
    """A sample dropped under ``data.on_bad_sample=skip``."""

    shard: str
    key: str
    problem: str


class _Batch(NamedTuple):
    """What a worker hands over: uint8 images, labels, the skips and shard bytes behind them."""

    grey: Tensor
    labels: Tensor
    skips: list[Skip]
    bytes_read: int


class _Failure(NamedTuple):
    """A data error found in a DataLoader worker, carried to the main process as an item."""

    message: str


class _RankStream(IterableDataset):
    """Batches ``start ..`` of one rank's epoch, ``order`` being the epoch's sample numbers."""

    def __init__(self, loader: WebDatasetLoader, epoch: int, start: int,
                 order: np.ndarray, augment_keys: np.ndarray | None = None) -> None:
        self.loader, self.epoch, self.start, self.order = loader, epoch, start, order
        self.augment_keys = augment_keys  # elastic: each sample's global position

    def __iter__(self) -> Iterator[_Batch | _Failure]:
        ld = self.loader
        worker = get_worker_info()
        worker_id, workers = (worker.id, worker.num_workers) if worker else (0, 1)
        try:
            for batch in range(self.start + worker_id, ld.batches_per_epoch, workers):
                yield self._batch(batch)
        except DataError as err:  # handed over as data: a worker's exception would reach the
            yield _Failure(str(err))  # main process wrapped in its traceback text

    def _batch(self, batch: int) -> _Batch:
        ld = self.loader
        first = batch * ld.batch_size
        numbers = self.order[first:first + ld.batch_size]
        shards, within = locate(numbers, ld.shard_counts)
        wanted: dict[int, list[int]] = defaultdict(list)
        for shard, position in zip(shards.tolist(), within.tolist()):
            wanted[shard].append(position)
        read, samples = 0, {}
        for shard, positions in wanted.items():
            got, count = read_samples(ld.shard_index(shard), positions)
            read += count
            samples.update({(shard, p): s for p, s in zip(positions, got)})
        images, labels = [], []
        for i, (shard, position) in enumerate(zip(shards.tolist(), within.tolist())):
            key, members = samples[(shard, position)]
            decoded = self._sample(ld.tars[shard], key, members, first + i)
            if decoded is not None:
                images.append(decoded[0])
                labels.append(decoded[1])
        pending = ld._pending_skips[:]
        ld._pending_skips.clear()
        return _Batch(*self._stack(images, labels, batch), pending, read)

    def _sample(
        self, tar: Path, key: str, members: dict | str, position: int
    ) -> tuple[Tensor, int] | None:
        """The sample's augmented image and label, or None when it is skipped."""
        ld = self.loader
        _check_key(key, tar)
        if isinstance(members, str):
            ld.bad_sample(tar, key, members)
            return None
        payload = members.get(ld.image_extension)
        label, problem = _label(members, ld.num_classes)
        problem = "missing image" if not payload else problem
        if problem:
            ld.bad_sample(tar, key, problem)
            return None
        image = self._decode(tar, key, payload, position)
        return None if image is None else (image, label)

    def _decode(self, tar: Path, key: str, payload: bytes, position: int) -> Tensor | None:
        ld, spec = self.loader, self.loader.spec
        try:
            if ld.image_format == "raw":
                side = ld.raw_size
                grey = torch.frombuffer(bytearray(payload), dtype=torch.uint8).view(1, side, side)
            else:
                with Image.open(io.BytesIO(payload)) as image:
                    if ld.bit_depth == 16:  # convert("L") would clamp; float keeps 16 bits
                        grey = torch.from_numpy(np.asarray(image, np.float32).copy())[None]
                    else:
                        grey = torch.from_numpy(np.array(image.convert("L"))).unsqueeze(0)
        except Exception as err:  # PIL raises many types for broken files
            ld.bad_sample(tar, key, f"undecodable image ({image_error(err)})")
            return None
        size = [spec.image_size, spec.image_size]
        if not ld.train:
            grey = TF.resize(grey, [spec.eval_resize], antialias=True)
            return TF.center_crop(grey, size)
        keys = self.augment_keys
        rng = np.random.default_rng([ld.seed, self.epoch, ld.rank, position] if keys is None
                                    else [ld.seed, self.epoch, int(keys[position])])
        top, left, h, w = random_resized_crop_box(grey.shape[-2], grey.shape[-1], rng, spec)
        grey = TF.resized_crop(grey, top, left, h, w, size, antialias=True)
        return TF.horizontal_flip(grey) if rng.random() < spec.flip else grey

    def _stack(self, images: list[Tensor], labels: list[int], batch: int) -> tuple[Tensor, Tensor]:
        ld = self.loader
        if not images:
            raise DataError(f"batch {batch} of {ld.tars[0].parent}: every sample was unreadable")
        if ld.train:  # skipped images: repeat good ones so every batch keeps its size
            while len(images) < ld.batch_size:
                images.append(images[len(images) % len(labels)])
                labels.append(labels[len(labels) % len(labels)])
        return torch.stack(images), torch.tensor(labels, dtype=torch.int64)


class WebDatasetLoader:
    def __init__(
        self,
        root: str | Path,
        split: str,
        batch_size: int,
        train: bool,
        spec: AugmentSpec,
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
        num_workers: int = 2,
        shuffle_window: int = 0,
        on_bad_sample: str = "error",
        accumulation: int = 1,
        pin_memory: bool = False,
        check_md5: bool = False,
        elastic: bool = False,
        heap_mmap_threshold_kib: int | None = 128,
    ) -> None:
        info, self.tars, _ = split_shards(root, split)
        check_shard_sizes(root, split, info, check_md5)
        self.num_classes = len(load_classes(root))
        self.shard_counts = [shard.samples for shard in info.splits[split].shards]
        self.image_format, self.image_extension = info.image_format, info.image_extension
        self.raw_size, self.bit_depth = info.raw_size, info.bit_depth
        self.values = value_range(info.bit_depth, info.value_offset, spec.window, f"{root}")
        self.split, self.batch_size, self.train, self.spec = split, batch_size, train, spec
        self.rank, self.world_size, self.seed = rank, world_size, seed
        self.num_workers, self.shuffle_window = num_workers, shuffle_window
        self.on_bad_sample = on_bad_sample
        self.accumulation, self.elastic = accumulation, elastic and train
        self.pin_memory = pin_memory  # for a GPU: batches in page-locked memory, copied async
        self.heap_mmap_threshold_kib = heap_mmap_threshold_kib
        self.num_samples = info.splits[split].samples
        self.batches_per_epoch = batches_per_epoch(
            self.num_samples, batch_size, train, rank, world_size, f"{root}/{split}", accumulation,
            self.elastic)
        self.epoch, self.step, self.skipped = 0, 0, 0
        self._indexes: dict[int, ShardIndex] = {}  # read when first needed, per process
        self._pending_skips: list[Skip] = []  # found in this process, not yet handed over
        self.skipped_samples: dict[tuple[str, str], str] = {}  # this epoch's: problem by key
        self.bytes_read = 0  # of shard data, this epoch, over all workers

    def __len__(self) -> int:
        return self.batches_per_epoch

    def shard_index(self, shard: int) -> ShardIndex:
        if shard not in self._indexes:
            self._indexes[shard] = read_index(self.tars[shard], self.shard_counts[shard])
        return self._indexes[shard]

    def epoch_order(self, epoch: int) -> np.ndarray:
        """The sample numbers (stored order) this rank reads in ``epoch``, batch by batch."""
        return self._order_and_keys(epoch)[0]

    def _order_and_keys(self, epoch: int) -> tuple[np.ndarray, np.ndarray | None]:
        if self.elastic:
            return elastic_rank_order(self.shard_counts, self.seed, epoch, self.rank,
                                      self.world_size, self.batch_size, self.accumulation,
                                      self.shuffle_window)
        order = rank_order(self.shard_counts, self.seed, epoch, self.rank, self.world_size,
                           self.train, self.shuffle_window)
        return (order[: self.batches_per_epoch * self.batch_size] if self.train else order), None

    def sample_bytes(self, numbers: np.ndarray) -> int:
        """Bytes of the tar spans holding samples ``numbers`` (stored order): what reading
        them once costs, the yardstick of ``bytes_read``."""
        shards, positions = locate(numbers, self.shard_counts)
        return sum(int(self.shard_index(s).ends[p] - self.shard_index(s).starts[p])
                   for s, p in zip(shards.tolist(), positions.tolist()))

    def bad_sample(self, shard: Path, key: str, problem: str) -> None:
        if self.on_bad_sample == "error":
            raise DataError(f"{shard}: sample {key}: {problem}")
        # Warned, and handed to the main process with the batch (a DataLoader worker's own
        # counters die with it): ``skipped_samples`` holds the epoch's, per shard and key.
        self.skipped += 1
        self._pending_skips.append(Skip(str(shard), key, problem))
        warnings.warn(f"{shard}: sample {key}: {problem}; skipped (data.on_bad_sample=skip)",
                      stacklevel=2)

    def check_shard(self, tar: Path, keys: set[str] | None = None) -> None:
        """Read one of this split's shards and decode its samples (only ``keys``, if given);
        raises :class:`DataError` naming the first bad one (how DALI's errors are made
        specific)."""
        shard = self.tars.index(tar)
        index = self.shard_index(shard)
        positions = [p for p, k in enumerate(index.keys) if keys is None or k in keys]
        stream = _RankStream(self, self.epoch, 0, np.zeros(0, np.int64))
        got, _ = read_samples(index, positions)
        for position, (key, members) in zip(positions, got):
            stream._sample(tar, key, members, position)

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.epoch, self.step = epoch, 0

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        if not self.train:  # evaluation always reads the whole share, from its start
            self.step = 0
        stream = _RankStream(self, self.epoch, self.step, *self._order_and_keys(self.epoch))
        if self.num_workers and self.heap_mmap_threshold_kib is not None:
            fix_mmap_threshold(self.heap_mmap_threshold_kib * 1024)
        loader = DataLoader(
            stream,
            batch_size=None,
            num_workers=self.num_workers,
            prefetch_factor=2 if self.num_workers else None,
            # Its own generator: a DataLoader draws its workers' base seed when iteration
            # starts, from torch's global RNG unless given one -- a draw that shifts the
            # training stream (the masks) whenever a run resumes mid-epoch.
            generator=torch.Generator().manual_seed(derive(self.seed, self.epoch, self.rank)),
        )
        mean, std = self.spec.mean, self.spec.std
        if self.step == 0:
            self.skipped_samples, self.bytes_read = {}, 0
        for item in loader:
            if isinstance(item, _Failure):
                raise DataError(item.message)
            self.skipped_samples.update({(k.shard, k.key): k.problem for k in item.skips})
            self.bytes_read += item.bytes_read
            self.step += 1
            grey, values = item.grey, self.values
            images = torch.empty(grey.shape, dtype=torch.float32, pin_memory=self.pin_memory)
            torch.sub(grey, values.low, out=images).div_(values.span)
            if values.clip:
                images.clamp_(0.0, 1.0)
            images.sub_(mean).div_(std)
            yield images.expand(-1, 3, -1, -1), item.labels
        self.epoch, self.step = self.epoch + 1, 0

    def state_dict(self) -> dict:
        # the epoch's skips so far travel with the position: a resumed epoch still counts
        # (and names) the samples skipped before the interruption
        skipped = [(shard, key, problem) for (shard, key), problem in self.skipped_samples.items()]
        return {"epoch": self.epoch, "step": self.step, "skipped": skipped}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.step = state["epoch"], state["step"]
        self.skipped_samples = {(s, k): p for s, k, p in state.get("skipped", [])}
