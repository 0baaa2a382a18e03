"""Reading single samples out of a shard by byte range, through its DALI index.

A sample's members (image, ``cls``, ``lbl``, ``json``) sit next to each other in the tar, so
one sample is one contiguous span: from the header of its first member to the padded end of
its last. The index (``.idx``, DALI's ``v1.2`` format: ``ext offset size name`` per member,
offsets of the data) gives every span without reading the tar. A span is a run of complete
tar members, parsed by the stock ``webdataset`` tar reader, so a header that does not match
the index is caught there rather than trusted.

Shards are written with USTAR headers (one 512-byte block per member, no extended headers);
an index whose first offset is not one header past a block boundary is refused.
"""

from __future__ import annotations

import io
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from webdataset.tariterators import base_plus_ext, tar_file_iterator

from pgnm.errors import DataError

BLOCK = 512  # tar block: every header is one, every member's data is padded to whole ones


@dataclass(frozen=True)
class ShardIndex:
    """Where each sample of one shard lies: ``[starts[i], ends[i])`` in the tar."""

    tar: Path
    keys: list[str]
    starts: np.ndarray
    ends: np.ndarray

    @property
    def span_bytes(self) -> int:
        return int((self.ends - self.starts).sum())


def read_index(tar: Path, expected_samples: int) -> ShardIndex:
    """The shard's index, checked against the sample count ``dataset.json`` plans for it."""
    index = tar.with_suffix(".idx")
    try:
        lines = index.read_text().splitlines()
    except OSError as err:
        raise DataError(f"{index}: cannot read the shard index ({err.strerror})") from None
    keys, starts, ends = [], [], []
    declared = _declared_samples(lines[0] if lines else "", index)
    try:
        for number, line in enumerate(lines[1:], start=2):
            fields = line.split()
            if not fields or len(fields) % 4:
                raise ValueError(f"line {number} is not 'ext offset size name' groups")
            offsets = [int(o) for o in fields[1::4]]
            sizes = [int(s) for s in fields[2::4]]
            keys.append(_split_name(fields[3])[0])
            starts.append(min(offsets) - BLOCK)
            last = int(np.argmax(offsets))
            ends.append(offsets[last] + -(-sizes[last] // BLOCK) * BLOCK)
    except (IndexError, ValueError) as err:
        raise DataError(f"{index}: malformed shard index ({err})") from None
    if declared != len(keys) or len(keys) != expected_samples:
        raise DataError(
            f"{tar}: its index lists {len(keys)} samples (header says {declared}), "
            f"dataset.json plans {expected_samples}; rewrite the shard or rerun the converter"
        )
    if keys and (starts[0] % BLOCK or starts[0] < 0):
        raise DataError(f"{index}: offsets do not fit a tar written with USTAR headers")
    return ShardIndex(tar, keys, np.asarray(starts, np.int64), np.asarray(ends, np.int64))


def _declared_samples(header: str, index: Path) -> int:
    """The sample count an index's first line (``v1.2 <samples>``) declares."""
    try:
        return int(header.split()[1])
    except (IndexError, ValueError):
        raise DataError(f"{index}: malformed shard index (no 'v1.2 <samples>' header)") from None


def check_index_headers(tars: list[Path], expected: list[int]) -> None:
    """Each shard index's declared sample count against ``dataset.json``'s plan, reading one
    line per index: what a loader that leaves the index to DALI can check cheaply up front
    (DALI itself would read a short index as a shorter epoch, or stop on an assert)."""
    for tar, samples in zip(tars, expected, strict=True):
        index = tar.with_suffix(".idx")
        try:
            with open(index) as handle:
                declared = _declared_samples(handle.readline(), index)
        except OSError as err:
            raise DataError(f"{index}: cannot read the shard index ({err.strerror})") from None
        if declared != samples:
            raise DataError(f"{tar}: its index lists {declared} samples, dataset.json plans "
                            f"{samples}; rewrite the shard or rerun the converter")


def read_samples(
    index: ShardIndex, positions: list[int]
) -> tuple[list[tuple[str, dict[str, bytes] | str]], int]:
    """The samples at ``positions`` of the shard, read in file order and returned in the
    order asked: (key, {extension: bytes}) or (key, problem) for a span that does not parse.
    Also returns the number of bytes read."""
    found: dict[int, tuple[str, dict[str, bytes] | str]] = {}
    read = 0
    with open(index.tar, "rb") as handle:
        for position in sorted(set(positions)):
            start, end = int(index.starts[position]), int(index.ends[position])
            handle.seek(start)
            span = handle.read(end - start)
            read += len(span)
            key = index.keys[position]
            if len(span) < end - start:
                found[position] = (key, f"the tar ends at byte {start + len(span)}; the index "
                                        f"puts the sample at bytes {start}..{end}")
            else:
                found[position] = (key, _parse(span, key))
    return [found[p] for p in positions], read


def _split_name(name: str) -> tuple[str, str]:
    """(key, extension) of a member name, split as the webdataset reader splits it."""
    key, ext = base_plus_ext(name)
    return (key, ext) if key is not None else (name, "")


def _parse(span: bytes, key: str) -> dict[str, bytes] | str:
    members: dict[str, bytes] = {}
    errors: list[Exception] = []

    def keep(exn: Exception) -> bool:
        errors.append(exn)
        return False

    try:
        for member in tar_file_iterator(io.BytesIO(span), handler=keep):
            name, ext = _split_name(member["fname"])
            if name != key:
                return f"the index says {key}, the tar holds {member['fname']} there"
            members[ext] = member["data"]
    except tarfile.TarError as err:  # a header that does not parse: raised before the handler
        errors.append(err)
    if errors or not members:
        return f"unreadable tar member ({errors[0] if errors else 'no member at the offset'})"
    return members
