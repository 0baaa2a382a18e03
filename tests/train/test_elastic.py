"""Elastic resume: a run checkpointed at one world size continues at another, through the same
global batches, and ends where an uninterrupted run ends.

Two cells, chosen so that each setting of each factor occurs: 2 ranks -> 1 rank x 2
micro-batches with the paper objective and 2 DataLoader workers, and 1 rank x 4 micro-batches
-> 2 ranks x 2 with REINFORCE (its shared baseline) and no workers: global batches of two and
of four micro-batches, and accumulation on both sides of a resume. Both are killed inside an
epoch. The tolerance is zero: the slots' gradients are summed in one pairwise order whatever
the world size, and the averages divide by powers of two, which is exact in binary floating
point. (Summed in DeepSpeed's order, 2 x 2 and 1 x 4 differed by 1.7e-7 of a tensor's scale
after one step and by 1.7 times it after eight: the Beta sampler's accept/reject steps turn
rounding into other masks.) Four straight ranks ending like these two was checked by hand
(4 ranks on 2 cores cost 2 minutes); ``tree_sum_`` over four ranks is checked here.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass

import pytest
import torch
from launching import ROOT, command, environment, kill_after, train

from pgnm.config import load_config, with_overrides
from pgnm.errors import CheckpointError, ConfigError
from pgnm.train.checkpoint import Position, safe_load
from pgnm.train.elastic import PairwiseSum, check_elastic, resume_at

pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class Cell:
    before: int  # ranks of the interrupted run
    after: int  # ranks of its resumption
    objective: str
    workers: int
    micro_batches: int  # per global batch: ranks x accumulation, on both sides

    def accumulation(self, ranks: int) -> int:
        return self.micro_batches // ranks

    def overrides(self, ranks: int) -> list[str]:
        return ["engine.elastic=true", "data.loader=webdataset", f"objective.name={self.objective}",
                f"data.num_workers={self.workers}",
                f"optim.grad_accum_steps={self.accumulation(ranks)}",
                f"data.batch_size={8 // self.micro_batches * 2}",  # 4 or 8 steps an epoch
                "engine.checkpoint_every=3", "tracking.enabled=false", "name=run"]


CELLS = [Cell(2, 1, "paper", 2, 2), Cell(1, 2, "reinforce", 0, 4)]


def _weights(out) -> dict[str, torch.Tensor]:  # noqa: ANN001
    """Classifier, policy (running state included) and SGD momentum of a finished run."""
    found = {}
    for name in ("model/model.pt", "model/policy.pt"):
        found.update({f"{name}/{k}": v for k, v in safe_load(out / name)["state_dict"].items()})
    return found


@pytest.mark.parametrize("cell", CELLS, ids=lambda c: f"{c.before}to{c.after}-{c.objective}-"
                                             f"{c.micro_batches}")
def test_a_run_resumes_at_another_world_size_through_the_same_global_batches(
        tiny_shards, tmp_path, cell):
    straight_dir, interrupted = tmp_path / "straight", tmp_path / "interrupted"
    first = cell.overrides(cell.before)
    straight = subprocess.Popen(
        command("pretrain.py", cell.before, tiny_shards, straight_dir, *first), cwd=ROOT,
        env=environment(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out = interrupted / "run"
    position = kill_after(command("pretrain.py", cell.before, tiny_shards, interrupted, *first),
                          out, "mid")
    assert position["world_size"] == cell.before and position["elastic"]
    # the same command at the new world size: the accumulation follows from the checkpoint
    resumed = train("pretrain.py", cell.after, tiny_shards, interrupted, *first)
    stdout, stderr = straight.communicate(timeout=900)
    assert straight.returncode == 0, (stdout[-2000:], stderr[-4000:])

    assert (f"step {position['global_step']}) on {cell.after} ranks x "
            f"{cell.accumulation(cell.after)} micro-batches, written by {cell.before} x "
            f"{cell.accumulation(cell.before)}") in resumed.stdout
    expected, got = _weights(straight_dir / "run"), _weights(out)
    assert expected.keys() == got.keys()
    assert [k for k in expected if not torch.equal(expected[k], got[k])] == []


def _config(*overrides: str):  # noqa: ANN202
    return load_config(overrides=["engine.elastic=true", *overrides])


def test_resuming_at_another_world_size_keeps_the_global_batch():
    saved = Position(global_step=6, world_size=2, grad_accum_steps=2, elastic=True)
    assert resume_at(_config(), saved, 4, "ck").optim.grad_accum_steps == 1
    assert resume_at(_config(), saved, 1, "ck").optim.grad_accum_steps == 4
    with pytest.raises(CheckpointError, match="4 micro-batches .* which 3 ranks cannot share"):
        resume_at(_config(), saved, 3, "ck")
    plain = Position(global_step=6, world_size=2)
    with pytest.raises(CheckpointError, match="ck was written by 2 ranks, this run has 1"):
        resume_at(_config(), plain, 1, "ck")
    config = with_overrides(_config(), {"optim.grad_accum_steps": 3})
    assert resume_at(config, plain, 2, "ck") is config  # the same world size: as it is


@pytest.mark.parametrize(("override", "message"), [
    ("engine.zero_stage=2", "engine.elastic=true needs engine.zero_stage=0"),
    ("policy.share_running_state=false", "needs policy.share_running_state=true"),
])
def test_elastic_runs_that_could_not_change_world_size_are_refused(override, message):
    with pytest.raises(ConfigError, match=message):
        check_elastic(_config(override))


def test_an_elastic_run_reads_with_the_webdataset_loader():
    from pgnm.data import choose_loader

    assert choose_loader(_config("data.loader=auto")) == "webdataset"
    with pytest.raises(ConfigError, match="engine.elastic=true needs data.loader=webdataset"):
        choose_loader(_config("data.loader=dali"))


def test_slots_are_summed_pairwise_whichever_runs_the_ranks_hold():
    # (a + b) + (c + d) and ((a + b) + c) + d round differently for these
    a, b, c, d = (torch.tensor([x], dtype=torch.float32) for x in (1e8, 3.0, -1e8, 3.0))
    assert not torch.equal((a + b) + (c + d), ((a + b) + c) + d)

    def pairwise(*leaves: torch.Tensor) -> torch.Tensor:
        total = PairwiseSum()
        for leaf in leaves:
            total.add([leaf.clone()])
        return total.total()[0]

    assert torch.equal(pairwise(a, b, c, d), (a + b) + (c + d))
    assert torch.equal(pairwise(pairwise(a, b), pairwise(c, d)), pairwise(a, b, c, d))


def _tree_sum_worker(rank: int, world: int, port: int, values: torch.Tensor, out: str) -> None:
    import os

    import torch.distributed as dist

    from pgnm.train.distributed import tree_sum_

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    flat = values[rank].clone()
    assert tree_sum_(flat)
    torch.save(flat, f"{out}-{rank}.pt")
    dist.destroy_process_group()


def test_the_ranks_sum_as_a_balanced_tree(tmp_path):
    import torch.multiprocessing as mp
    from launching import free_port

    values = torch.tensor([[1e8, 1.0], [3.0, 1.0], [-1e8, 1.0], [3.0, 7.0]], dtype=torch.float32)
    mp.spawn(_tree_sum_worker, args=(4, free_port(), values, str(tmp_path / "sum")), nprocs=4)
    expected = (values[0] + values[1]) + (values[2] + values[3])
    for rank in range(4):
        assert torch.equal(torch.load(tmp_path / f"sum-{rank}.pt"), expected)
    assert not torch.equal(expected, values[0] + values[1] + values[2] + values[3])
