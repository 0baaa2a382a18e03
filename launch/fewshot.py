"""The few-shot protocol (``pgnm fewshot``).

Checkout entry point of ``pgnm fewshot`` (the code: pgnm/commands/fewshot.py, whose docstring
has the usage and outputs):

    python launch/fewshot.py --config configs/fewshot/<name>.yaml [key=value ...]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from pgnm.commands.fewshot import main  # noqa: E402

if __name__ == "__main__":
    main()
