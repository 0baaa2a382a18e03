"""The few-shot protocol end to end on tiny data: 4 initialisations x 2 sizes x 2 trials."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
import yaml
from helpers import write_npz
from scipy import stats

from pgnm.config import load_config
from pgnm.protocol import run_protocol

SMALL = {"model.arch": "resnet10t", "data.image_size": 32, "data.eval_resize": 36,
         "data.batch_size": 8, "data.num_workers": 0, "data.shuffle_buffer": 16,
         "tracking.log_every": 1}
POLICY = {"policy.hidden_dim": 16, "mask.grid": 8, "mask.kernel_size": 3, "mask.sigma": 1.0}


@pytest.fixture(scope="module")
def protocol(tiny_shards, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fewshot")
    # Only the heated model is exported and registered (lineage to a registry URI); the other
    # stage runs skip it, which takes most of a tiny run's time.
    stage = {**SMALL, "data.root": str(tiny_shards), "schedule.epochs": 1, "optim.lr": 0.01,
             "tracking.log_model": False}
    tree = {
        "name": "tiny", "run_dir": str(tmp / "runs"), "optim": {"lr": 0.01},
        "model": {"arch": "resnet10t"}, "schedule": {"epochs": 3},  # early stop: patience 1
        "data": {"image_size": 32, "eval_resize": 36, "batch_size": 8, "num_workers": 0},
        "tracking": {"uri": f"sqlite:///{tmp / 'mlflow.db'}"},
        "fewshot": {
            "sizes": [2, 4], "trials": 2, "patience": 1,
            "datasets": {"tiny": str(write_npz(tmp / "tiny.npz"))},
            "inits": {
                "heated-paper": {"train": [
                    {"stage": "pretrain", "overrides": {**stage, **POLICY,
                                                        "schedule.max_steps": 2}},
                    {"stage": "finetune", "overrides": {**stage, "schedule.max_steps": 1,
                                                        "tracking.log_model": True}}]},
                "baseline": {"train": [{"stage": "finetune", "overrides": {
                    **stage, "schedule.max_steps": 2}}]},
            },
            # equal_budget and random_mask: the third and fourth initialisations
            "controls": {"effective_lr": False},
        },
    }
    path = tmp / "tiny.yaml"
    path.write_text(yaml.safe_dump(tree))
    config = load_config(path)
    return config, run_protocol(config).report, tmp  # report: what fewshot.json holds


def test_results_record_every_trial_and_its_draw(protocol):
    config, result, _ = protocol
    inits = ["baseline", "baseline-equal-budget", "heated-paper", "random-mask"]
    assert sorted(result["inits"]) == inits
    trials = result["trials"]
    assert len(trials) == 4 * 2 * 2
    on_disk = json.loads((config_root(config) / "fewshot.json").read_text())
    assert on_disk["trials"] == json.loads(json.dumps(trials))
    for t in trials:
        assert set(t["metrics"]) >= {"f1_macro", "balanced_accuracy", "auroc_macro_ovr"}
        assert 0.0 <= t["metrics"]["f1_macro"] <= 1.0 and t["run_id"]
        draw = result["draws"]["tiny"][str(t["k"])][t["trial"]]
        assert t["seed"] == draw["seed"]  # every initialisation sees the same draw
        assert len(draw["keys"]) == t["k"] == len(draw["sources"])
        assert sorted(Counter(draw["class_counts"]).values()) == [t["k"] // 2] * 2
    seeds = {(t["k"], t["trial"]): t["seed"] for t in trials}
    assert len(set(seeds.values())) == 4
    assert result["datasets"]["tiny"]["test_samples"] == 20


def test_intervals_match_scipy(protocol):
    _, result, _ = protocol
    for init in result["inits"]:
        for k in (2, 4):
            values = [t["metrics"]["f1_macro"] for t in result["trials"]
                      if t["init"] == init and t["k"] == k]
            cell = result["summary"]["tiny"][init][str(k)]["f1_macro"]
            assert cell["n"] == 2 and cell["mean"] == pytest.approx(sum(values) / 2)
            if stats.sem(values) > 0:
                low, high = stats.t.interval(0.95, 1, loc=sum(values) / 2,
                                             scale=stats.sem(values))
                assert (cell["ci_low"], cell["ci_high"]) == (pytest.approx(low),
                                                             pytest.approx(high))


def test_table_and_plot(protocol):
    config, result, _ = protocol
    root = config_root(config)
    table = (root / "fewshot.md").read_text()
    assert "### tiny: macro-F1" in table and "| heated-paper |" in table
    assert "### tiny: macro-F1 minus baseline" in table  # the paired differences
    paired = result["paired"]
    assert paired["baseline"] == "baseline"
    assert sorted(paired["differences"]["tiny"]) == ["baseline-equal-budget", "heated-paper",
                                                     "random-mask"]
    cell = paired["differences"]["tiny"]["heated-paper"]["2"]["f1_macro"]
    mine = [t["metrics"]["f1_macro"] for t in sorted(result["trials"], key=lambda t: t["trial"])
            if t["init"] == "heated-paper" and t["k"] == 2]
    base = [t["metrics"]["f1_macro"] for t in sorted(result["trials"], key=lambda t: t["trial"])
            if t["init"] == "baseline" and t["k"] == 2]
    assert cell["n"] == 2 and cell["mean"] == pytest.approx((sum(mine) - sum(base)) / 2)
    assert (root / "fewshot-tiny.png").read_bytes()[:4] == b"\x89PNG"
    assert not (root / "finetunes").exists() or not any((root / "finetunes").iterdir())


def test_mlflow_parent_children_and_lineage(protocol):
    from mlflow import MlflowClient

    config, result, _ = protocol
    client = MlflowClient(config.tracking.uri, registry_uri=config.tracking.uri)
    parent = client.get_run(result["mlflow"]["parent_run_id"])
    assert parent.data.tags["pgnm.stage"] == "fewshot"
    assert parent.data.tags["pgnm.fewshot.init.heated-paper"].startswith("models:/")
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"fewshot.json", "fewshot.md", "fewshot-tiny.png"} <= artifacts
    exp = parent.info.experiment_id
    children = client.search_runs(
        [exp], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert sorted(c.data.tags["pgnm.fewshot.init"] for c in children) == sorted(result["inits"])
    for child in children:
        tuned = client.search_runs([exp], f"tags.mlflow.parentRunId = '{child.info.run_id}'")
        assert len(tuned) == 4 and all("test/f1_macro" in r.data.metrics for r in tuned)
        init = result["inits"][child.data.tags["pgnm.fewshot.init"]]
        for run in tuned + [child]:
            assert run.data.tags["pgnm.source_model_uri"] == init["uri"]
        assert "test/f1_macro_mean" in child.data.metrics
    heated = next(c for c in children if c.data.tags["pgnm.fewshot.init"] == "heated-paper")
    assert heated.data.tags["pgnm.source_model_id"]  # a registered LoggedModel, declared
    # the few-shot fine-tunes are not exported or registered; the heated stage 2 is, and so
    # is the equal-budget control, which reuses that stage's recipe
    names = sorted(v.name for v in client.search_model_versions())
    assert names == ["pgnm-baseline-equal-budget-finetune-resnet10t",
                     "pgnm-heated-paper-finetune-resnet10t",
                     "pgnm-random-mask-finetune-resnet10t"]


def test_stage_1_runs_log_what_the_policy_learnt_and_the_control_keeps_it_at_the_start(
        protocol):
    """Both stage-1 runs log the policy diagnostics; the random-mask control's policy is
    exactly the one its seed builds, untouched by training."""
    import torch

    from pgnm.method import PGNMModel
    from pgnm.seeds import seed_weights

    config, _, _ = protocol
    stages = Path(config.run_dir) / config.name / "train"
    for name in ("heated-paper-0-pretrain", "random-mask-0-pretrain"):
        epochs = [json.loads(line) for line in (stages / name / "metrics.jsonl").open()
                  if '"kind": "epoch"' in line]
        assert {"policy/kl_uniform", "policy/image_specificity", "policy/mask_mean",
                "policy/draw_mean"} <= set(epochs[-1]), name
        assert epochs[-1]["policy/kl_uniform"] >= 0.0
    frozen = stages / "random-mask-0-pretrain"
    stage = load_config(frozen / "config.yaml")
    assert stage.policy.learn is False
    seed_weights(stage.seed)
    start = PGNMModel(stage).policy.state_dict()
    saved = torch.load(frozen / "model" / "policy.pt", weights_only=True)["state_dict"]
    assert saved.keys() == start.keys()
    assert all(torch.equal(saved[k], start[k]) for k in start)


def test_fine_tunes_stop_early_and_are_tested_at_their_best_val_epoch(protocol):
    _, result, _ = protocol
    assert result["selection"]["rule"] == "best_val" and result["selection"]["patience"] == 1
    for t in result["trials"]:
        assert 1 <= t["epochs_trained"] <= 3 and 0 <= t["selected_epoch"] < t["epochs_trained"]
        if t["epochs_trained"] < 3:  # stopped: the epoch after the best one was no better
            assert t["selected_epoch"] == t["epochs_trained"] - 2


def test_linear_probes_and_the_pixel_baseline_share_the_draws(protocol):
    config, result, _ = protocol
    probes = result["probe"]["trials"]
    inits = ["baseline", "baseline-equal-budget", "heated-paper", "pixels", "random-mask"]
    assert sorted({p["init"] for p in probes}) == inits and len(probes) == 5 * 2 * 2
    seeds = {(t["k"], t["trial"]): t["seed"] for t in result["trials"]}
    for p in probes:
        assert p["eval"] == "probe" and p["seed"] == seeds[(p["k"], p["trial"])]
        assert 0.0 <= p["metrics"]["balanced_accuracy"] <= 1.0
    summary = result["probe"]["summary"]["tiny"]
    assert summary["pixels"]["4"]["f1_macro"]["n"] == 2
    assert "pixels" not in result["probe"]["paired"]["tiny"]
    assert isinstance(result["sanity"], list)
    table = (config_root(config) / "fewshot.md").read_text()
    assert "## Linear probe" in table and "| pixels |" in table and "### Sanity check" in table
    assert (config_root(config) / "fewshot-tiny-probe.png").read_bytes()[:4] == b"\x89PNG"
    lines = (config_root(config) / "probes.jsonl").read_text().splitlines()
    assert len(lines) == len(probes)


def test_each_row_keeps_the_val_loss_that_chose_its_epoch_and_lr_can_be_chosen_on_it(
        protocol, tmp_path):
    from benchmarks.fewshot_lr import main as fewshot_lr

    config, result, _ = protocol
    assert all(t["selected_value"] > 0.0 for t in result["trials"])  # val loss
    out = fewshot_lr(["--protocol", str(config_root(config)), "--inits", "baseline",
                      "heated-paper", "--sizes", "4", "--lrs", "0.01", "0.05", "--trials", "1",
                      "--json", str(tmp_path / "lr.json")])
    assert len(out["rows"]) == 2 * 2  # inits x lrs, one draw
    seeds = {(t["k"], t["trial"]): t["seed"] for t in result["trials"]}
    assert {r["seed"] for r in out["rows"]} == {seeds[(4, 0)]}  # the protocol's own draw
    chosen = out["lr_chosen"]["heated-paper/tiny/k4/t0"]
    by_lr = {r["lr"]: r["selected_value"] for r in out["rows"] if r["init"] == "heated-paper"}
    assert chosen == min(by_lr, key=by_lr.get)
    assert set(out["fixed"]) == {"0.01", "0.05"} and "heated-paper" in out["chosen_lr"]["tiny"]


def test_the_workers_benchmark_times_the_protocols_own_fine_tunes_per_worker_count(
        protocol, tmp_path):
    from benchmarks.fewshot_workers import main as fewshot_workers

    config, _, _ = protocol
    root = config_root(config)
    out = fewshot_workers(["--protocol", str(root), "--inits", "baseline", "--sizes", "2",
                           "--workers", "1", "2", "--rounds", "1", "--json",
                           str(tmp_path / "workers.json")])
    assert out["fine_tunes_per_run"] == 2  # one init x one k x two draws
    assert set(out["seconds"]) == {"1", "2"} and out["speedup_over_first"]["1"] == 1.0
    assert all(s["min"] > 0 for s in out["seconds"].values())
    assert out["threads_per_worker"]["2"] >= 1
    assert json.loads((tmp_path / "workers.json").read_text()) == out
    assert not (root / "workers-bench" / "r0-w2").exists()  # its fine-tunes are thrown away


def test_lrs_pick_one_per_draw_on_val_and_reuse_the_rows_at_the_recipe_lr(protocol):
    """fewshot.lrs on a finished protocol: only the new lr's fine-tunes run, and each draw
    keeps the lr whose best epoch had the lowest val loss."""
    from pgnm.config import with_overrides

    config, result, _ = protocol
    search = with_overrides(config, {"fewshot.lrs": [0.05, 0.01], "fewshot.sizes": [4],
                                     "fewshot.trials": 1}, "test")
    out = run_protocol(search).report
    rows = out["lr_search"]["rows"]
    assert out["lr_search"]["lrs"] == [0.01, 0.05] and len(rows) == 4 * 2  # inits x lrs
    before = {t["init"]: t["run_id"] for t in result["trials"] if (t["k"], t["trial"]) == (4, 0)}
    assert {r["init"]: r["run_id"] for r in rows if r["lr"] == 0.01} == before  # not re-run
    assert len(out["trials"]) == 4
    for t in out["trials"]:
        by_lr = {r["lr"]: r["selected_value"] for r in rows if r["init"] == t["init"]}
        assert t["lr"] == min(by_lr, key=by_lr.get)
        assert out["lr_search"]["chosen"]["tiny"][t["init"]] == {str(t["lr"]): 1}
    assert "## Learning rate" in (config_root(config) / "fewshot.md").read_text()


def test_fine_tunes_in_two_worker_processes_equal_the_in_process_ones(protocol, monkeypatch):
    """fewshot.workers=2 at one thread each gives the rows a one-thread run in this process
    gives, bit for bit, and reports to the same MLflow child runs."""
    import torch

    from pgnm.config import with_overrides

    config, _, _ = protocol
    root = config_root(config)
    arm = with_overrides(config, {"fewshot.lrs": [0.01, 0.02], "fewshot.sizes": [4],
                                  "fewshot.trials": 1}, "test")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the workers' threads, as the serial run's
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        serial = run_protocol(arm).report["lr_search"]["rows"]
    finally:
        torch.set_num_threads(threads)
    trials_file = root / "trials.jsonl"
    kept = [line for line in trials_file.read_text().splitlines()
            if json.loads(line).get("lr") != 0.02]
    trials_file.write_text("\n".join(kept) + "\n")  # the lr 0.02 arm runs again, in workers
    parallel = run_protocol(with_overrides(arm, {"fewshot.workers": 2}, "test")).report
    fields = ("init", "k", "trial", "seed", "lr", "metrics", "steps", "epochs_trained",
              "selected_epoch", "selected_value")
    again = {r["init"]: {f: r[f] for f in fields} for r in parallel["lr_search"]["rows"]
             if r["lr"] == 0.02}
    assert again == {r["init"]: {f: r[f] for f in fields} for r in serial if r["lr"] == 0.02}
    assert len(again) == 4
    logs = sorted(p.name for p in (root / "logs").glob("finetunes-w*.log"))
    assert logs == ["finetunes-w0.log", "finetunes-w1.log"]


def test_rerun_skips_what_is_done(protocol):
    config, result, _ = protocol
    again = run_protocol(config).report
    assert [t["run_id"] for t in again["trials"]] == [t["run_id"] for t in result["trials"]]
    assert again["probe"]["trials"] == result["probe"]["trials"]  # read back, not refitted


def config_root(config):
    from pathlib import Path

    return Path(config.run_dir) / config.name
