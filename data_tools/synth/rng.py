"""Deterministic random streams keyed by names, identical in every process.

Every random draw in the generator comes from a stream derived from the global seed plus a few
names (class key, patient number, image number, purpose). Python's ``hash()`` is salted per
process, so the names are hashed with SHA-256 instead: the same call gives the same numbers in
any worker, in any order, on any machine.
"""

from __future__ import annotations

import hashlib

import numpy as np


def digest_words(text: str, n_words: int = 8) -> list[int]:
    """The first ``n_words`` 32-bit words of SHA-256(text), as Python ints."""
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return [int.from_bytes(digest[4 * i: 4 * i + 4], "little") for i in range(n_words)]


def stream(seed: int, *parts: str | int) -> np.random.Generator:
    """A NumPy generator determined by ``seed`` and ``parts`` alone.

    Parts are joined with a separator that cannot occur in ``repr`` of an int, and strings are
    ``repr``-quoted, so ("a", 1) and ("a1",) give different streams.
    """
    text = "\x1f".join([repr(int(seed))] + [repr(p) for p in parts])
    return np.random.default_rng(np.random.SeedSequence(digest_words(text)))


def unit_hash(*parts: str | int) -> float:
    """A number in [0, 1) fixed by ``parts`` (for choices that must not depend on the seed)."""
    return digest_words("\x1f".join(repr(p) for p in parts), 2)[0] / 2.0**32
