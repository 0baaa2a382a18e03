"""The install does the slow one-off work, so the first launch does not (README: Install)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys


def test_deepspeed_shm_comm_op_is_prebuilt():
    from deepspeed.git_version_info import installed_ops

    assert installed_ops["deepspeed_shm_comm"]  # 1 when built into the wheel


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_first_deepspeed_initialize_compiles_nothing(tmp_path):
    extensions = tmp_path / "torch_extensions"
    extensions.mkdir()
    env = dict(
        os.environ,
        DS_ACCELERATOR="cpu",
        TORCH_EXTENSIONS_DIR=str(extensions),
        RANK="0",
        WORLD_SIZE="1",
        LOCAL_RANK="0",
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(_free_port()),
        OMP_NUM_THREADS="1",
    )
    code = (
        "import torch, deepspeed\n"
        "model = torch.nn.Linear(4, 2)\n"
        "opt = torch.optim.SGD(model.parameters(), lr=0.1)\n"
        "engine, *_ = deepspeed.initialize(model=model, optimizer=opt, config={\n"
        "    'train_micro_batch_size_per_gpu': 2, 'zero_optimization': {'stage': 0}})\n"
        "loss = engine(torch.randn(2, 4)).sum()\n"
        "engine.backward(loss); engine.step()\n"
        "print('backend', torch.distributed.get_backend())\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "backend gloo" in result.stdout
    assert list(extensions.iterdir()) == [], "an op was JIT-compiled at launch"
