"""The on-disk layout of a shard directory, between its writer and its readers.

Written by :mod:`pgnm.data.writer` (through the ``data_tools`` converters or the few-shot
protocol); read by the loaders, :func:`pgnm.data.shards.iter_samples` and :func:`read_manifest`.

A shard directory looks like this::

    dataset.json             what is in it: format, splits, shards and their sample counts
    classes.json             class key -> label, modality, organ (derived from paths, sorted)
    manifest.csv             one row per sample: split, shard, key, source, class, md5, size...
    report.json              duplicate groups and blank images found while writing
    train/shard-000000.tar   samples, shuffled across classes at write time
    train/shard-000000.idx   DALI's index for that tar (byte offsets of every component)
    train/shard-000000.json  written last: the shard's sample count, size and md5

Every sample has the image (``png``, ``jpg`` or ``u8`` raw grey bytes), ``cls`` (the label as
ASCII, the webdataset convention), ``lbl`` (the label as little-endian int32, what DALI reads)
and ``json`` (class key and source path). Images are 8-bit unless ``dataset.json`` says
``bit_depth`` 16: then every image is a 16-bit grey PNG holding ``value + value_offset``.
"""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path
from typing import Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from pgnm.errors import DataError, PgnmError

DATASET_FILE = "dataset.json"
CLASSES_FILE = "classes.json"
MANIFEST_FILE = "manifest.csv"
REPORT_FILE = "report.json"
IMAGE_EXTENSIONS = {"png": "png", "jpeg": "jpg", "raw": "u8"}


class ManifestRow(NamedTuple):
    """One row of ``manifest.csv``: one stored sample."""

    split: str
    shard: str  # tar file name inside the split folder
    key: str
    source: str  # how the source names the image: a release-relative path, "file.npz:train[3]"
    class_key: str
    label: int
    md5: str  # of the source image
    bytes: int  # stored image size
    width: int
    height: int
    mode: str  # PIL mode of the source image
    blank: bool


MANIFEST_COLUMNS = list(ManifestRow._fields)


class ManifestError(PgnmError, ValueError):
    """A shard directory is missing a file or holds one that does not parse."""


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ShardInfo(_Record):
    name: str  # file name inside the split folder, e.g. shard-000003.tar
    samples: int
    bytes: int
    md5: str


class ValCarving(_Record):
    """A ``val`` split drawn from ``train`` (a set shipped with train/ and test/ only): in
    each class, ``round(fraction * n)`` of its n training samples (at least one when n >= 2),
    chosen by ``seed``."""

    fraction: float
    seed: int
    from_split: Literal["train"] = "train"


class SplitInfo(_Record):
    samples: int
    shards: list[ShardInfo]


class ClassInfo(_Record):
    key: str  # e.g. MR__af__Plantar_plate_tear, US__thyroid
    label: int
    modality: str | None = None
    organ: str | None = None
    name: str | None = None


class DatasetInfo(_Record):
    version: int = 1
    source: str  # which tool wrote it, e.g. radimagenet_to_wds
    image_format: Literal["png", "jpeg", "raw"]
    raw_size: int | None = None  # side of the square u8 images when image_format = raw
    jpeg_quality: int | None = None
    jpeg_psnr_db: float | None = None  # mean PSNR of the re-encoding, when image_format = jpeg
    samples_per_shard: int
    seed: int
    plan_hash: str
    splits: dict[str, SplitInfo]
    # Defaults are what every manifest written before 16-bit input meant, so those still read.
    bit_depth: Literal[8, 16] = 8  # of the stored grey values; 16 only as 16-bit grey PNGs
    value_offset: int = 0  # stored = value + value_offset (32768 for signed data: CT HU)
    val_carved: ValCarving | None = None  # the val split was carved from train, this way

    @model_validator(mode="after")
    def _sixteen_bit_is_png(self) -> DatasetInfo:
        if self.bit_depth == 16 and self.image_format != "png":
            raise ValueError(f"bit_depth 16 needs image_format png, not {self.image_format}")
        return self

    @property
    def image_extension(self) -> str:
        return IMAGE_EXTENSIONS[self.image_format]


def _read_json(path: Path) -> object:
    if not path.is_file():
        raise ManifestError(f"{path} is missing: is this a directory written by data_tools?")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ManifestError(f"{path}: not valid JSON ({err})") from None


def _parse(model: type[_Record], data: object, path: Path) -> _Record:
    try:
        return model.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        key = ".".join(str(p) for p in first["loc"])
        raise ManifestError(f"{path}: {key}: {first['msg']}") from None


def load_dataset_info(root: str | Path) -> DatasetInfo:
    path = Path(root) / DATASET_FILE
    return _parse(DatasetInfo, _read_json(path), path)  # type: ignore[return-value]


def load_classes(root: str | Path) -> list[ClassInfo]:
    path = Path(root) / CLASSES_FILE
    data = _read_json(path)
    if not isinstance(data, list):
        raise ManifestError(f"{path}: expected a list of classes")
    classes = [_parse(ClassInfo, item, path) for item in data]
    if [c.label for c in classes] != list(range(len(classes))):
        raise ManifestError(f"{path}: labels must be 0..{len(classes) - 1} in order")
    return classes  # type: ignore[return-value]


def split_shards(root: str | Path, split: str) -> tuple[DatasetInfo, list[Path], list[Path]]:
    """The dataset description and this split's tar and index paths, checked to exist."""
    root = Path(root)
    info = load_dataset_info(root)
    if split not in info.splits:
        raise ManifestError(
            f"{root / DATASET_FILE}: no split {split!r} (has {', '.join(sorted(info.splits))})"
        )
    tars = [root / split / shard.name for shard in info.splits[split].shards]
    indexes = [tar.with_suffix(".idx") for tar in tars]
    missing = [str(p) for p in tars + indexes if not p.is_file()]
    if missing:
        raise ManifestError(f"{len(missing)} shard file(s) missing, e.g. {missing[0]}")
    return info, tars, indexes


def file_md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_shard_sizes(root: str | Path, split: str, info: DatasetInfo,
                      md5: bool = False) -> None:
    """Refuse, before anything is read, a shard whose size differs from what ``dataset.json``
    records: a truncated or rewritten shard (cut at a member boundary it would otherwise read
    as a shorter shard, silently). One ``stat`` per shard; with ``md5`` (``data.check_md5``)
    also the checksum, which reads the split once more."""
    for shard in info.splits[split].shards:
        path = Path(root) / split / shard.name
        size = path.stat().st_size
        problem = (f"{size} bytes on disk, {Path(root) / DATASET_FILE} records {shard.bytes}"
                   if size != shard.bytes else None)
        if problem is None and md5 and file_md5(path) != shard.md5:
            problem = f"md5 differs from the one {Path(root) / DATASET_FILE} records"
        if problem:
            raise DataError(f"{path}: {problem}: the shard is truncated or was rewritten; run "
                            f"python -m data_tools.verify {root}, then re-shard it")


def _manifest_row(row: dict[str, str]) -> ManifestRow:
    values = dict(row)
    for column in ("label", "bytes", "width", "height"):
        values[column] = int(values[column])
    if values["blank"] not in ("True", "False"):
        raise ValueError(f"blank must be True or False, got {values['blank']!r}")
    values["blank"] = values["blank"] == "True"
    return ManifestRow(**values)


def read_manifest(root: str | Path, split: str | None = None) -> list[ManifestRow]:
    """The rows of ``root``'s ``manifest.csv`` (only ``split``'s when given), in file order."""
    path = Path(root) / MANIFEST_FILE
    if not path.is_file():
        raise ManifestError(f"{path} is missing: is this a directory written by data_tools?")
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames != MANIFEST_COLUMNS:
            raise ManifestError(f"{path}: expected the columns {','.join(MANIFEST_COLUMNS)}")
        rows = []
        for row in reader:
            if split is not None and row["split"] != split:
                continue
            try:
                rows.append(_manifest_row(row))
            except (TypeError, ValueError) as err:
                raise ManifestError(f"{path}:{reader.line_num}: {err}") from None
    return rows
