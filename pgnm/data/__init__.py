"""Data: WebDataset shards, written and read by this package; loaded by DALI or by webdataset.

The shard contract: :mod:`~pgnm.data.manifest` (the directory layout, ``read_manifest``),
:mod:`~pgnm.data.shards` (one shard: records, encoding, tar + index + sidecar, ``iter_samples``),
:mod:`~pgnm.data.writer` (``write_dataset``: a whole directory) and :mod:`~pgnm.data.sources`
(RadImageNet, folder-per-class and MedMNIST readers). The ``data_tools`` command-line
converters are thin wrappers over these.

``build_loader`` is the one entry point for training: both loaders yield ``(images, labels)``
with images float32 (B, 3, S, S), normalised, and labels int64 (B,); both give every rank the
same number of training batches; both resume exactly from ``state_dict()``.
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import Tensor

from pgnm.config import Config
from pgnm.data.dali import DaliLoader, dali_available
from pgnm.data.spec import AugmentSpec, DataError
from pgnm.data.wds import WebDatasetLoader
from pgnm.errors import DALI_EXTRAS, ConfigError, require_extra


class Loader(Protocol):
    batches_per_epoch: int
    epoch: int
    skipped_samples: dict[tuple[str, str], str]  # this epoch's, (shard, key) -> problem

    def __iter__(self): ...  # noqa: ANN204 - Iterator[tuple[Tensor, Tensor]]
    def __len__(self) -> int: ...
    def set_epoch(self, epoch: int) -> None: ...
    def state_dict(self) -> dict: ...
    def load_state_dict(self, state: dict) -> None: ...


def choose_loader(config: Config) -> str:
    """The loader ``data.loader`` asks for; ``auto`` prefers DALI unless samples may be skipped
    or the run is elastic."""
    choice = config.data.loader
    if choice == "auto":
        usable = (dali_available() and config.data.on_bad_sample == "error"
                  and not config.engine.elastic)
        return "dali" if usable else "webdataset"
    if choice == "dali" and config.engine.elastic:
        raise ConfigError("engine.elastic=true needs data.loader=webdataset (or auto): DALI's "
                          "reader assigns shards to ranks itself and keeps its position per "
                          "rank, so its order cannot follow a change of world size")
    if choice == "dali" and not dali_available():  # one line naming the extra to install
        require_extra("nvidia.dali", DALI_EXTRAS, "data.loader=dali", "data.loader=auto")
    return choice


def to_device(
    images: Tensor, labels: Tensor, device: torch.device, dtype: torch.dtype
) -> tuple[Tensor, Tensor]:
    """A loader's batch on the training device. Images are grey replicated to three channels
    (a view): only the grey channel is copied, from pinned memory when the webdataset loader
    feeds a GPU, and replicated again on the device."""
    grey = images[:, :1].to(device, dtype, non_blocking=True)
    return grey.expand(-1, 3, -1, -1), labels.to(device, non_blocking=True)


def build_loader(
    config: Config,
    split: str,
    train: bool,
    rank: int = 0,
    world_size: int = 1,
    device_id: int | None = None,
) -> Loader:
    """A loader over ``data.root/<split>``; ``device_id`` puts DALI's decoding on that GPU."""
    data = config.data
    if data.root is None:
        raise DataError("data.root is not set: point it at a directory written by data_tools")
    spec = AugmentSpec.from_config(data)
    common = dict(
        root=data.root,
        split=split,
        batch_size=data.batch_size,
        train=train,
        spec=spec,
        rank=rank,
        world_size=world_size,
        seed=config.seed,
        accumulation=config.optim.grad_accum_steps if train else 1,
        check_md5=data.check_md5,
    )
    if choose_loader(config) == "dali":
        return DaliLoader(**common, device_id=device_id, num_threads=max(1, data.num_workers),
                          shuffle_buffer=data.shuffle_buffer)
    return WebDatasetLoader(
        **common, num_workers=data.num_workers, on_bad_sample=data.on_bad_sample,
        shuffle_window=data.shuffle_window,
        pin_memory=device_id is not None, elastic=config.engine.elastic,
        heap_mmap_threshold_kib=data.heap_mmap_threshold_kib,
    )


__all__ = [
    "AugmentSpec",
    "DaliLoader",
    "DataError",
    "Loader",
    "WebDatasetLoader",
    "build_loader",
    "choose_loader",
    "to_device",
]
