"""The synthetic RadImageNet generator: layout, CSVs, names, splits, determinism, defects."""

from __future__ import annotations

import csv
import hashlib
import json
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]

from data_tools.synth import Realism, generate_radimagenet  # noqa: E402
from data_tools.synth.formation import fan_geometry  # noqa: E402
from data_tools.synth.generate import CSV_NAMES, META_NAME, GeneratorError  # noqa: E402
from data_tools.synth.plan import build_plan  # noqa: E402
from data_tools.synth.settings import PlanSettings  # noqa: E402
from data_tools.synth.taxonomy import parse_class  # noqa: E402
from data_tools.synth_radimagenet import main as cli  # noqa: E402

ODD = [
    "CT/lung/Nodule",
    "CT/lung/Airspace_opacity",
    "MR/af/achilles_pathology_",
    "MR/af/Plantar_plate_tear",
    "MR/spine/cord_pathology_",
    "MR/shoulder/ca++_tendinosis",
]
CLASSES = [
    "CT/abd/normal",
    "CT/abd/liver_lesion",
    *ODD,
    "MR/brain/normal",
    "US/thyroid",
    "US/gb",
    "US/liver",
]
# High defect rates so that a small set shows every kind of defect.
DEFECTS = Realism(dup_cross_class_rate=0.1, near_dup_rate=0.1, blank_rate=0.03)
SIZE = 48


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def read_rows(root: Path) -> dict[str, list[dict[str, str]]]:
    out = {}
    for split, name in CSV_NAMES.items():
        with open(root / name, newline="") as fh:
            assert fh.readline().strip() == "filename,label"
            fh.seek(0)
            out[split] = list(csv.DictReader(fh))
    return out


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im)


@pytest.fixture(scope="module")
def release(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("release")
    meta = generate_radimagenet(
        root,
        classes=CLASSES,
        images_per_class=10,
        balanced=True,
        size=SIZE,
        seed=3,
        realism=DEFECTS,
        progress=False,
    )
    return root, meta


# -- layout and CSVs -------------------------------------------------------------------------
def test_every_csv_row_is_a_file_and_counts_match_meta(release):
    root, meta = release
    rows = read_rows(root)
    seen: Counter = Counter()
    listed = set()
    for split, split_rows in rows.items():
        for row in split_rows:
            path = root / row["filename"]
            assert path.is_file(), row["filename"]
            listed.add(row["filename"])
            seen[(row["label"], split)] += 1
    assert {
        (lab, s): n for lab, per in meta["counts"].items() for s, n in per.items() if n
    } == dict(seen)
    on_disk = {p.relative_to(root).as_posix() for p in (root / "radiology_ai").rglob("*.png")}
    assert on_disk == listed  # no orphan files, no missing ones
    assert meta["status"] == "complete" and meta["totals"]["files"] == len(listed)
    saved = json.loads((root / META_NAME).read_text())
    assert saved["counts"] == meta["counts"] and saved["seed"] == 3


def test_paths_labels_and_png_format_follow_the_release(release):
    root, _ = release
    pattern = re.compile(
        r"^radiology_ai/(CT|MR)/[^/]+/[^/]+/[^/]+\.png$|"
        r"^radiology_ai/US/[^/]+/usn\d{6}\.png$"
    )
    for rows in read_rows(root).values():
        for row in rows:
            assert pattern.match(row["filename"]), row["filename"]
            parts = row["filename"].split("/")
            expected = "-".join(parts[1:-1])  # MOD-organ-class or US-organ
            assert row["label"] == expected
    sample = next((root / "radiology_ai" / "MR").rglob("*.png"))
    with Image.open(sample) as im:
        assert im.mode == "L" and im.size == (SIZE, SIZE)


def test_odd_class_names_are_written_verbatim(release):
    root, meta = release
    for entry in ODD:
        c = parse_class(entry)
        folder = root / c.folder
        assert folder.is_dir() and folder.name == c.name  # case and trailing "_" kept
        assert any(
            row["label"] == f"{c.modality}-{c.organ}-{c.name}"
            for rows in read_rows(root).values()
            for row in rows
        )
    names = {entry["class"] for entry in meta["classes"]}
    assert {"ca++_tendinosis", "achilles_pathology_", "cord_pathology_"} <= names


def test_stems_copy_the_real_naming_patterns(release):
    root, meta = release
    copies = {dst for _, dst in meta["realism_events"]["duplicates"]}  # keep their source stem

    def own(folder: str) -> list[str]:
        return [
            p.name
            for p in (root / folder).glob("*.png")
            if p.relative_to(root).as_posix() not in copies
        ]

    assert own("radiology_ai/CT/abd/normal")
    assert all(re.fullmatch(r"abd-normal\d{6}\.png", n) for n in own("radiology_ai/CT/abd/normal"))
    assert all(re.fullmatch(r"abd\d{6}\.png", n) for n in own("radiology_ai/CT/abd/liver_lesion"))
    assert all(
        re.fullmatch(r"(foot|ankle)\d{6}\.png", n)
        for n in own("radiology_ai/MR/af/Plantar_plate_tear")
    )
    assert all(re.fullmatch(r"lung\d{6}\.png", n) for n in own("radiology_ai/CT/lung/Nodule"))
    assert all(
        re.fullmatch(r"usn\d{6}\.png", p.name) for p in (root / "radiology_ai/US").rglob("*.png")
    )
    # File numbers run per (modality, organ), and across all US organs, so a stem is unique
    # in its series; only duplicates repeat one.
    series: Counter = Counter()
    for rows in read_rows(root).values():
        for row in rows:
            parts = row["filename"].split("/")
            key = "US" if parts[1] == "US" else "/".join(parts[1:3])
            if row["filename"] not in copies:
                series[(key, re.search(r"\d{6}", parts[-1]).group())] += 1
    assert max(series.values()) == 1


# -- splits -----------------------------------------------------------------------------------
def test_no_patient_spans_two_splits_and_defects_follow_their_source():
    classes = [parse_class(c) for c in CLASSES]
    settings = PlanSettings(seed=5, per_class=60, realism=DEFECTS)
    plan = build_plan(classes, settings)
    by_patient: dict[tuple[str, int], set[str]] = {}
    for job in plan.jobs:
        by_patient.setdefault((job.cls.key, job.patient), set()).add(job.original.split)
        extras = list(job.duplicates) + ([job.near_dup] if job.near_dup else [])
        assert all(o.split == job.original.split for o in extras)
    assert all(len(splits) == 1 for splits in by_patient.values())
    sizes = Counter((j.cls.key, j.patient) for j in plan.jobs)
    assert max(sizes.values()) == settings.max_patient_images  # real groups of 1..8 images
    assert len(by_patient) < len(plan.jobs) / 2


@pytest.mark.parametrize(
    "like_real, ratios", [(False, (0.75, 0.10, 0.15)), (True, (0.88, 0.04, 0.08))]
)
def test_split_ratios_are_stratified_per_class(like_real, ratios):
    from data_tools.synth.settings import SPLIT_LIKE_REAL, SPLITS

    classes = [parse_class(c) for c in CLASSES]
    split = SPLIT_LIKE_REAL if like_real else ratios
    plan = build_plan(classes, PlanSettings(seed=1, per_class=400, balanced=True, split=split))
    for label, per in plan.file_counts().items():
        n = sum(per.values())
        for s, r in zip(SPLITS, ratios):
            assert abs(per[s] / n - r) < 0.03, (label, per)


def test_the_csvs_are_exactly_the_plan(release):
    root, _ = release
    plan = build_plan(
        [parse_class(c) for c in CLASSES],
        PlanSettings(seed=3, per_class=10, balanced=True, realism=DEFECTS),
    )
    want = {s: [(o.relpath, o.label) for o in plan.outputs() if o.split == s] for s in CSV_NAMES}
    got = {s: [(r["filename"], r["label"]) for r in rows] for s, rows in read_rows(root).items()}
    assert got == want


# -- realism switches ---------------------------------------------------------------------------
def test_cross_class_duplicates_share_bytes_and_stem(release):
    root, meta = release
    dups = meta["realism_events"]["duplicates"]
    assert dups, "expected duplicates at a 10% rate"
    for src, dst in dups:
        assert md5(root / src) == md5(root / dst)
        assert Path(src).name == Path(dst).name and Path(src).parent != Path(dst).parent
        assert src.split("/")[1] == dst.split("/")[1]  # same modality
        if not src.startswith("radiology_ai/US/"):
            assert src.split("/")[2] == dst.split("/")[2]  # same organ, other class


def test_blanks_are_all_zero(release):
    root, meta = release
    blanks = meta["realism_events"]["blanks"]
    assert blanks
    for rel in blanks:
        assert not pixels(root / rel).any()


def test_near_duplicates_are_the_next_stem_and_almost_identical(release):
    root, meta = release
    pairs = meta["realism_events"]["near_duplicates"]
    assert pairs
    for src, dst in pairs:
        n_src = int(re.search(r"(\d{6})\.png$", src).group(1))
        n_dst = int(re.search(r"(\d{6})\.png$", dst).group(1))
        assert n_dst == n_src + 1 and Path(src).parent == Path(dst).parent
        a, b = pixels(root / src).astype(float), pixels(root / dst).astype(float)
        assert md5(root / src) != md5(root / dst)
        assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.8


def test_defects_are_off_by_default_and_on_with_realism(tmp_path):
    classes = [parse_class(c) for c in CLASSES]
    plain = build_plan(classes, PlanSettings(seed=0, per_class=200))
    assert not any(j.duplicates or j.near_dup or j.blank for j in plain.jobs)
    noisy = build_plan(
        classes, PlanSettings(seed=0, per_class=200, realism=Realism(label_noise=0.2))
    )
    organ_sizes = Counter(c.organ_key for c in classes)
    # Flips stay inside an organ, so only CT/MR classes with a sibling class can flip.
    eligible = [
        j for j in noisy.jobs if j.cls.modality != "US" and organ_sizes[j.cls.organ_key] > 1
    ]
    flipped = [j for j in noisy.jobs if j.content != j.cls]
    assert 0.15 < len(flipped) / len(eligible) < 0.25
    assert all(j.content.organ_key == j.cls.organ_key for j in flipped)


# -- histogram signatures ---------------------------------------------------------
def _modality_pixels(root: Path, meta: dict, modality: str) -> list[np.ndarray]:
    blanks = set(meta["realism_events"]["blanks"])
    return [
        pixels(p)
        for p in sorted((root / "radiology_ai" / modality).rglob("*.png"))
        if p.relative_to(root).as_posix() not in blanks
    ]


def test_histogram_signatures_per_modality(release):
    root, meta = release
    ct = np.concatenate([im.ravel() for im in _modality_pixels(root, meta, "CT")])
    mr = np.concatenate([im.ravel() for im in _modality_pixels(root, meta, "MR")])
    assert (ct == 0).mean() > 0.15 and (ct == 255).mean() > 0.001
    assert (mr == 0).mean() < 0.01
    us_images = _modality_pixels(root, meta, "US")
    us = np.concatenate([im.ravel() for im in us_images])
    assert (us == 0).mean() > 0.2
    inside_widest, _, _ = fan_geometry(SIZE, np.radians(38.0))
    inside_narrowest, _, _ = fan_geometry(SIZE, np.radians(30.0))
    text_corner = np.zeros((SIZE, SIZE), bool)
    text_corner[: int(0.3 * SIZE), : int(0.45 * SIZE)] = True  # burned-in annotations
    for im in us_images:
        assert not im[~inside_widest & ~text_corner].any()  # black outside any fan
        assert (im[inside_narrowest] > 0).mean() > 0.9  # speckle inside it


# -- determinism and workers -----------------------------------------------------------------------
def _tree_digest(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): md5(p) for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes_for_any_worker_count(tmp_path):
    args = dict(classes=6, images_per_class=4, size=32, seed=11, realism=True, progress=False)
    generate_radimagenet(tmp_path / "one", workers=1, **args)
    generate_radimagenet(tmp_path / "two", workers=2, **args)
    generate_radimagenet(tmp_path / "other", workers=1, **{**args, "seed": 12})
    one, two = _tree_digest(tmp_path / "one"), _tree_digest(tmp_path / "two")
    assert one == two and len(one) > 20
    other = _tree_digest(tmp_path / "other")
    shared = set(one) & set(other)
    assert sum(one[k] != other[k] for k in shared if k.endswith(".png")) > 0.9 * len(
        [k for k in shared if k.endswith(".png")]
    )
    assert not list((tmp_path / "one").rglob("*.tmp-*"))  # atomic writes leave no temp files


def test_rerun_resumes_and_restores_a_missing_file(tmp_path):
    args = dict(classes=4, images_per_class=3, size=32, seed=2, progress=False)
    generate_radimagenet(tmp_path, **args)
    victim = next((tmp_path / "radiology_ai").rglob("*.png"))
    before = md5(victim)
    victim.unlink()
    generate_radimagenet(tmp_path, **args)
    assert md5(victim) == before


# -- command line -------------------------------------------------------------------------------
def test_cli_writes_a_release_and_refuses_foreign_or_conflicting_dirs(tmp_path, capsys):
    out = tmp_path / "synth"
    assert (
        cli(
            [
                "--out",
                str(out),
                "--classes",
                "5",
                "--images-per-class",
                "2",
                "--size",
                "32",
                "--quiet",
            ]
        )
        == 0
    )
    assert (out / "RadiologyAI_train.csv").is_file()
    assert cli(["--out", str(out), "--classes", "6", "--size", "32", "--quiet"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (
        cli(
            [
                "--out",
                str(out),
                "--classes",
                "6",
                "--images-per-class",
                "2",
                "--size",
                "32",
                "--quiet",
                "--overwrite",
            ]
        )
        == 0
    )
    assert len(json.loads((out / META_NAME).read_text())["classes"]) == 6
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    assert cli(["--out", str(foreign), "--classes", "3", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert str(foreign) in err and "not empty" in err
    assert (foreign / "notes.txt").read_text() == "keep me"
    assert cli(["--out", str(tmp_path / "x"), "--classes", "999", "--quiet"]) == 2
    assert "--classes" in capsys.readouterr().err


def test_api_rejects_bad_requests(tmp_path):
    with pytest.raises(GeneratorError, match="split"):
        generate_radimagenet(tmp_path / "a", classes=3, split=(0.5, 0.2, 0.2), progress=False)
    with pytest.raises(GeneratorError, match="cnr_range"):
        generate_radimagenet(
            tmp_path / "b", classes=3, render_options={"cnr_range": (3, 1)}, progress=False
        )
    with pytest.raises(ValueError, match="MOD/organ|must"):
        generate_radimagenet(tmp_path / "c", classes=["XR/chest/normal"], progress=False)
