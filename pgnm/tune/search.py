"""A Ray Tune search over real PGNM training runs (``launch/tune.py``).

``run_search(config)``: check the space, start (or join) Ray, open the search's MLflow run,
run the trials under ASHA (or FIFO / median stopping), then write the outputs (``outputs.py``)
and register the best trial's heated model with lineage to the search.

Everything a local search writes lives under ``<run_dir>/<name>/``: ``ray/`` (Ray's session
files, logs and auth token), ``tune/`` (Tune's experiment state and trial checkpoints),
``trials/<id>/`` (each trial's training runs) and the outputs; the MLflow store is the usual
one (``tracking.uri``, else the embedded sqlite store under ``run_dir``).
"""

from __future__ import annotations

import os
import secrets
import tempfile
import warnings
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from pgnm.config import Config, ConfigError, dump_config, flatten, with_overrides
from pgnm.data.manifest import ManifestError, load_classes
from pgnm.names import Stage
from pgnm.tracking.store import tracking_uri as resolve_tracking_uri
from pgnm.tune import outputs, runs
from pgnm.tune.space import searched_keys, to_param_space, validate_space
from pgnm.tune.trial import SCORE, SearchContext, metric_names, trial_device

# Ray's unix sockets live under its temp dir; AF_UNIX paths stop at 107 bytes.
_SOCKET_PATH_BUDGET = 40


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
    if tune.address is not None:
        ray.init(address=tune.address, log_to_driver=False)
    else:
        ray_dir.mkdir(parents=True, exist_ok=True)
        if not {"RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"} & set(os.environ):
            # Token auth stays on, but its token lives in the run directory, not in ~/.ray.
            token = ray_dir / "auth_token"
            if not token.exists():
                token.write_text(secrets.token_hex(32))
                token.chmod(0o600)
            os.environ.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(token))
            from ray._raylet import Config as RayConfig

            RayConfig.initialize("")  # Ray read the auth mode at import; have it read it again
        temp_dir, link = str(ray_dir), None
        if len(temp_dir) > _SOCKET_PATH_BUDGET:  # a short link keeps socket paths legal
            link = Path(tempfile.mkdtemp(prefix="pgnm-")) / "ray"
            link.symlink_to(ray_dir, target_is_directory=True)
            temp_dir = str(link)
        ray.init(num_cpus=tune.num_cpus, include_dashboard=tune.dashboard, _temp_dir=temp_dir,
                 log_to_driver=False, configure_logging=False)
    try:
        yield
    finally:
        started = _descendants() if tune.address is None else []
        ray.shutdown()
        _stop_leftovers(started)
        if tune.address is None and link is not None:
            link.unlink()
            link.parent.rmdir()


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


def run_search(config: Config) -> dict[str, Any]:
    """Run the search; returns the summary that ``outputs`` wrote to ``search.json``."""
    check(config)
    from ray import tune as ray_tune

    out_dir = (Path(config.run_dir) / config.name).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    t = config.tune
    uri = exp = search_run_id = None
    if config.tracking.enabled:
        uri = resolve_tracking_uri(config.tracking, config.run_dir)
        exp, search_run_id = runs.open_search_run(
            uri, config.tracking.experiment, config.run_dir, config.name, flatten(config))
        (out_dir / "search_config.yaml").write_text(dump_config(config))
    context = SearchContext(_absolute(config), str(out_dir), uri, exp, search_run_id)
    max_t = config.schedule.epochs + t.finetune_epochs
    callbacks = [runs.CloseTrialRuns(uri, exp, search_run_id)] if uri else []
    status = "FAILED"
    try:
        with local_ray(config, out_dir / "ray"):
            tuner = ray_tune.Tuner(
                _trainable(config, context),
                param_space=to_param_space(t.search_space),
                tune_config=ray_tune.TuneConfig(
                    metric=SCORE, mode=t.mode, scheduler=_scheduler(config, max_t),
                    search_alg=_searcher(config), num_samples=t.num_samples,
                    max_concurrent_trials=t.max_concurrent, reuse_actors=False),
                run_config=ray_tune.RunConfig(
                    name="tune", storage_path=str(out_dir), callbacks=callbacks,
                    failure_config=ray_tune.FailureConfig(max_failures=t.max_failures),
                    checkpoint_config=ray_tune.CheckpointConfig(num_to_keep=2),
                    verbose=1),
            )
            grid = tuner.fit()
        summary = outputs.write_outputs(config, grid, out_dir, searched_keys(t.search_space))
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
