"""The Tune trainables: a trial as one in-process rank, or as the ranks of a Ray Train job.

``single_rank_trial`` runs the trainer inside the Tune worker process (CPU searches, one GPU
per trial). ``multi_rank_trial`` is Ray Train V2's pattern for distributed trials: the trial
function only fits a ``TorchTrainer``; Ray places the workers and picks the rendezvous port,
and each worker runs the same :class:`TrialRunner` with DeepSpeed inside -- no nested
launcher, no fixed master port. On a cluster Ray creates the process group; on a loopback
(local) node the ranks create it on loopback themselves. ``TuneReportCallback`` forwards
rank 0's reports to Tune, so ASHA sees the same per-epoch results either way.
"""

from __future__ import annotations

import ipaddress
import os
from contextlib import nullcontext
from functools import partial
from pathlib import Path
from typing import Any

import torch

from pgnm.tune.trial import SearchContext, TrialRunner


def _use_threads(cpus: float) -> None:
    """The trial's CPU share as torch threads: oversubscribed cores slow small ops tenfold."""
    threads = max(1, int(cpus))
    os.environ["OMP_NUM_THREADS"] = str(threads)
    torch.set_num_threads(threads)


def single_rank_trial(params: dict[str, Any], context: SearchContext) -> None:
    from ray import tune

    _use_threads(context.base.tune.cpus_per_worker)
    checkpoint = tune.get_checkpoint()
    with checkpoint.as_directory() if checkpoint else nullcontext(None) as restored:
        trial_id = tune.get_context().get_trial_id()
        TrialRunner(context, params, trial_id, restored, tune.report,
                    tune.Checkpoint.from_directory).run()


def _rank_loop(params: dict[str, Any], context: SearchContext, trial_id: str) -> None:
    import ray.train

    _use_threads(context.base.tune.cpus_per_worker)
    checkpoint = ray.train.get_checkpoint()
    rank = ray.train.get_context().get_world_rank()
    with checkpoint.as_directory() if checkpoint else nullcontext(None) as restored:
        TrialRunner(context, params, trial_id, restored, ray.train.report,
                    ray.train.Checkpoint.from_directory, is_main=rank == 0).run()


def _rendezvous_env(addr: str, port: int) -> None:
    os.environ.update(MASTER_ADDR=addr, MASTER_PORT=str(port))


def _loopback_torch_config(backend: str):  # noqa: ANN202 - a ray.train.torch.TorchConfig
    """Ray Train's torch setup, but on a loopback node the ranks meet on loopback alone.

    Ray Train's own process-group setup has torch's TCPStore listen on every interface. On a
    node whose address is loopback (a local search), the ranks get the same rendezvous
    environment and create the group themselves in ``setup`` (``TrialRunner.run``), whose
    store listens on 127.0.0.1 only; on a cluster node nothing changes.
    """
    from ray.train._internal.utils import get_address_and_port
    from ray.train.torch import TorchConfig
    from ray.train.torch.config import _set_torch_distributed_env_vars, _TorchBackend

    class LoopbackBackend(_TorchBackend):
        def on_start(self, worker_group, backend_config) -> None:  # noqa: ANN001
            addr, port = worker_group.execute_single(0, get_address_and_port)
            if not ipaddress.ip_address(addr).is_loopback:
                super().on_start(worker_group, backend_config)
                return
            worker_group.execute(_rendezvous_env, addr=addr, port=port)
            worker_group.execute(_set_torch_distributed_env_vars)

    class LoopbackTorchConfig(TorchConfig):
        @property
        def backend_cls(self):  # noqa: ANN202
            return LoopbackBackend

    return LoopbackTorchConfig(backend=backend)


def multi_rank_trial(params: dict[str, Any], context: SearchContext) -> None:
    from ray import tune
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    t = context.base.tune
    trial_id = tune.get_context().get_trial_id()
    gpu = t.gpus_per_worker > 0
    per_worker = {"CPU": t.cpus_per_worker, **({"GPU": t.gpus_per_worker} if gpu else {})}
    trainer = TorchTrainer(
        partial(_rank_loop, params=params, context=context, trial_id=trial_id),
        scaling_config=ScalingConfig(num_workers=t.workers_per_trial, use_gpu=gpu,
                                     resources_per_worker=per_worker),
        torch_config=_loopback_torch_config("nccl" if gpu else "gloo"),
        run_config=RunConfig(
            # the same name on a retry: Ray Train resumes from its own latest checkpoint
            name=f"trial-{trial_id}",
            storage_path=context.train_storage or str(Path(context.search_dir) / "train"),
            callbacks=[TuneReportCallback()],
            failure_config=FailureConfig(max_failures=t.max_failures)),
    )
    trainer.fit()
