"""The webdataset loader: the same batches-per-rank contract as DALI, for machines without it.

Tars are parsed by the stock ``webdataset`` library; decoding and augmentation run in
DataLoader workers with PIL and torch. Each rank reads its contiguous range of the split
(``spec.py``), shuffles it in a seeded buffer, and cuts it into batches; worker w builds every
``num_workers``-th batch, so the order of batches does not depend on timing. Workers emit
uint8 grey images and the main process normalises them: a quarter of the bytes through
shared memory.

Everything random is a function of (seed, epoch, rank, position in the epoch), so resuming at
(epoch, step) regenerates exactly the batches an uninterrupted run would have seen.

Bad samples (undecodable image, missing label, zero-byte file, truncated tar) raise a
:class:`DataError` naming the shard and key, or with ``on_bad_sample="skip"`` are dropped and
counted; training ranks then wrap around their range so every rank still fills the same
number of batches. Member names that are absolute or contain ``..`` always raise.
"""

from __future__ import annotations

import io
import random
import warnings
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import NamedTuple

import numpy as np
import torch
import torchvision.transforms.v2.functional as TF
from PIL import Image
from torch import Tensor
from torch.utils.data import DataLoader, IterableDataset, get_worker_info
from webdataset.tariterators import tarfile_samples

from pgnm.data.manifest import check_shard_sizes, load_classes, split_shards
from pgnm.data.spec import (
    AugmentSpec,
    DataError,
    batches_per_epoch,
    random_resized_crop_box,
    rank_range,
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


class _Failure(NamedTuple):
    """A data error found in a DataLoader worker, carried to the main process as an item."""

    message: str


class _RankStream(IterableDataset):
    """Batches of one rank for one epoch, starting at batch ``start``; see the module doc."""

    def __init__(self, loader: WebDatasetLoader, epoch: int, start: int) -> None:
        self.loader, self.epoch, self.start = loader, epoch, start

    # -------------------------------------------------------------- raw samples

    def _raw_samples(self) -> Iterator[tuple[Path, str, bytes, int]]:
        """(shard, key, image bytes, label) over this rank's range, in stored order."""
        ld = self.loader
        range_index = (ld.rank + self.epoch) % ld.world_size if ld.train else ld.rank
        start, stop = rank_range(ld.num_samples, range_index, ld.world_size)
        first = 0
        for tar, count in zip(ld.tars, ld.shard_counts, strict=True):
            lo, hi = max(start, first), min(stop, first + count)
            if lo < hi:
                yield from self._read_shard(tar, lo - first, hi - lo)
            first += count

    def _read_shard(
        self, tar: Path, skip: int, take: int
    ) -> Iterator[tuple[Path, str, bytes, int]]:
        ld, seen, errors = self.loader, 0, []

        def handler(exn: Exception) -> bool:
            errors.append(exn)
            return False  # stop this shard; a truncated tar has nothing readable after the cut

        for sample in tarfile_samples([{"url": str(tar)}], handler=handler):
            key = sample["__key__"]
            _check_key(key, tar)
            if seen < skip:
                seen += 1
                continue
            if seen >= skip + take:
                return
            seen += 1
            image = sample.get(ld.image_extension)
            label, problem = _label(sample, ld.num_classes)
            problem = "missing image" if not image else problem
            if problem:
                ld.bad_sample(tar, key, problem)
                continue
            yield tar, key, image, label
        if errors:
            ld.bad_sample(tar, "?", f"unreadable tar ({errors[0]})")

    def _epoch_stream(self) -> Iterator[tuple[Path, str, bytes, int]]:
        ld = self.loader
        if not ld.train:
            yield from self._raw_samples()
            return
        needed = ld.batches_per_epoch * ld.batch_size
        rng = random.Random(f"{ld.seed}:{self.epoch}:{ld.rank}")
        buffer: list = []
        produced = 0
        while produced < needed:
            any_sample = False
            for item in self._raw_samples():  # wraps around if skipped samples left it short
                any_sample = True
                if len(buffer) < ld.shuffle_buffer:
                    buffer.append(item)
                    continue
                slot = rng.randrange(len(buffer))
                buffer[slot], item = item, buffer[slot]
                yield item
                produced += 1
                if produced == needed:
                    return
            if not any_sample:
                raise DataError(f"no readable sample in this rank's share of {ld.tars[0].parent}")
            rng.shuffle(buffer)
            while buffer and produced < needed:
                yield buffer.pop()
                produced += 1

    # -------------------------------------------------------------- batches

    def _decode(self, tar: Path, key: str, payload: bytes, position: int) -> Tensor | None:
        ld, spec = self.loader, self.loader.spec
        try:
            if ld.image_format == "raw":
                side = ld.raw_size
                grey = torch.frombuffer(bytearray(payload), dtype=torch.uint8).view(1, side, side)
            else:
                with Image.open(io.BytesIO(payload)) as image:
                    grey = torch.from_numpy(np.array(image.convert("L"))).unsqueeze(0)
        except Exception as err:  # PIL raises many types for broken files
            ld.bad_sample(tar, key, f"undecodable image ({err})")
            return None
        size = [spec.image_size, spec.image_size]
        if not ld.train:
            grey = TF.resize(grey, [spec.eval_resize], antialias=True)
            return TF.center_crop(grey, size)
        rng = np.random.default_rng([ld.seed, self.epoch, ld.rank, position])
        top, left, h, w = random_resized_crop_box(grey.shape[-2], grey.shape[-1], rng, spec)
        grey = TF.resized_crop(grey, top, left, h, w, size, antialias=True)
        return TF.horizontal_flip(grey) if rng.random() < spec.flip else grey

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor, list[Skip]] | _Failure]:
        pending = self.loader._pending_skips
        try:
            for images, labels in self._batches():
                yield images, labels, pending[:]
                pending.clear()
        except DataError as err:  # handed over as data: a worker's exception would reach the
            yield _Failure(str(err))  # main process wrapped in its traceback text

    def _batches(self) -> Iterator[tuple[Tensor, Tensor]]:
        ld = self.loader
        worker = get_worker_info()
        worker_id, workers = (worker.id, worker.num_workers) if worker else (0, 1)
        images, labels = [], []
        for position, (tar, key, payload, label) in enumerate(self._epoch_stream()):
            batch = position // ld.batch_size
            mine = batch >= self.start and (batch - self.start) % workers == worker_id
            if mine:
                image = self._decode(tar, key, payload, position)
                if image is not None:
                    images.append(image)
                    labels.append(label)
            if (position + 1) % ld.batch_size == 0 and mine:
                yield self._stack(images, labels, batch)
                images, labels = [], []
        if images:
            yield self._stack(images, labels, batch)

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
        shuffle_buffer: int = 512,
        on_bad_sample: str = "error",
        accumulation: int = 1,
        pin_memory: bool = False,
        check_md5: bool = False,
    ) -> None:
        info, self.tars, _ = split_shards(root, split)
        check_shard_sizes(root, split, info, check_md5)
        self.num_classes = len(load_classes(root))
        self.shard_counts = [shard.samples for shard in info.splits[split].shards]
        self.image_format, self.image_extension = info.image_format, info.image_extension
        self.raw_size = info.raw_size
        self.split, self.batch_size, self.train, self.spec = split, batch_size, train, spec
        self.rank, self.world_size, self.seed = rank, world_size, seed
        self.num_workers, self.shuffle_buffer = num_workers, shuffle_buffer
        self.on_bad_sample = on_bad_sample
        self.pin_memory = pin_memory  # for a GPU: batches in page-locked memory, copied async
        self.num_samples = info.splits[split].samples
        self.batches_per_epoch = batches_per_epoch(
            self.num_samples, batch_size, train, rank, world_size, f"{root}/{split}", accumulation
        )
        self.epoch, self.step, self.skipped = 0, 0, 0
        self._pending_skips: list[Skip] = []  # found in this process, not yet handed over
        self.skipped_samples: dict[tuple[str, str], str] = {}  # this epoch's: problem by key

    def __len__(self) -> int:
        return self.batches_per_epoch

    def bad_sample(self, shard: Path, key: str, problem: str) -> None:
        if self.on_bad_sample == "error":
            raise DataError(f"{shard}: sample {key}: {problem}")
        # Warned, and handed to the main process with the next batch (a DataLoader worker's
        # own counters die with it): ``skipped_samples`` holds the epoch's, per shard and key.
        self.skipped += 1
        self._pending_skips.append(Skip(str(shard), key, problem))
        warnings.warn(f"{shard}: sample {key}: {problem}; skipped (data.on_bad_sample=skip)",
                      stacklevel=2)

    def check_shard(self, tar: Path, keys: set[str] | None = None) -> None:
        """Read one of this split's shards and decode its samples (only ``keys``, if given);
        raises :class:`DataError` naming the first bad one (how DALI's errors are made
        specific)."""
        stream = _RankStream(self, self.epoch, 0)
        count = self.shard_counts[self.tars.index(tar)]
        for position, (shard, key, payload, _) in enumerate(stream._read_shard(tar, 0, count)):
            if keys is None or key in keys:
                stream._decode(shard, key, payload, position)

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.epoch, self.step = epoch, 0

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        if not self.train:  # evaluation always reads the whole share, from its start
            self.step = 0
        stream = _RankStream(self, self.epoch, self.step)
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
            self.skipped_samples = {}
        for item in loader:
            if isinstance(item, _Failure):
                raise DataError(item.message)
            grey, labels, skips = item
            # every worker reads the whole stream, so a skip at read time comes from each
            self.skipped_samples.update({(k.shard, k.key): k.problem for k in skips})
            self.step += 1
            images = torch.empty(grey.shape, dtype=torch.float32, pin_memory=self.pin_memory)
            torch.div(grey, 255.0, out=images).sub_(mean).div_(std)
            yield images.expand(-1, 3, -1, -1), labels
        self.epoch, self.step = self.epoch + 1, 0

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "step": self.step}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.step = state["epoch"], state["step"]
