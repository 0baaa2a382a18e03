"""Atomic writes: a reader sees the old file or the whole new one, never half of it.

One idiom for the whole project (shards, indexes, manifests, checkpoints' metadata, summaries,
PNGs): write beside the target under a hidden temporary name, flush it to the disk when the file
must survive a power cut (``durable``), then ``os.replace`` it into place (atomic within one
file system). Secrets (``create_private``) are created the same way, owner-only from the start,
and never replace an existing file.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path: str | Path, *, durable: bool = True) -> Iterator[Path]:
    """A temporary path to write ``path``'s new content to; it replaces ``path`` when the
    block ends without an error and is removed when it raises."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial")
    try:
        yield tmp
        if durable:
            with open(tmp, "rb") as handle:
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write(path: str | Path, data: str | bytes, *, durable: bool = True) -> Path:
    """Write ``data`` (text as UTF-8) to ``path`` atomically; returns ``path``."""
    with atomic_path(path, durable=durable) as tmp:
        tmp.write_bytes(data.encode() if isinstance(data, str) else data)
    return Path(path)


def create_private(path: str | Path, data: str | bytes) -> bool:
    """Create ``path`` with ``data``, readable by its owner only (secrets: tokens, keys);
    returns False, leaving it untouched, when it exists already.

    The file has mode 0600 from its first byte (no window in which a chmod has yet to run)
    and appears whole or not at all: written under a temporary name, then linked into place,
    which fails rather than replaces when another process got there first.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.partial")
    fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data.encode() if isinstance(data, str) else data)
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        return True
    finally:
        tmp.unlink(missing_ok=True)
