"""Stage 2: fine-tune a classifier without masks (``pgnm finetune``).

Checkout entry point of ``pgnm finetune`` (the code: pgnm/commands/finetune.py, whose docstring
has the usage and outputs):

    deepspeed --num_gpus N launch/finetune.py --config configs/finetune/<name>.yaml model.init=PATH
    python launch/finetune.py --config ... model.init=null       # from scratch: the baseline
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from pgnm.commands.finetune import main  # noqa: E402

if __name__ == "__main__":
    main()
