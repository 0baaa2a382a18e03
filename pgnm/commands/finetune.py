"""Stage 2: fine-tune a classifier without masks, from a heated model, a checkpoint or scratch.

    pgnm finetune --config finetune/<name> model.init=PATH          # installed; one process
    deepspeed --num_gpus N launch/finetune.py --config configs/finetune/<name>.yaml model.init=PATH
    python launch/finetune.py --config ... model.init=null       # from scratch: the baseline

``model.init`` is a heated model (``<run>/model/model.pt``) or any timm/torch checkpoint; the
classification head is re-initialised when the class count differs. The policy is always off.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NoReturn


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> NoReturn:
    from pgnm.names import Stage
    from pgnm.train.cli import launch

    launch(Stage.FINETUNE, __doc__.splitlines()[0], argv, prog)  # the policy is off: fit sees to it
