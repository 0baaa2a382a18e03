"""Preview the method on synthetic images: a mask gallery PNG (``pgnm preview``).

Checkout entry point of ``pgnm preview`` (the code: pgnm/commands/preview.py, whose docstring
has the usage and outputs):

    python launch/preview.py [--config FILE] [key=value ...]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from pgnm.commands.preview import main  # noqa: E402

if __name__ == "__main__":
    main()
