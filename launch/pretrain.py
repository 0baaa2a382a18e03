"""Stage 1: train the policy and the classifier together (``pgnm pretrain``).

Checkout entry point of ``pgnm pretrain`` (the code: pgnm/commands/pretrain.py, whose docstring
has the usage and outputs):

    deepspeed --num_gpus N launch/pretrain.py --config configs/pretrain/<name>.yaml [key=value ...]
    torchrun --nproc_per_node N launch/pretrain.py --config ...
    python launch/pretrain.py --config ...            # one process, no launcher needed
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from pgnm.commands.pretrain import main  # noqa: E402

if __name__ == "__main__":
    main()
