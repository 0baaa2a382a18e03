"""Stage 1: train the policy and the classifier together; the classifier is the heated model.

    deepspeed --num_gpus N launch/pretrain.py --config configs/pretrain/<name>.yaml [key=value ...]
    torchrun --nproc_per_node N launch/pretrain.py --config ...
    python launch/pretrain.py --config ...            # one process, no launcher needed

Writes <run_dir>/<name>/: model/model.pt (heated model), model/policy.pt, checkpoints/,
gallery/epoch-NNN.png, metrics.jsonl, curves.png, summary.json.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from pgnm.names import Stage  # noqa: E402
from pgnm.train.cli import launch  # noqa: E402

if __name__ == "__main__":
    launch(Stage.PRETRAIN, __doc__.splitlines()[0])
