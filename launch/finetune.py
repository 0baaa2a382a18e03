"""Stage 2: fine-tune a classifier without masks, from a heated model, a checkpoint or scratch.

    deepspeed --num_gpus N launch/finetune.py --config configs/finetune/<name>.yaml model.init=PATH
    python launch/finetune.py --config ... model.init=null       # from scratch: the baseline

``model.init`` is a heated model (``<run>/model/model.pt``) or any timm/torch checkpoint; the
classification head is re-initialised when the class count differs. The policy is always off.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from pgnm.names import Stage  # noqa: E402
from pgnm.train.cli import launch  # noqa: E402

if __name__ == "__main__":
    launch(Stage.FINETUNE, __doc__.splitlines()[0])  # the policy is off: fit sees to it
