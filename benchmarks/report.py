"""results.json -> results.md (tables) and PNG plots, for ``benchmarks.run_all``."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402

STEP_ORDER = (
    "reference/baseline",
    "reference/pgnm",
    "ours/baseline",
    "ours/pgnm",
    "ours/pgnm_light",
    "ours/pgnm_plain",
)


def _fmt(value: float) -> str:
    return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"


def markdown(result: dict) -> str:
    machine, setup = result["machine"], result["setup"]
    lines = [
        f"# pgnm benchmarks ({'quick' if setup['quick'] else 'full'} run)",
        "",
        f"Machine: {machine['cpu_model']} "
        f"({' '.join(machine.get('cpu_vector_flags', [])) or 'no AVX2/AVX-512'}), "
        f"{machine['cores']} cores, "
        f"{machine['ram_gib']} GiB RAM; torch {machine['torch']}, timm {machine['timm']}, "
        f"DALI {machine['dali']}, DeepSpeed {machine['deepspeed']}; "
        f"{machine['torch_threads']} torch threads. Load average (1 min) at start "
        f"{machine['load_start'][0]}, at end {machine['load_end'][0]}. "
        f"Total {result['wall_s']:.0f} s.",
        "",
        f"Train step: batch {setup['batch']}, {setup['crop']} px, grid {setup['grid']}, fp32 CPU, "
        f"median of {setup['step_repeats']} round-robin rounds after {setup['step_warmup']} "
        f"warm-up rounds; light policy input {setup['light_size']} px.",
        "",
        "| backbone | variant | median ms | min ms | max ms | median CPU ms |",
        "|---|---|---|---|---|---|",
    ]
    for arch, variants in result["steps"].items():
        for name in STEP_ORDER:
            v = variants[name]
            lines.append(
                f"| {arch} | {name} | {_fmt(v['median_ms'])} | {_fmt(v['min_ms'])} "
                f"| {_fmt(v['max_ms'])} | {_fmt(v['median_cpu_ms'])} |"
            )
    lines += ["", f"End-to-end pretraining ({setup['pretrain_arch']}, "
              f"{result['pretrain']['ours/pgnm']['images']} timed images per pipeline):", "",
              "| pipeline | img/s | RSS MB per epoch |", "|---|---|---|"]  # fmt: skip
    for name, v in result["pretrain"].items():
        lines.append(f"| {name} | {_fmt(v['img_s'])} | {v['rss_mb_per_epoch']} |")
    data = result["data"]
    lines += ["", f"Data loading (batch {setup['loader_batch']}, {setup['crop']} px crops, "
              f"{setup['loader_epochs']} epochs; sharding {_fmt(data['shard_img_s'])} img/s):",
              "", "| loader | img/s | CPU ms/img | RSS MB per epoch "
              "| RSS slope MB/epoch (2nd half) |",
              "|---|---|---|---|---|"]  # fmt: skip
    for name in ("dali", "webdataset", "reference"):
        v = data[name]
        slope = result["memory"][name]["slope_mb_per_epoch"]
        lines.append(
            f"| {name} | {_fmt(v['img_s'])} | {_fmt(v['cpu_ms_per_img'])} "
            f"| {v['rss_mb_per_epoch']} | {slope:+.2f} |"
        )
    lines.append(f"| decode_only (1 core) | {_fmt(data['decode_only']['img_s'])} | | | |")
    mask = result["mask"]
    lines += ["", f"Mask op (batch {mask['setup']['batch']}, {mask['setup']['size']} px, "
              f"grid {mask['setup']['grid']}), ms:", "",
              "| reference | reference_mask | fused | torch_sample | sample | full | memcpy |",
              "|---|---|---|---|---|---|---|",
              "| " + " | ".join(_fmt(mask[k]) for k in (
                  "reference_ms", "reference_mask_ms", "fused_ms", "torch_sample_ms",
                  "sample_ms", "full_ms", "memcpy_ms")) + " |"]  # fmt: skip
    lines += ["", "Ratios (each the quotient of two numbers measured in this run):", "",
              "| ratio | value | goal | pass |", "|---|---|---|---|"]  # fmt: skip
    for name, r in result["ratios"].items():
        goal = r["goal"] or "(info)"
        verdict = "" if r["pass"] is None else ("yes" if r["pass"] else "**no**")
        lines.append(f"| {name} | {r['value']:.3f} | {goal} | {verdict} |")
    return "\n".join(lines) + "\n"


def plots(result: dict, out: Path) -> list[Path]:
    written = []
    arches = list(result["steps"])
    fig, axes = plt.subplots(1, len(arches), figsize=(5 * len(arches), 4), squeeze=False)
    for ax, arch in zip(axes[0], arches):
        values = [result["steps"][arch][name]["median_ms"] for name in STEP_ORDER]
        colors = ["#999999", "#555555", "#9ecae1", "#3182bd", "#31a354", "#c6dbef"]
        ax.bar(range(len(STEP_ORDER)), values, color=colors)
        ax.set_xticks(range(len(STEP_ORDER)), STEP_ORDER, rotation=30, ha="right", fontsize=8)
        ax.set_ylabel("median ms / step")
        ax.set_title(f"{arch}, batch {result['setup']['batch']}")
    fig.tight_layout()
    written.append(_save(fig, out / "step_times.png"))

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, record in result["memory"].items():
        ax.plot(range(1, len(record["rss_mb"]) + 1), record["rss_mb"], marker="o", label=name)
    ax.set_xlabel("epoch")
    ax.set_ylabel("RSS of the process tree, MB")
    ax.set_title("Loader memory per epoch")
    ax.legend()
    fig.tight_layout()
    written.append(_save(fig, out / "loader_rss.png"))

    fig, ax = plt.subplots(figsize=(6, 4))
    names = list(result["pretrain"])
    ax.bar(
        names,
        [result["pretrain"][n]["img_s"] for n in names],
        color=["#3182bd", "#31a354", "#555555"],
    )
    ax.set_ylabel("images / s")
    ax.set_title(f"End-to-end pretraining, {result['setup']['pretrain_arch']}")
    fig.tight_layout()
    written.append(_save(fig, out / "pretrain_img_s.png"))
    return written


def _save(fig: plt.Figure, path: Path) -> Path:
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
