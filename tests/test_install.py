"""The install does the slow one-off work, so the first launch does not (README: Install)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest


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


# ----------------------------------------------------------------------------- the wheel

SOURCES = ("pyproject.toml", "README.md", "pgnm", "configs")  # what the wheel is built from


def _run(cmd: list, cwd, env: dict, timeout: float = 300) -> subprocess.CompletedProcess:
    result = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True,
                            text=True, timeout=timeout)
    assert result.returncode == 0, (cmd[:3], result.stdout[-2000:], result.stderr[-4000:])
    return result


@pytest.mark.slow
def test_the_wheel_installs_and_trains_outside_the_checkout(tiny_shards, tmp_path):
    """A wheel of pgnm, in a fresh venv that sees the project venv's dependencies but not its
    editable pgnm: ``pgnm --help`` and a one-process ``pgnm pretrain`` by config name, run
    from outside the checkout, write the heated model."""
    from launching import TINY, environment

    root = Path(__file__).resolve().parents[1]
    project_python = Path(sys.executable)
    env = environment()
    env.pop("PYTHONPATH", None)
    # The sources are copied so that the build's build/ and egg-info stay out of the checkout.
    source = tmp_path / "source"
    source.mkdir()
    for name in SOURCES:
        if (root / name).is_dir():
            shutil.copytree(root / name, source / name,
                            ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(root / name, source / name)
    pip = [project_python, "-m", "pip", "--disable-pip-version-check"]
    _run([*pip, "wheel", "-q", "--no-deps", "--no-build-isolation", source,
          "-w", tmp_path / "dist"], tmp_path, env)
    wheel = next((tmp_path / "dist").glob("pgnm-*.whl"))
    fresh = tmp_path / "fresh"
    _run([project_python, "-m", "venv", "--without-pip", fresh], tmp_path, env)
    python = fresh / "bin" / "python"
    _run([*pip, "--python", python, "install", "-q", "--no-deps", "--no-index", wheel],
         tmp_path, env)
    # The project venv's packages, as a plain path: the .pth files in it are not processed,
    # so its editable pgnm (an import hook started by one of them) stays out.
    purelib = _run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                   tmp_path, env).stdout.strip()
    ours = _run([project_python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                tmp_path, env).stdout.strip()
    Path(purelib, "project-dependencies.pth").write_text(ours + "\n")

    where = _run([python, "-c", "import pgnm, pgnm.config_files as c; "
                  "print(pgnm.__file__); print(c.config_root())"], tmp_path, env).stdout.split()
    assert all(Path(p).is_relative_to(fresh) for p in where), where
    listing = _run([fresh / "bin" / "pgnm", "--help"], tmp_path, env).stdout
    assert all(f"  {name} " in listing for name in ("pretrain", "finetune", "tune", "fewshot",
                                                     "preview"))

    runs = tmp_path / "runs"
    _run([fresh / "bin" / "pgnm", "pretrain", "--config", "pretrain/smoke", *TINY,
          "schedule.epochs=1", "tracking.enabled=false", "engine.checkpoints=false",
          f"data.root={tiny_shards}", f"run_dir={runs}"], tmp_path, env)
    assert (runs / "smoke-pretrain" / "model" / "model.pt").is_file()
