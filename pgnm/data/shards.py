"""One shard of a WebDataset shard directory: its samples, how they are written and read back.

A sample is four tar members sharing a key: the image (``png``, ``jpg`` or ``u8``, see
:data:`~pgnm.data.manifest.IMAGE_EXTENSIONS`), ``cls`` (the label as ASCII), ``lbl`` (the label
as little-endian int32, what DALI reads) and ``json`` (class key and source). A shard is a tar
of such samples, its DALI index (``.idx``) and its sidecar (``.json``: sample count, size, md5
and the manifest rows). :func:`write_shard` writes all three atomically, the tar last, so a tar
under its final name is always a finished one; :func:`shard_complete` tells a finished shard
from one to (re)write; :func:`iter_samples` reads samples back with the ``webdataset`` tar
reader the loaders use. Whole directories are written by :func:`pgnm.data.writer.write_dataset`.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import tarfile
from collections.abc import Collection, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image
from webdataset.tariterators import tarfile_samples

from pgnm.atomic import atomic_path, atomic_write
from pgnm.data.manifest import IMAGE_EXTENSIONS, file_md5, split_shards
from pgnm.errors import DataError, PgnmError


class ShardingError(PgnmError, RuntimeError):
    """Input the converter cannot shard; the message names the file."""


@dataclass(frozen=True)
class Record:
    """One input sample: an image file, or in-memory pixels (``pixels``) named by ``source``."""

    split: str
    source: str  # how the manifest names it: a release-relative path, or "file.npz:split[i]"
    class_key: str
    label: int
    path: str | None = None  # where to read the image file; None when ``pixels`` are given
    pixels: np.ndarray | None = None  # uint8 (H, W) or (H, W, C); uint16 (H, W): 16-bit grey
    value_offset: int = 0  # stored = value + offset (16-bit DICOM); the dataset records it
    # How ``pixels`` were made from ``source`` (a DICOM window, the bit depth): it goes into the
    # plan hash, so a re-run with other settings rewrites the shards instead of keeping them.
    rendering: str = ""


@dataclass(frozen=True)
class Encoding:
    image_format: str = "png"  # png: keep the source bytes (lossless); jpeg; raw
    jpeg_quality: int = 90
    raw_size: int = 256


@dataclass
class SampleMeta:
    """One manifest row, as the writer knows it (see ``MANIFEST_COLUMNS``)."""

    split: str
    shard: str
    key: str
    source: str
    class_key: str
    label: int
    md5: str  # of the source image, for duplicate detection
    bytes: int  # stored image size
    width: int
    height: int
    mode: str
    blank: bool
    psnr: float | None = None


# ----------------------------------------------------------------------------- per sample


SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L")  # PIL's 16-bit grey; a PNG opens as "I;16"


def _png_bytes(pixels: np.ndarray, source: str) -> bytes:
    # PIL picks the PNG bit depth from the array: uint16 (H, W) becomes mode "I;16", a 16-bit
    # grey PNG. Any other dtype would be narrowed or rejected by PIL in ways hard to trace.
    two_d = pixels.ndim == 2
    if not (pixels.dtype == np.uint8 and (two_d or pixels.ndim == 3)
            or pixels.dtype == np.uint16 and two_d):
        raise ShardingError(f"{source}: pixels must be uint8 (H, W[, C]) or uint16 (H, W), "
                            f"got {pixels.dtype} {pixels.shape}")
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def image_error(err: Exception) -> str:
    """What PIL's exception says about a payload, without the in-memory file's address it puts
    in the message (``<_io.BytesIO object at 0x...>``): the same bad image reads the same."""
    return re.sub(r"\s*<_io\.BytesIO object at 0x[0-9a-f]+>", "", str(err)) or type(err).__name__


def _psnr(reference: np.ndarray, test: np.ndarray) -> float:
    mse = float(np.mean((reference.astype(np.float64) - test.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(255.0**2 / mse)


def encode(record: Record, encoding: Encoding) -> tuple[bytes, dict]:
    """Stored image bytes and what the manifest records about the source image. A 16-bit grey
    image is kept as it is (png only): its md5, size, mode and blank flag are of its own values."""
    if record.pixels is not None:
        source_bytes = _png_bytes(record.pixels, record.source)
    else:
        try:
            source_bytes = Path(record.path or record.source).read_bytes()
        except OSError as err:
            raise ShardingError(f"cannot read {record.path}: {err.strerror}") from None
    if not source_bytes:
        raise ShardingError(f"{record.source}: empty file")
    try:
        with Image.open(io.BytesIO(source_bytes)) as image:
            image.load()
            mode, (width, height) = image.mode, image.size
            # convert("L") clamps 16-bit values to 255: a 16-bit image keeps its own values
            grey = np.asarray(image if mode in SIXTEEN_BIT_MODES else image.convert("L"))
    except Exception as err:  # PIL raises many types for broken files
        raise ShardingError(f"{record.source}: not a decodable image ({image_error(err)})"
                            ) from None
    if mode in SIXTEEN_BIT_MODES and encoding.image_format != "png":
        raise ShardingError(
            f"{record.source}: a 16-bit image ({mode}); only --format png stores 16 bits "
            f"(jpeg and raw are 8-bit): use png, or convert the images to 8 bits first"
        )
    meta = {
        "md5": hashlib.md5(source_bytes).hexdigest(),
        "width": width,
        "height": height,
        "mode": mode,
        "blank": bool(grey.min() == grey.max()),
        "psnr": None,
    }
    if encoding.image_format == "png":
        return source_bytes, meta
    if encoding.image_format == "jpeg":
        buffer = io.BytesIO()
        Image.fromarray(grey).save(buffer, format="JPEG", quality=encoding.jpeg_quality)
        decoded = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("L"))
        meta["psnr"] = _psnr(grey, decoded)
        return buffer.getvalue(), meta
    side = encoding.raw_size
    resized = Image.fromarray(grey).resize((side, side), Image.BILINEAR, reducing_gap=None)
    return np.ascontiguousarray(np.asarray(resized, dtype=np.uint8)).tobytes(), meta


# ----------------------------------------------------------------------------- writing a shard


def _add_member(tar: tarfile.TarFile, name: str, payload: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(payload)
    info.mode = 0o444
    info.mtime = 0  # byte-identical shards from identical inputs
    tar.addfile(info, io.BytesIO(payload))


def write_dali_index(tar_path: Path, index_path: Path) -> int:
    """DALI's ``v1.2`` index (per sample, ``ext offset size name`` for each component),
    written atomically; returns the number of samples."""
    samples: list[list[str]] = []
    last_key = None
    with tarfile.open(tar_path) as tar:
        for member in tar:
            if not member.isfile():
                continue
            key, _, ext = member.name.partition(".")
            entry = f"{ext} {member.offset_data} {member.size} {member.name}"
            if key != last_key:
                samples.append([entry])
                last_key = key
            else:
                samples[-1].append(entry)
    text = f"v1.2 {len(samples)}\n" + "".join(" ".join(s) + "\n" for s in samples)
    atomic_write(index_path, text)
    return len(samples)


def shard_complete(tar_path: Path) -> dict | None:
    """The sidecar of a finished shard, or None if the shard must be (re)written."""
    sidecar, index = tar_path.with_suffix(".json"), tar_path.with_suffix(".idx")
    if not (tar_path.is_file() and sidecar.is_file() and index.is_file()):
        return None
    try:
        data = json.loads(sidecar.read_text())
    except json.JSONDecodeError:
        return None
    return data if data.get("bytes") == tar_path.stat().st_size else None


def write_shard(tar_path: Path, keyed: Sequence[tuple[str, Record]], encoding: Encoding) -> dict:
    """Write one shard (tar, index, sidecar) atomically; returns the sidecar contents."""
    ext = IMAGE_EXTENSIONS[encoding.image_format]
    rows = []
    with atomic_path(tar_path) as partial:  # replaced last: after its index and sidecar
        with tarfile.open(partial, "w", format=tarfile.USTAR_FORMAT) as tar:
            for key, record in keyed:
                image_bytes, meta = encode(record, encoding)
                _add_member(tar, f"{key}.{ext}", image_bytes)
                _add_member(tar, f"{key}.cls", str(record.label).encode())
                _add_member(tar, f"{key}.lbl", np.int32(record.label).tobytes())
                info = {"class_key": record.class_key, "source": record.source}
                _add_member(tar, f"{key}.json", json.dumps(info).encode())
                row = SampleMeta(
                    split=record.split,
                    shard=tar_path.name,
                    key=key,
                    source=record.source,
                    class_key=record.class_key,
                    label=record.label,
                    bytes=len(image_bytes),
                    **meta,
                )
                rows.append(asdict(row))
        write_dali_index(partial, tar_path.with_suffix(".idx"))  # offsets survive the rename
        sidecar = {
            "name": tar_path.name,
            "samples": len(rows),
            "bytes": partial.stat().st_size,
            "md5": file_md5(partial),
            "rows": rows,
        }
        atomic_write(tar_path.with_suffix(".json"), json.dumps(sidecar))
    return sidecar


# ----------------------------------------------------------------------------- reading samples


class ShardSample(NamedTuple):
    """One stored sample, decoded: pixels are uint8 (H, W), or (H, W, C) for colour PNGs, or
    uint16 (H, W) for 16-bit PNGs (``dataset.json``'s ``bit_depth`` 16)."""

    key: str
    label: int
    class_key: str
    source: str
    pixels: np.ndarray


def decode_pixels(payload: bytes, image_format: str, raw_size: int | None = None) -> np.ndarray:
    """The stored image bytes as a uint8 array (raw images are ``raw_size`` squared), or a
    native-order uint16 array for a 16-bit PNG."""
    if image_format == "raw":
        side = raw_size or 0
        return np.frombuffer(payload, np.uint8).reshape(side, side)
    with Image.open(io.BytesIO(payload)) as image:
        pixels = np.asarray(image)
    # "I;16B" comes back big-endian; callers do arithmetic on it, so hand back native order
    sixteen = pixels.dtype.kind == "u" and pixels.itemsize == 2
    return pixels.astype(np.uint16, copy=False) if sixteen else pixels


def _label(sample: dict) -> int | None:
    lbl, cls = sample.get("lbl"), sample.get("cls")
    if lbl is not None and len(lbl) == 4:
        return int(np.frombuffer(lbl, "<i4")[0])
    return int(cls.decode().strip()) if cls else None


def iter_samples(
    root: str | Path, split: str, keys: Collection[str] | None = None
) -> Iterator[ShardSample]:
    """The samples of ``root``'s ``split`` (only those in ``keys`` when given), in stored
    order; a sample or tar that cannot be read raises :class:`DataError` naming it."""
    info, tars, _ = split_shards(root, split)
    ext = info.image_extension
    for tar in tars:

        def unreadable(exn: Exception, tar: Path = tar) -> bool:
            raise DataError(f"{tar}: unreadable tar ({exn})") from exn

        for sample in tarfile_samples([{"url": str(tar)}], handler=unreadable):
            key = sample["__key__"]
            if keys is not None and key not in keys:
                continue
            label = _label(sample)
            if not sample.get(ext) or label is None:
                problem = "missing image" if not sample.get(ext) else "missing label"
                raise DataError(f"{tar}: sample {key}: {problem}")
            try:
                pixels = decode_pixels(sample[ext], info.image_format, info.raw_size)
            except Exception as err:  # PIL raises many types for broken files
                raise DataError(f"{tar}: sample {key}: undecodable image ({image_error(err)})"
                                ) from None
            meta = json.loads(sample["json"]) if sample.get("json") else {}
            yield ShardSample(
                key, label, meta.get("class_key", ""), meta.get("source", key), pixels
            )
