"""A training step reads nothing from the device.

Budget: per optimizer step, no host read of device memory (with more than one rank, one read of
host memory: the flag the ranks agree on, kept in a gloo group off the GPU); one
device-to-host copy per *look* (every ``tracking.log_every`` steps, before a checkpoint, at
the end of an epoch); and per epoch one read of host memory by torch's DataLoader (the
webdataset loader's: its workers' base seed, from the loader's own CPU generator). Counted on
the CPU with a ``TorchDispatchMode``: the operations that would make the host wait for a GPU
-- ``item()``/``bool()`` (``_local_scalar_dense``), ``nonzero`` (boolean indexing) and copies
to the CPU -- over the second epoch (the first builds the mask kernels' cached operators).
"""

from __future__ import annotations

from collections import Counter

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from pgnm.config import load_config
from pgnm.train.loop import prepare, train_epoch

aten = torch.ops.aten


class HostWaits(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.counts: Counter[str] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
        kwargs = kwargs or {}
        if func is aten._local_scalar_dense.default:
            self.counts["item"] += 1
        elif func in (aten.nonzero.default, aten.masked_select.default):
            self.counts["nonzero"] += 1
        elif func is aten._to_copy.default and kwargs.get("device") == torch.device("cpu"):
            self.counts["to_host"] += 1
        return func(*args, **kwargs)


@pytest.mark.parametrize(("objective", "log_every"), [("paper", 1000), ("reinforce", 4)])
def test_a_training_step_does_not_wait_for_the_device(tiny_shards, tmp_path, objective,
                                                       log_every):
    from launching import TINY

    config = load_config(overrides=[
        *TINY, f"data.root={tiny_shards}", f"run_dir={tmp_path}", "name=syncs",
        "data.loader=webdataset", "data.num_workers=0", "tracking.enabled=false",
        "engine.checkpoints=false", f"tracking.log_every={log_every}", "engine.device=cpu",
        f"objective.name={objective}", "policy.sampler=gamma"])
    run = prepare(config, "pretrain")
    train_epoch(run, 0)
    first = run.global_step
    with HostWaits() as waits:
        train_epoch(run, 1)
    steps = run.global_step - first
    looks = run.global_step // log_every - first // log_every + 1  # + the end of the epoch
    assert steps >= 8
    assert waits.counts == Counter({"to_host": looks, "item": 1})
