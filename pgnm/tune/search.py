"""A Ray Tune search over real PGNM training runs (``launch/tune.py``).

``run_search(config)``: check the space, start (or join) Ray, open the search's MLflow run,
run the trials under ASHA (or FIFO / median stopping), then write the outputs (``outputs.py``)
and register the best trial's heated model with lineage to the search.

Everything a local search writes lives under ``<run_dir>/<name>/``: ``ray/`` (Ray's session
files, logs and auth token), ``tune/`` (Tune's experiment state and trial checkpoints; at
``<tune.storage>/<name>`` when that is set, e.g. shared storage for a cluster), ``trials/<id>/``
(each trial's training runs) and the outputs; the MLflow store is the usual one
(``tracking.uri``, else the embedded sqlite store under ``run_dir``).

A local Ray listens on loopback only. Running the same command after the driver died
continues the search (``tune.resume=auto``): Tune restores the experiment, finished trials
stay finished, the others resume from their checkpoints, under the same MLflow search run.
"""

from __future__ import annotations

import os
import secrets
import tempfile
import warnings
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from pgnm.atomic import create_private
from pgnm.config import Config, ConfigError, dump_config, flatten, with_overrides
from pgnm.data.manifest import ManifestError, load_classes
from pgnm.errors import require_extra
from pgnm.names import Stage
from pgnm.tracking.store import tracking_uri as resolve_tracking_uri
from pgnm.tune import outputs, runs
from pgnm.tune.space import searched_keys, to_param_space, validate_space
from pgnm.tune.trial import SCORE, SearchContext, metric_names, trial_device

# Ray's unix sockets live under its temp dir; AF_UNIX paths stop at 107 bytes.
_SOCKET_PATH_BUDGET = 40
LOOPBACK = "127.0.0.1"


def check(config: Config) -> None:
    """Every mistake we can see before Ray starts, as a ConfigError naming the key."""
    tune = config.tune
    validate_space(config, tune.search_space)
    stage, _, name = tune.metric.partition("/")
    if stage not in ("pretrain", "finetune") or name not in metric_names():
        raise ConfigError(f"tune.metric={tune.metric!r}: expected pretrain/<name> or "
                          f"finetune/<name> with <name> one of {metric_names()}")
    if stage == Stage.FINETUNE and tune.finetune_epochs == 0:
        raise ConfigError(f"tune.metric={tune.metric!r} needs tune.finetune_epochs > 0")
    if tune.searcher == "optuna":  # before Ray starts: one line naming the extra
        require_extra("optuna", "optuna", "tune.searcher=optuna", "tune.searcher=random")
    if tune.searcher == "optuna" and any(
        isinstance(s, dict) and "grid" in s for s in tune.search_space.values()
    ):
        raise ConfigError("tune.searcher=optuna cannot expand grid specs; use choice")
    if not config.engine.checkpoints:
        raise ConfigError("engine.checkpoints=false: a search retries and resumes trials from "
                          "their checkpoints; leave it on")
    if not config.policy.enabled:
        raise ConfigError("policy.enabled=false: a search trains stage 1, give a pretrain config")
    wanted = trial_device(tune)
    if config.engine.device not in ("auto", wanted):
        raise ConfigError(
            f"engine.device={config.engine.device} but tune.gpus_per_worker="
            f"{tune.gpus_per_worker}: trials run on {wanted} (Ray hands a trial GPUs only "
            "through tune.gpus_per_worker)")
    if config.data.root is None:
        raise ConfigError("data.root is not set: point it at shards written by data_tools")
    try:
        load_classes(config.data.root)  # the shards exist and are ours, before any trial starts
    except (ManifestError, FileNotFoundError) as err:
        raise ConfigError(f"data.root={config.data.root}: {err}") from None


def _absolute(config: Config) -> Config:
    """Paths as the trials must see them: Ray starts each trial in its own working folder."""
    paths = {"run_dir": config.run_dir, "data.root": config.data.root,
             "engine.deepspeed_config": config.engine.deepspeed_config}
    if config.model.init and Path(config.model.init).exists():
        paths["model.init"] = config.model.init
    return with_overrides(config, {k: str(Path(v).resolve()) for k, v in paths.items() if v},
                          "absolute paths for the trials")


@contextmanager
def local_ray(config: Config, ray_dir: Path):
    """Start Ray on this machine (or join ``tune.address``); shut it down afterwards."""
    import ray

    tune = config.tune
    link = None
    if tune.address is not None:
        _join(tune.address)
    else:
        ray_dir.mkdir(parents=True, exist_ok=True)
        if not {"RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"} & set(os.environ):
            # Token auth stays on, but its token lives in the run directory, not in ~/.ray.
            token = ray_dir / "auth_token"
            create_private(token, secrets.token_hex(32))  # keeps the one a crashed run made
            os.environ.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(token))
            from ray._raylet import Config as RayConfig

            RayConfig.initialize("")  # Ray read the auth mode at import; have it read it again
        temp_dir = str(ray_dir)
        if len(temp_dir) > _SOCKET_PATH_BUDGET:  # a short link keeps socket paths legal
            link = Path(tempfile.mkdtemp(prefix="pgnm-")) / "ray"
            link.symlink_to(ray_dir, target_is_directory=True)
            temp_dir = str(link)
        with _loopback_only():
            ray.init(num_cpus=tune.num_cpus, include_dashboard=tune.dashboard,
                     _node_ip_address=LOOPBACK, dashboard_host=LOOPBACK, _temp_dir=temp_dir,
                     log_to_driver=False, configure_logging=False)
    try:
        yield
    finally:
        started = _descendants() if tune.address is None else []
        ray.shutdown()
        _stop_leftovers(started)
        if link is not None:
            link.unlink()
            link.parent.rmdir()


@contextmanager
def _loopback_only():
    """A local Ray that only this machine can reach: its servers bind the node's IP address,
    but Ray swaps a loopback ``_node_ip_address`` for the machine's routable one unless it
    believes multi-node clusters are off (as on macOS), so it is told that while it starts."""
    from ray._private import ray_constants

    clusters = ray_constants.ENABLE_RAY_CLUSTER
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = clusters


def _join(address: str) -> None:
    """Join the cluster at ``tune.address`` exactly as given. A wrong address is a config
    mistake: Ray would retry it for minutes and then fail deep in its client, so a
    ``host:port`` is tried first (``auto`` and ``ray://`` addresses go straight to Ray)."""
    import socket

    import ray

    host, _, port = address.rpartition(":")
    if host and port.isdigit() and "://" not in address:
        try:
            socket.create_connection((host.strip("[]"), int(port)), timeout=10).close()
        except OSError as err:
            raise ConfigError(f"tune.address={address!r}: no Ray head answers there "
                              f"({err.strerror or err}); start one with `ray start --head` "
                              "or point tune.address at it") from None
    try:
        ray.init(address=address, log_to_driver=False)
    except ConnectionError as err:
        raise ConfigError(f"tune.address={address!r}: could not join the Ray cluster there "
                          f"({str(err).splitlines()[0] if str(err) else 'no reply'})") from None


def _descendants() -> list:
    import psutil

    return psutil.Process().children(recursive=True)


def _stop_leftovers(processes: list, grace_s: float = 15.0) -> None:
    """Kill what a local Ray leaves behind after ``ray.shutdown``.

    Shutdown stops Ray's daemons, and workers normally exit when they lose their raylet; a
    worker blocked in native code (a collective whose peer was OOM-killed) or a process a
    trial spawned can outlive them, holding cores and memory after the search has returned.
    """
    import psutil

    _, alive = psutil.wait_procs(processes, timeout=grace_s)
    names = []
    for proc in alive:
        with suppress(psutil.NoSuchProcess):
            names.append(proc.name())
            proc.kill()
    if names:
        warnings.warn(f"Ray left {len(names)} process(es) running after shutdown "
                      f"({', '.join(sorted(set(names)))}); killed them", stacklevel=2)


def _scheduler(config: Config, max_t: int):  # noqa: ANN202 - a Tune scheduler
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, MedianStoppingRule

    tune = config.tune
    if tune.scheduler == "asha":
        return ASHAScheduler(time_attr="training_iteration", max_t=max_t,
                             grace_period=min(tune.grace_period, max_t),
                             reduction_factor=tune.reduction_factor)
    if tune.scheduler == "median":
        return MedianStoppingRule(time_attr="training_iteration",
                                  grace_period=tune.grace_period, min_samples_required=2)
    return FIFOScheduler()


def _searcher(config: Config):  # noqa: ANN202 - a Tune searcher or None (random/grid)
    if config.tune.searcher == "optuna":
        require_extra("optuna", "optuna", "tune.searcher=optuna", "tune.searcher=random")
        from ray.tune.search.optuna import OptunaSearch

        return OptunaSearch(seed=config.seed)
    return None


def _trainable(config: Config, context: SearchContext):  # noqa: ANN202
    from ray import tune as ray_tune

    from pgnm.tune.workers import multi_rank_trial, single_rank_trial

    t = config.tune
    if t.workers_per_trial == 1:
        resources = {"cpu": t.cpus_per_worker, "gpu": t.gpus_per_worker}
        return ray_tune.with_resources(
            ray_tune.with_parameters(single_rank_trial, context=context), resources)
    # The trial itself only drives a TorchTrainer, whose workers hold the resources; Tune
    # refuses an empty request, so it takes a token share of a core.
    return ray_tune.with_resources(
        ray_tune.with_parameters(multi_rank_trial, context=context), {"cpu": 0.01})


def _storage(config: Config, out_dir: Path) -> tuple[str, str]:
    """Tune's ``(storage_path, name)``: ``<run_dir>/<name>/tune`` or ``<tune.storage>/<name>``
    (a URI stays a URI; a plain path becomes absolute, as every trial must resolve it alike)."""
    where = config.tune.storage
    if where is None:
        return str(out_dir), "tune"
    if "://" not in where:
        where = str(Path(where).resolve())
    return where.rstrip("/"), config.name


def _tuner(config: Config, context: SearchContext, experiment: str, callbacks: list,  # noqa: ANN202
           resumed: bool):
    """A new Tuner, or the interrupted one at ``experiment`` (tune.resume=auto): finished
    trials keep their results; unfinished and errored ones go on from their checkpoints."""
    from ray import tune as ray_tune

    t = config.tune
    trainable = _trainable(config, context)
    space = to_param_space(t.search_space)
    if resumed:
        return ray_tune.Tuner.restore(experiment, trainable, resume_unfinished=True,
                                      resume_errored=True, param_space=space)
    storage_path, name = experiment.rsplit("/", 1)
    max_t = config.schedule.epochs + t.finetune_epochs
    return ray_tune.Tuner(
        trainable, param_space=space,
        tune_config=ray_tune.TuneConfig(
            metric=SCORE, mode=t.mode, scheduler=_scheduler(config, max_t),
            search_alg=_searcher(config), num_samples=t.num_samples,
            max_concurrent_trials=t.max_concurrent, reuse_actors=False),
        run_config=ray_tune.RunConfig(
            name=name, storage_path=storage_path, callbacks=callbacks,
            failure_config=ray_tune.FailureConfig(max_failures=t.max_failures),
            checkpoint_config=ray_tune.CheckpointConfig(num_to_keep=2),
            verbose=1),
    )


def run_search(config: Config) -> dict[str, Any]:
    """Run the search; returns the summary that ``outputs`` wrote to ``search.json``."""
    check(config)
    from ray import tune as ray_tune

    out_dir = (Path(config.run_dir) / config.name).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    storage_path, name = _storage(config, out_dir)
    experiment = f"{storage_path}/{name}"
    resumed = config.tune.resume == "auto" and ray_tune.Tuner.can_restore(experiment)
    if resumed:
        print(f"continuing the interrupted search in {experiment} (tune.resume=auto)")
    uri = exp = search_run_id = None
    if config.tracking.enabled:
        uri = resolve_tracking_uri(config.tracking, config.run_dir)
        exp, search_run_id = runs.open_search_run(
            uri, config.tracking.experiment, config.run_dir, config.name, flatten(config),
            experiment, reuse=resumed)
        (out_dir / "search_config.yaml").write_text(dump_config(config))
    train_storage = (str(out_dir / "train") if config.tune.storage is None
                     else f"{storage_path}/{name}-train")
    context = SearchContext(_absolute(config), str(out_dir), uri, exp, search_run_id,
                            train_storage)
    callbacks = [runs.CloseTrialRuns(uri, exp, search_run_id)] if uri else []
    status = "FAILED"
    try:
        with local_ray(config, out_dir / "ray"):
            grid = _tuner(config, context, experiment, callbacks, resumed).fit()
        keys = searched_keys(config.tune.search_space)
        summary = outputs.write_outputs(config, grid, out_dir, keys)
        if uri and summary.get("best"):
            summary["registered"] = outputs.register_best(config, summary, uri, search_run_id)
            outputs.write_summary(out_dir, summary)
        if uri:
            outputs.log_to_search_run(uri, search_run_id, out_dir, summary)
        status = "FINISHED"
        return summary
    finally:
        if uri:
            runs.end_run(uri, search_run_id, status)
