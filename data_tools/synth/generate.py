"""Write a synthetic RadImageNet release: raw tree, split CSVs and ``synthetic_meta.json``.

Layout (the RadImageNet release's)::

    DIR/radiology_ai/CT/<organ>/<class>/<stem>.png
    DIR/radiology_ai/MR/<organ>/<class>/<stem>.png
    DIR/radiology_ai/US/<organ>/<stem>.png
    DIR/RadiologyAI_{train,val,test}.csv        header "filename,label"
    DIR/synthetic_meta.json

The meta file is written first (status "in_progress") and rewritten at the end ("complete").
Running again with the same settings resumes: files that exist are complete (every write is
atomic) and are skipped. Different settings need ``overwrite=True``, and a non-empty folder
that this generator did not write is never touched.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import shutil
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .anatomy import template_name
from .anatomy_us import us_template_name
from .lesions import Recipe, assign_recipes
from .plan import Job, Plan, build_plan
from .render import Scene, near_duplicate, render
from .rng import stream
from .settings import (
    GENERATOR_NAME,
    GENERATOR_VERSION,
    REALISM_ON,
    SPLIT_DEFAULT,
    SPLIT_LIKE_REAL,
    SPLITS,
    PlanSettings,
    Realism,
    RenderKnobs,
)
from .taxonomy import ClassKey, default_classes, load_taxonomy, parse_class, select_classes
from .writers import atomic_write_bytes, png_bytes, write_csv, write_json

META_NAME = "synthetic_meta.json"
CSV_NAMES = {s: f"RadiologyAI_{s}.csv" for s in SPLITS}


class GeneratorError(RuntimeError):
    """A problem with the request or the output folder, phrased for the command line."""


# -- output folder ---------------------------------------------------------------------------
def read_meta(out: Path) -> dict | None:
    path = out / META_NAME
    if not path.is_file():
        return None
    try:
        meta = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return meta if isinstance(meta, dict) and meta.get("generator") == GENERATOR_NAME else None


def check_output_dir(out: Path) -> dict | None:
    """The folder's previous meta (None when new or empty); refuses foreign content."""
    if out.exists() and not out.is_dir():
        raise GeneratorError(f"--out {out} exists and is not a directory")
    if not out.exists() or not any(out.iterdir()):
        return None
    meta = read_meta(out)
    if meta is None:
        raise GeneratorError(
            f"--out {out} is not empty and has no {META_NAME} from this generator; "
            "choose a new or empty directory (nothing was written)")
    return meta


def _clear_previous(out: Path, meta: dict) -> None:
    """Remove what a previous run of this generator wrote, and nothing else."""
    for name in ["radiology_ai", *CSV_NAMES.values(), *meta.get("companions", [])]:
        path = out / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


# -- workers -----------------------------------------------------------------------------
_WORKER: dict = {}


def _init_worker(root: str, knobs: RenderKnobs, seed: int, scenes: dict[str, Scene]) -> None:
    _WORKER.update(root=Path(root), knobs=knobs, seed=seed, scenes=scenes)


def _render_job(job: Job) -> int:
    """Render one picture and write every file that carries it; returns files written."""
    root: Path = _WORKER["root"]
    targets = [job.original, *job.duplicates] + ([job.near_dup] if job.near_dup else [])
    if all((root / o.relpath).exists() for o in targets):
        return 0  # resumed run: this job finished before
    knobs: RenderKnobs = _WORKER["knobs"]
    if job.blank:
        image = np.zeros((knobs.size, knobs.size), np.uint8)
    else:
        image = render(_WORKER["scenes"][job.content.key], knobs, seed=_WORKER["seed"],
                       key=job.cls.key, patient=job.patient, index=job.index)
    data = png_bytes(image, knobs.rgb)
    for o in [job.original, *job.duplicates]:
        atomic_write_bytes(root / o.relpath, data)
    if job.near_dup is not None:
        rng = stream(_WORKER["seed"], job.cls.key, "near-dup", job.index)
        atomic_write_bytes(root / job.near_dup.relpath,
                           png_bytes(near_duplicate(image, rng), knobs.rgb))
    return len(targets)


def _render_chunk(jobs: list[Job]) -> int:
    return sum(_render_job(j) for j in jobs)


# -- the public entry point --------------------------------------------------------------------
def resolve_classes(classes: int | Sequence[str | ClassKey] | None,
                    taxonomy: str | Path | None) -> tuple[list[ClassKey], list[ClassKey]]:
    """(full taxonomy, classes to render). A list of classes *is* the taxonomy."""
    if classes is not None and not isinstance(classes, int):
        full = [c if isinstance(c, ClassKey) else parse_class(c, "classes") for c in classes]
        if len(set(full)) != len(full):
            raise GeneratorError("classes: the list names a class twice")
        return full, full
    full = load_taxonomy(taxonomy) if taxonomy is not None else default_classes()
    return full, select_classes(full, classes)


def _fingerprint(payload: dict) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def _class_entry(c: ClassKey, recipe: Recipe | None, count: int, patients: int) -> dict:
    template = us_template_name(c.organ) if c.modality == "US" else template_name(c.organ)
    return {"key": c.key, "label": c.label, "modality": c.modality, "organ": c.organ,
            "class": c.name, "folder": c.folder, "template": template,
            "recipe": recipe.to_json() if recipe else None,
            "images": count, "patients": patients}


def generate_radimagenet(
    out: str | Path, *, classes: int | Sequence[str | ClassKey] | None = None,
    taxonomy: str | Path | None = None, images_per_class: int | None = None,
    total: int | None = None, size: int = 224, seed: int = 0, workers: int = 1,
    realism: bool | Realism = False, balanced: bool = False, rgb: bool = False,
    split: tuple[float, float, float] | None = None, split_like_real: bool = False,
    max_patient_images: int = 8, modality_shares: dict[str, float] | None = None,
    render_options: dict | None = None, overwrite: bool = False, progress: bool = True,
) -> dict:
    """Generate the release under ``out`` and return its meta dictionary.

    ``classes``: None (all), N (deterministic subset spanning the modalities) or a list of
    ``MOD/organ/class`` strings used as the taxonomy. Give ``images_per_class`` (mean, or
    exact with ``balanced``) or ``total``. ``realism`` True turns on the release's defects
    at the rates of ``settings.py``; a :class:`Realism` sets them one by one.
    ``render_options`` sets other :class:`RenderKnobs` fields (``cnr_range``, ...).
    """
    out = Path(out)
    if images_per_class is None and total is None:
        images_per_class = 10
    full, chosen = resolve_classes(classes, taxonomy)
    recipes = assign_recipes(full)
    realism_rates = REALISM_ON if realism is True else (realism or Realism())
    if split is None:
        split = SPLIT_LIKE_REAL if split_like_real else SPLIT_DEFAULT
    try:
        settings = PlanSettings(seed=seed, per_class=images_per_class, total=total,
                                balanced=balanced, split=tuple(split),  # type: ignore[arg-type]
                                max_patient_images=max_patient_images,
                                modality_shares=modality_shares, realism=realism_rates)
        knobs = RenderKnobs(size=size, rgb=rgb, **(render_options or {}))
        plan = build_plan(chosen, settings)
    except (TypeError, ValueError) as err:
        raise GeneratorError(str(err)) from err
    fingerprint = _fingerprint({"version": GENERATOR_VERSION, "plan": asdict(settings),
                                "render": asdict(knobs), "classes": [c.key for c in chosen],
                                "taxonomy": [c.key for c in full]})
    previous = check_output_dir(out)
    if previous is not None and previous.get("fingerprint") not in (None, fingerprint):
        if not overwrite:
            raise GeneratorError(
                f"--out {out} holds a generator output made with other settings "
                f"(fingerprint {previous.get('fingerprint')} != {fingerprint}); "
                "pass --overwrite to replace it, or choose another directory")
        _clear_previous(out, previous)
        previous = None
    out.mkdir(parents=True, exist_ok=True)
    meta = _meta(plan, chosen, full, recipes, settings, knobs, fingerprint, previous)
    write_json(out / META_NAME, meta)

    scenes = {c.key: Scene(c.modality, c.organ, (recipes[c],) if recipes[c] else ())
              for c in chosen}
    _run_jobs(plan, out, knobs, seed, scenes, workers, progress)

    rows: dict[str, list[tuple[str, str]]] = {s: [] for s in SPLITS}
    for o in plan.outputs():
        rows[o.split].append((o.relpath, o.label))
    for s in SPLITS:
        write_csv(out / CSV_NAMES[s], ["filename", "label"], rows[s])
    meta["status"] = "complete"
    write_json(out / META_NAME, meta)
    return meta


def _run_jobs(plan: Plan, out: Path, knobs: RenderKnobs, seed: int, scenes: dict[str, Scene],
              workers: int, progress: bool) -> None:
    n_files = len(plan.outputs())
    chunk = max(1, min(256, len(plan.jobs) // (max(1, workers) * 8) or 1))
    chunks = [plan.jobs[i:i + chunk] for i in range(0, len(plan.jobs), chunk)]
    bar = tqdm(total=n_files, unit="img", desc="synth-radimagenet", disable=not progress)
    init_args = (str(out), knobs, seed, scenes)
    try:
        if workers <= 1:
            _init_worker(*init_args)
            for jobs in chunks:
                bar.update(_render_chunk(jobs))
        else:
            # spawn, not fork: the parent may hold torch/OpenMP threads that fork would copy.
            ctx = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker,
                                     initargs=init_args) as pool:
                for fut in as_completed([pool.submit(_render_chunk, j) for j in chunks]):
                    bar.update(fut.result())
    finally:
        bar.close()


def _meta(plan: Plan, chosen: list[ClassKey], full: list[ClassKey],
          recipes: dict[ClassKey, Recipe | None], settings: PlanSettings, knobs: RenderKnobs,
          fingerprint: str, previous: dict | None) -> dict:
    events: dict[str, list] = {"duplicates": [], "near_duplicates": [], "blanks": [],
                               "label_noise": []}
    for job in plan.jobs:
        events["duplicates"] += [[job.original.relpath, d.relpath] for d in job.duplicates]
        if job.near_dup is not None:
            events["near_duplicates"].append([job.original.relpath, job.near_dup.relpath])
        if job.blank:
            events["blanks"].append(job.original.relpath)
        if job.content != job.cls:
            events["label_noise"].append([job.original.relpath, job.content.key])
    counts = plan.file_counts()
    totals = {s: sum(v[s] for v in counts.values()) for s in SPLITS}
    return {
        "generator": GENERATOR_NAME, "version": GENERATOR_VERSION, "status": "in_progress",
        "fingerprint": fingerprint, "seed": settings.seed,
        "settings": {"plan": asdict(settings), "render": asdict(knobs)},
        "taxonomy_size": len(full),
        "classes": [_class_entry(c, recipes[c], plan.counts[c], plan.patients[c]) for c in chosen],
        "counts": counts, "totals": {**totals, "files": sum(totals.values()),
                                     "rendered": len(plan.jobs)},
        "realism_events": events,
        "companions": (previous or {}).get("companions", []),
    }


def record_companions(out: Path, paths: list[str]) -> None:
    """Add companion outputs (npz files, downstream folders) to the folder's meta."""
    meta = read_meta(out) or {"generator": GENERATOR_NAME, "version": GENERATOR_VERSION,
                              "status": "complete", "fingerprint": None}
    meta["companions"] = sorted(set(meta.get("companions", [])) | set(paths))
    write_json(out / META_NAME, meta)
