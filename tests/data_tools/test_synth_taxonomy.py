"""Class list, subsets, long-tailed counts and lesion recipes of the synthetic generator."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

from data_tools.synth.lesions import assign_recipes  # noqa: E402
from data_tools.synth.taxonomy import (  # noqa: E402
    ClassKey,
    TaxonomyError,
    class_counts,
    default_classes,
    load_taxonomy,
    select_classes,
)


def test_default_taxonomy_has_the_release_shape_and_real_odd_names():
    classes = default_classes()
    assert len(classes) == 165 and len({c.key for c in classes}) == 165
    organs = {m: {c.organ for c in classes if c.modality == m} for m in ("CT", "MR", "US")}
    assert organs["CT"] == {"abd", "lung"}
    assert organs["MR"] == {"af", "brain", "hip", "knee", "shoulder", "spine", "abd"}
    assert all(c.name is None for c in classes if c.modality == "US")
    names = {c.name for c in classes}
    for odd in (
        "ca++_tendinosis",
        "achilles_pathology_",
        "cord_pathology_",
        "liver_disease_",
        "Nodule",
        "Airspace_opacity",
        "Plantar_plate_tear",
        "pituatary_lesion",
        "foraminal_pathlogy",
    ):
        assert odd in names
    knee = ClassKey("MR", "knee", "meniscal_abnormality")
    assert (knee.key, knee.label, knee.folder) == (
        "MR__knee__meniscal_abnormality",
        "MR-knee-meniscal_abnormality",
        "radiology_ai/MR/knee/meniscal_abnormality",
    )
    assert ClassKey("US", "gb").folder == "radiology_ai/US/gb"


@pytest.mark.parametrize("n", [3, 4, 8, 22, 40, 100])
def test_subsets_are_deterministic_and_span_all_modalities(n):
    full = default_classes()
    picked = select_classes(full, n)
    assert len(picked) == n and picked == select_classes(full, n)
    assert {c.modality for c in picked} == {"CT", "MR", "US"}
    assert [c for c in full if c in picked] == picked  # taxonomy order kept


def test_bad_subset_sizes_and_taxonomy_files_fail_clearly(tmp_path):
    with pytest.raises(TaxonomyError, match="--classes"):
        select_classes(default_classes(), 0)
    bad = tmp_path / "tax.json"
    bad.write_text('["CT/abd"]')
    with pytest.raises(TaxonomyError, match=str(bad)):
        load_taxonomy(bad)
    good = tmp_path / "good.json"
    good.write_text('["CT/abd/normal", "MR/knee/ca++_weird_", "US/thyroid"]')
    assert [c.key for c in load_taxonomy(good)] == [
        "CT__abd__normal",
        "MR__knee__ca++_weird_",
        "US__thyroid",
    ]


def test_long_tail_has_dominant_normals_and_balanced_is_flat():
    classes = default_classes()
    tail = class_counts(classes, total=50_000)
    assert sum(tail.values()) == 50_000 and min(tail.values()) >= 1
    assert max(tail.values()) / min(tail.values()) > 30  # several orders of magnitude in reality
    for organ in {c.organ_key for c in classes if c.modality != "US"}:
        members = {c: n for c, n in tail.items() if c.organ_key == organ}
        normal = next(n for c, n in members.items() if c.is_normal)
        assert normal == max(members.values()) and normal > 0.25 * sum(members.values())
    mr = Counter()
    for c, n in tail.items():
        if c.modality == "MR":
            mr[c.organ] += n
    assert mr["af"] > mr["abd"] > mr["spine"] > mr["shoulder"] > mr["brain"]
    flat = class_counts(classes, per_class=7, balanced=True)
    assert set(flat.values()) == {7}


def test_recipes_are_fixed_by_name_and_differ_within_an_organ():
    classes = default_classes()
    recipes = assign_recipes(classes)
    assert recipes == assign_recipes(list(reversed(classes)))
    assert recipes[ClassKey("MR", "knee", "meniscal_abnormality")].kind == "tear"
    assert recipes[ClassKey("MR", "knee", "meniscal_abnormality")].host == "meniscus"
    assert recipes[ClassKey("CT", "lung", "Nodule")].kind == "nodule"
    assert recipes[ClassKey("CT", "abd", "normal")] is None
    assert recipes[ClassKey("US", "thyroid")] is None
    by_organ: dict[str, list] = {}
    for c, r in recipes.items():
        if r is not None:
            by_organ.setdefault(c.organ_key, []).append((r.kind, r.host, r.sign, r.anchor))
    for organ, sigs in by_organ.items():
        assert len(set(sigs)) == len(sigs), organ  # no two classes drawn identically
