"""Hyperparameter search with Ray Tune (``pgnm tune``).

Checkout entry point of ``pgnm tune`` (the code: pgnm/commands/tune.py, whose docstring
has the usage and outputs):

    python launch/tune.py --config configs/tune/<name>.yaml [key=value ...]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from pgnm.commands.tune import main  # noqa: E402

if __name__ == "__main__":
    main()
