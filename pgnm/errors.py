"""pgnm's own error types, and the one way a launcher reports them.

An error derived from :class:`PgnmError` is one a user can act on from its message alone (a
config key, a shard and sample, a checkpoint file): the launchers print it on one line and exit
with status 2. Anything else -- a ``ValueError`` from inside torch, a ``KeyError`` in our own
code -- is a bug or an environment problem, and keeps its full traceback.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from types import ModuleType


class PgnmError(Exception):
    """A failure whose message says what to fix; reported in one line by the launchers."""


class ConfigError(PgnmError, ValueError):
    """A configuration problem, with the offending key (and file) in the message."""


class DataError(PgnmError, RuntimeError):
    """A shard or sample that cannot be read; the message names the shard and key."""


class CheckpointError(PgnmError):
    """A checkpoint that cannot be resumed from; the message names the file."""


class TrainingDiverged(PgnmError, FloatingPointError):
    """A non-finite loss or policy value; the last complete checkpoint is untouched."""


class PeerFailed(PgnmError):
    """Another rank failed; this one stops with it (that rank's message says why)."""


class MissingExtra(PgnmError, ImportError):
    """An optional package that is not installed; the message names the extra that brings it."""


# The extras that bring DALI, one per kind of machine (pyproject.toml); the first one fits most.
DALI_EXTRAS = ("dali-cuda12", "dali-cuda13", "dali-cpu")


def require_extra(module: str, extras: str | Sequence[str], needed_for: str,
                  otherwise: str = "") -> ModuleType:
    """``import module``, or a :class:`MissingExtra` saying what needs it, which pgnm extra
    installs it and, if given, the ``otherwise`` that needs no install. Only the module's own
    absence is translated: a module that is there but fails to import (a broken install, a
    library of its own missing) keeps its traceback."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as err:
        if err.name is None or not (module == err.name or module.startswith(err.name + ".")):
            raise
        names = [f"'pgnm[{name}]'" for name in ([extras] if isinstance(extras, str) else extras)]
        how = f"pip install {names[0]}"
        if len(names) > 1:
            how = f"pip install the extra for this machine, {', '.join(names[:-1])} or {names[-1]}"
        how += f"; or set {otherwise}" if otherwise else ""
        raise MissingExtra(f"{needed_for} needs {module}, which is not installed: {how}") from None


EXIT_USER_ERROR = 2


@contextmanager
def reported_as_one_line(label: str) -> Iterator[None]:
    """Turn a :class:`PgnmError` into ``error (<label>, rank R): message`` and exit status 2.

    ``PGNM_DEBUG=1`` re-raises instead, for the traceback.
    """
    try:
        yield
    except PgnmError as err:
        if os.environ.get("PGNM_DEBUG"):
            raise
        rank = os.environ.get("RANK")
        where = f"{label}, rank {rank}" if rank is not None else label
        print(f"error ({where}): {err}", file=sys.stderr, flush=True)
        raise SystemExit(EXIT_USER_ERROR) from None
