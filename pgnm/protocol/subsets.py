"""Downstream sets and their few-shot subsets, as shard directories the loaders read.

A downstream set is named in ``fewshot.datasets`` as a MedMNIST-format ``.npz``, a
folder-per-class directory (``<split>/<class>/<image>``) or a shard directory; the first two
are sharded once with the library's writer (:mod:`pgnm.data.sources`, :mod:`pgnm.data.writer`,
what the ``data_tools`` converters run). A few-shot subset is a shard directory of its own
whose ``train`` split holds the k drawn samples (written with the same writer) and whose
``val`` and ``test`` splits are links to the full downstream splits, so every trial is
evaluated on the whole test split without copying it.

Sampling is stratified: each class gets ``k // C`` samples and ``k % C`` classes, drawn at
random, one more; a class with too few training samples gives its shortfall to the others.
When k < C only k classes, drawn at random, get one sample each: the rest are absent from that
trial's training set (and still present in its test split).
"""

from __future__ import annotations

import os
import zlib
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from pgnm.atomic import atomic_write
from pgnm.data.manifest import (
    DATASET_FILE,
    ValCarving,
    load_classes,
    load_dataset_info,
    read_manifest,
)
from pgnm.data.shards import Record, ShardingError, iter_samples
from pgnm.data.sources import carve_val, records_from_folder, records_from_medmnist
from pgnm.data.writer import write_dataset
from pgnm.errors import DataError


class ProtocolDataError(DataError, ValueError):
    """A downstream set the protocol cannot use; the message names the config key or file."""


# ----------------------------------------------------------------------------- sampling


def trial_seed(base: int, dataset: str, k: int, trial: int) -> int:
    """The seed of one draw: the same for every initialisation, so comparisons are paired."""
    return int(np.random.SeedSequence([base, zlib.crc32(dataset.encode()), k, trial])
               .generate_state(1)[0])


def stratified_sample(labels: Mapping[str, int], k: int, seed: int) -> list[str]:
    """``k`` keys of ``labels`` (key -> class), as evenly spread over the classes as k allows."""
    if k > len(labels):
        raise ProtocolDataError(f"k={k} but the training split has only {len(labels)} samples")
    rng = np.random.default_rng(seed)
    by_class: dict[int, list[str]] = defaultdict(list)
    for key in sorted(labels):
        by_class[labels[key]].append(key)
    pools = {c: [keys[i] for i in rng.permutation(len(keys))] for c, keys in by_class.items()}
    quota = dict.fromkeys(pools, 0)
    left = k
    while left:  # hand out rounds of one sample per class, in a random class order
        open_classes = [c for c in sorted(pools) if quota[c] < len(pools[c])]
        order = [open_classes[i] for i in rng.permutation(len(open_classes))]
        for c in order[:left]:
            quota[c] += 1
        left -= min(left, len(order))
    chosen = [key for c in sorted(pools) for key in pools[c][: quota[c]]]
    return sorted(chosen)


# ----------------------------------------------------------------------------- downstream sets


def prepare_dataset(name: str, source: str, out: Path, carving: ValCarving | None = None) -> Path:
    """Shard directory of ``fewshot.datasets.<name>``: the source itself, or ``out`` written.
    A folder set without ``val/`` gets one carved from ``train`` as ``carving`` says."""
    src = Path(source)
    if (src / DATASET_FILE).is_file():
        return src
    if (out / DATASET_FILE).is_file():
        return out
    try:
        if src.suffix == ".npz" and src.is_file():  # MedMNIST ships its val split
            records, classes, tool = *records_from_medmnist(src), "medmnist_to_wds"
            carving = None
        elif (src / "train").is_dir():
            records, classes, tool = *records_from_folder(src), "folder_to_wds"
            carving = None if (src / "val").is_dir() else carving
            if carving is not None:
                records = carve_val(records, carving, f"fewshot.datasets.{name}={source}")
        else:
            raise ProtocolDataError(
                f"fewshot.datasets.{name}={source}: not a .npz file, a folder with train/ "
                f"inside, or a shard directory with {DATASET_FILE}")
        write_dataset(out, records, classes, tool, samples_per_shard=1000, workers=1,
                      val_carved=carving)
    except ShardingError as err:
        raise ProtocolDataError(f"fewshot.datasets.{name}: {err}") from None
    return out


def train_labels(root: Path) -> tuple[dict[str, int], dict[str, str]]:
    """key -> label and key -> source of every training sample, from the manifest."""
    rows = read_manifest(root, "train")
    return {r.key: r.label for r in rows}, {r.key: r.source for r in rows}


def check_splits(name: str, root: Path) -> None:
    missing = {"train", "val", "test"} - set(load_dataset_info(root).splits)
    if missing:
        hint = (" (carve one from train: python -m data_tools.folder_to_wds --val-fraction F)"
                if missing == {"val"} else "")
        raise ProtocolDataError(f"fewshot.datasets.{name}: {root / DATASET_FILE} has no "
                                f"{sorted(missing)} split(s){hint}")


def read_samples(root: Path, keys: set[str]) -> dict[str, tuple[np.ndarray, int, str]]:
    """key -> (pixels, label, source) for the wanted training samples, one pass over the tars."""
    found = {s.key: (s.pixels, s.label, s.source) for s in iter_samples(root, "train", keys)}
    missing = keys - set(found)
    if missing:
        raise ProtocolDataError(f"{root}: {len(missing)} sampled keys not in the train shards")
    return found


def write_subset(root: Path, out: Path, samples: Mapping[str, tuple[np.ndarray, int, str]],
                 keys: Sequence[str]) -> Path:
    """A shard directory: ``keys`` as its train split, links to ``root``'s val and test."""
    if (out / DATASET_FILE).is_file():
        return out
    classes = load_classes(root)
    names = {c.label: c.key for c in classes}
    source = load_dataset_info(root)
    records = [Record("train", f"{key}:{samples[key][2]}", names[samples[key][1]],
                      samples[key][1], pixels=samples[key][0],
                      value_offset=source.value_offset)  # 16-bit: val and test share it
               for key in keys]
    staged = out.with_name(f".{out.name}.partial")  # renamed into place once complete
    write_dataset(staged, records, classes, "fewshot_subset", samples_per_shard=1000,
                  workers=1, overwrite=True)
    info = load_dataset_info(staged)
    splits = {"train": info.splits["train"], **{s: source.splits[s] for s in ("val", "test")}}
    for split in ("val", "test"):
        link = staged / split
        if not link.exists():
            os.symlink(os.path.relpath((root / split).resolve(), staged.resolve()), link)
    text = info.model_copy(update={"splits": splits}).model_dump_json(indent=1)
    atomic_write(staged / DATASET_FILE, text)
    os.replace(staged, out)  # a directory: atomic_path renames files only
    return out
