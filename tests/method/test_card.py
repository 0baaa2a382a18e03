"""The method card's "use it in your own loop" snippet runs as written."""

from __future__ import annotations

import doctest
from pathlib import Path

CARD = Path(__file__).resolve().parents[2] / "pgnm" / "method" / "README.md"


def test_the_card_snippet_runs():
    result = doctest.testfile(str(CARD), module_relative=False, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 8 and result.failed == 0, result
