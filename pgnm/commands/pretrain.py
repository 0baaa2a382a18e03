"""Stage 1: train the policy and the classifier together; the classifier is the heated model.

    pgnm pretrain --config pretrain/<name> [key=value ...]       # installed, one process
    torchrun --nproc_per_node N -m pgnm pretrain --config ...     # installed, N ranks
    deepspeed --num_gpus N launch/pretrain.py --config configs/pretrain/<name>.yaml [key=value ...]
    torchrun --nproc_per_node N launch/pretrain.py --config ...
    python launch/pretrain.py --config ...            # one process, no launcher needed

Writes <run_dir>/<name>/: model/model.pt (heated model), model/policy.pt, checkpoints/,
gallery/epoch-NNN.png, metrics.jsonl, curves.png, summary.json.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NoReturn


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> NoReturn:
    from pgnm.names import Stage
    from pgnm.train.cli import launch

    launch(Stage.PRETRAIN, __doc__.splitlines()[0], argv, prog)
