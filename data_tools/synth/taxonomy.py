"""The class list: which (modality, organ, class) folders exist, and how many images each gets.

The real list of 165 RadImageNet classes is published nowhere, so the default
below is a stand-in sized to 165 keys with the real release's shape: 2 CT organs, 7 MR organs
and US organs without a class level. It keeps every real name that is known, spelling included
(``ca++_tendinosis``, ``achilles_pathology_``, ``pituatary_lesion``, ``Plantar_plate_tear``),
because the downstream converter must cope with exactly those. Names are never normalised.
A real list can be dropped in with :func:`load_taxonomy` (a JSON list of ``MOD/organ/class``
and ``US/organ`` strings, in priority order).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from .rng import unit_hash

MODALITIES = ("CT", "MR", "US")

# Priority order matters: --classes N takes organs and classes from the front of each list.
DEFAULT_TAXONOMY: dict[str, dict[str, list[str]]] = {
    "CT": {
        "abd": [
            "normal", "liver_lesion", "renal_lesion", "splenic_lesion", "pancreatic_lesion",
            "osseous_neoplasm", "ascites", "bowel_abnormality", "bladder_pathology",
            "prostate_lesion", "uterine_pathology", "ovarian_pathology", "adrenal_pathology",
            "bil_dil", "gallbladder_pathology", "dilated_urinary_tract", "liver_disease_",
            "fat_containing_tumor", "arterial_pathology", "pancreatitis", "bowel_inflammation",
            "soft_tissue_collection", "intraperitoneal_mass", "degenerative_changes",
            "lymphadenopathy", "renal_cyst", "abdominal_wall_pathology", "gallstones",
        ],
        "lung": [
            "normal", "Nodule", "interstitial_lung_disease", "Airspace_opacity",
            "Bronchiectasis", "pleural_effusion",
        ],
    },
    "MR": {
        "brain": [
            "normal", "white_matter_changes", "acute_infarct", "pituatary_lesion",
            "chronic_infarct", "edema", "extra_axial_mass", "intra_axial_mass",
            "focal_flair_hyper", "arteriovenous_anomaly", "dural_thickening", "encephalomalacia",
            "hemorrhage",
        ],
        "knee": [
            "normal", "meniscal_abnormality", "chondral_abnormality", "bone_inflammation",
            "soft_tissue_fluid", "acl_pathology", "mcl_pathology", "pcl_pathology",
            "lcl_pathology", "post_operative_acl", "patellar_pathology", "quad_pathology",
            "hematoma", "osseous_disruption", "intra_articular_pathology", "muscle_strain",
            "osseous_lesion", "soft_tissue_fluid_collection", "fat_pad_edema",
        ],
        "af": [
            "normal", "chondral_abnormality", "bone_inflammation", "soft_tissue_fluid",
            "osseous_disruption", "achilles_pathology_", "atfl_pathology", "Plantar_plate_tear",
            "hematoma", "lisfranc_pathology", "coalition", "plantar_fascia_pathology",
            "peroneal_pathology", "deltoid_pathology", "cfl_pathology",
            "posterior_tibialis_pathology", "spring_ligament_injury", "soft_tissue_edema",
            "osseous_neoplasm", "syndesmosis_pathology", "post_operative",
        ],
        "spine": [
            "normal", "disc_pathology", "foraminal_pathlogy", "cord_pathology_",
            "dural_epidural_abn", "scoliosis", "osseous_abn", "cystic_lesions",
            "facet_arthropathy", "spinal_stenosis", "bone_inflammation", "soft_tissue_fluid",
            "post_operative", "osseous_neoplasm", "compression_fracture",
        ],
        "shoulder": [
            "normal", "labral_pathology", "supraspinatus_pathology", "soft_tissue_fluid",
            "bone_inflammation", "acj_oa", "ghj_oa", "biceps_pathology", "ca++_tendinosis",
            "infraspinatus_pathology", "subscapularis_pathology", "osseous_lesion",
            "post_operative", "marrow_inflammation", "cystic_lesions", "osseous_disruption",
            "sub_acromial_bursitis",
        ],
        "hip": [
            "normal", "labral_pathology", "chondral_abnormality", "bone_inflammation",
            "soft_tissue_fluid", "osseous_lesion", "abductor_pathology", "hamstring_pathology",
            "post_operative", "osseous_disruption", "avascular_necrosis", "muscle_strain",
            "marrow_inflammation", "joint_effusion", "cystic_lesions",
        ],
        "abd": [
            "normal", "liver_lesion", "renal_lesion", "pancreatic_lesion", "adrenal_pathology",
            "bil_dil", "ascites", "liver_disease_", "splenic_lesion", "gallbladder_pathology",
            "bowel_abnormality", "dilated_urinary_tract", "osseous_lesion", "cystic_lesions",
            "soft_tissue_collection", "lymphadenopathy", "uterine_pathology",
        ],
    },
    "US": {organ: [] for organ in (
        "thyroid", "kidney", "liver", "gb", "spleen", "bladder", "ovary", "uterus", "aorta",
        "pancreas", "ivc", "portal_vein", "cbd", "testis",
    )},
}

# Long-tail weights. MR regions follow the RadImageNet-VQA metadata counts;
# the CT and US splits are not known and are assumptions of this generator.
ORGAN_WEIGHTS = {
    "MR": {"af": 162.5, "knee": 161.7, "abd": 82.6, "spine": 64.3, "shoulder": 47.2,
           "hip": 46.5, "brain": 40.0},
    "CT": {"abd": 0.65, "lung": 0.35},
}
DEFAULT_MODALITY_SHARES = {"CT": 0.2, "MR": 0.45, "US": 0.35}
# Shares used when picking a subset of N classes (not image counts).
_SUBSET_SHARES = {"CT": 0.3, "MR": 0.45, "US": 0.25}
# Body part in pathology file names; the real af folder holds foot… and ankle… files.
BODY_PARTS = {"af": ("foot", "ankle")}


class TaxonomyError(ValueError):
    """A malformed class list (names the file or the offending entry)."""


@dataclass(frozen=True, order=True)
class ClassKey:
    """One class folder: ``name`` is None for US, whose organ folder is the label."""

    modality: str
    organ: str
    name: str | None = None

    @property
    def key(self) -> str:
        """The converter's class key: ``CT__abd__normal`` or ``US__thyroid``."""
        return "__".join(p for p in (self.modality, self.organ, self.name) if p is not None)

    @property
    def label(self) -> str:
        """The opaque CSV label this generator writes: ``CT-abd-normal`` or ``US-thyroid``."""
        return "-".join(p for p in (self.modality, self.organ, self.name) if p is not None)

    @property
    def folder(self) -> str:
        """Folder relative to the output root, e.g. ``radiology_ai/CT/abd/normal``."""
        parts = ["radiology_ai", self.modality, self.organ] + ([self.name] if self.name else [])
        return "/".join(parts)

    @property
    def organ_key(self) -> str:
        return f"{self.modality}/{self.organ}"

    @property
    def is_normal(self) -> bool:
        return self.name == "normal"


def default_classes() -> list[ClassKey]:
    """The default 165 classes in priority order."""
    out: list[ClassKey] = []
    for modality, organs in DEFAULT_TAXONOMY.items():
        for organ, names in organs.items():
            if modality == "US":
                out.append(ClassKey(modality, organ))
            else:
                out.extend(ClassKey(modality, organ, name) for name in names)
    return out


def parse_class(entry: str, where: str = "taxonomy") -> ClassKey:
    """``"CT/abd/liver_lesion"`` or ``"US/thyroid"`` → ClassKey, with a clear error otherwise."""
    parts = entry.split("/") if isinstance(entry, str) else []
    if not parts or parts[0] not in MODALITIES:
        raise TaxonomyError(f"{where}: {entry!r} must start with one of {'/'.join(MODALITIES)}/")
    want = 2 if parts[0] == "US" else 3
    if len(parts) != want:
        shape = "US/<organ>" if want == 2 else f"{parts[0]}/<organ>/<class>"
        raise TaxonomyError(f"{where}: {entry!r} must look like {shape}")
    for part in parts[1:]:
        if part in ("", ".", "..") or part != part.strip() or "\\" in part or "\x00" in part:
            raise TaxonomyError(f"{where}: {entry!r} has an unusable path component {part!r}")
    return ClassKey(*parts)  # type: ignore[arg-type]


def load_taxonomy(path: str | Path) -> list[ClassKey]:
    """Read a JSON list of class entries (see module docstring)."""
    path = Path(path)
    try:
        entries = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise TaxonomyError(f"{path}: cannot read a JSON class list ({err})") from err
    if not isinstance(entries, list) or not entries:
        raise TaxonomyError(f"{path}: expected a non-empty JSON list of 'MOD/organ/class' strings")
    classes = [parse_class(e, str(path)) for e in entries]
    seen: set[ClassKey] = set()
    for c in classes:
        if c in seen:
            raise TaxonomyError(f"{path}: {c.modality}/{c.organ}/{c.name} is listed twice")
        seen.add(c)
    organs_with_classes = {(c.modality, c.organ) for c in classes if c.name is not None}
    for c in classes:
        if c.modality == "US" and ("US", c.organ) in organs_with_classes:
            raise TaxonomyError(f"{path}: US/{c.organ} mixes a class level with an organ label")
    return classes


def select_classes(classes: list[ClassKey], n: int | None) -> list[ClassKey]:
    """A deterministic subset of ``n`` classes, in the taxonomy's order.

    Modalities get shares of ``n`` (at least one each when ``n`` allows); inside a modality the
    first few organs are filled a few classes deep rather than one class from every organ, so
    a subset keeps the within-organ distinctions that make the task hard.
    """
    if n is None or n == len(classes):
        return list(classes)
    if n < 1 or n > len(classes):
        raise TaxonomyError(f"--classes must be between 1 and {len(classes)} (got {n})")
    by_mod: dict[str, dict[str, list[ClassKey]]] = {}
    for c in classes:
        by_mod.setdefault(c.modality, {}).setdefault(c.organ, []).append(c)
    sizes = {m: sum(len(v) for v in organs.values()) for m, organs in by_mod.items()}
    shares = {m: _SUBSET_SHARES[m] for m in by_mod}
    quotas = _apportion(n, shares, minimum=1 if n >= len(by_mod) else 0, caps=sizes)
    picked: set[ClassKey] = set()
    for modality, quota in quotas.items():
        organs = list(by_mod[modality].values())
        n_used = min(len(organs), max(1, math.ceil(quota / 4)))
        taken = [0] * len(organs)
        active = list(range(n_used))
        while quota > 0:
            if not active:  # the first organs ran out: open the next one
                active = [i for i in range(len(organs)) if taken[i] < len(organs[i])][:1]
            for i in list(active):
                if quota == 0:
                    break
                if taken[i] < len(organs[i]):
                    picked.add(organs[i][taken[i]])
                    taken[i] += 1
                    quota -= 1
                else:
                    active.remove(i)
    return [c for c in classes if c in picked]


def _apportion(total: int, weights: dict[str, float], minimum: int = 0,
               caps: dict[str, int] | None = None) -> dict[str, int]:
    """Integer shares of ``total`` proportional to ``weights`` (largest remainder), each at
    least ``minimum`` and at most ``caps[k]``; the sum is exactly ``total`` when caps allow."""
    keys = list(weights)
    caps = caps or {k: total for k in keys}
    out = {k: min(minimum, caps[k]) for k in keys}
    while sum(out.values()) < total:
        free = [k for k in keys if out[k] < caps[k]]
        if not free:
            break
        left = total - sum(out.values())
        wsum = sum(weights[k] for k in free) or 1.0
        raw = {k: left * weights[k] / wsum for k in free}
        floors = {k: min(int(raw[k]), caps[k] - out[k]) for k in free}
        if sum(floors.values()) == 0:  # hand out single units by largest remainder
            best = max(free, key=lambda k: (raw[k] - int(raw[k]), weights[k], -keys.index(k)))
            out[best] += 1
        else:
            for k in free:
                out[k] += floors[k]
    return out


def class_weights(classes: list[ClassKey],
                  modality_shares: dict[str, float] | None = None) -> dict[ClassKey, float]:
    """Long-tailed image shares summing to 1.

    Modality share × organ share × within-organ share, where ``normal`` takes 0.30–0.45 of
    its organ and the pathologies follow Zipf k^-1.1 in a fixed pseudo-random order. Every
    choice is hashed from names, so a class keeps its weight whatever the seed.
    """
    shares = dict(DEFAULT_MODALITY_SHARES if modality_shares is None else modality_shares)
    organs: dict[str, dict[str, list[ClassKey]]] = {}
    for c in classes:
        organs.setdefault(c.modality, {}).setdefault(c.organ, []).append(c)
    mod_total = sum(shares.get(m, 0.0) for m in organs) or 1.0
    weights: dict[ClassKey, float] = {}
    for modality, by_organ in organs.items():
        known = ORGAN_WEIGHTS.get(modality, {})
        fallback = sum(known.values()) / len(known) if known else 1.0
        if modality == "US":  # organ is the class: Zipf over organs in hashed order
            order = sorted(by_organ, key=lambda o: unit_hash("us-order", o))
            organ_w = {o: (order.index(o) + 1) ** -0.7 for o in by_organ}
        else:
            organ_w = {o: known.get(o, fallback) for o in by_organ}
        organ_sum = sum(organ_w.values())
        for organ, members in by_organ.items():
            organ_share = shares.get(modality, 0.0) / mod_total * organ_w[organ] / organ_sum
            for c, w in _within_organ(members).items():
                weights[c] = organ_share * w
    return weights


def _within_organ(members: list[ClassKey]) -> dict[ClassKey, float]:
    normals = [c for c in members if c.is_normal]
    others = sorted((c for c in members if not c.is_normal),
                    key=lambda c: unit_hash("zipf-order", c.key))
    if not others:
        return {c: 1.0 / len(normals) for c in normals}
    normal_share = 0.30 + 0.15 * unit_hash("normal-share", members[0].organ_key) if normals else 0.0
    zipf = [(k + 1) ** -1.1 for k in range(len(others))]
    out = {c: (1.0 - normal_share) * z / sum(zipf) for c, z in zip(others, zipf)}
    out.update({c: normal_share / len(normals) for c in normals})
    return out


def class_counts(classes: list[ClassKey], *, total: int | None = None,
                 per_class: int | None = None, balanced: bool = False,
                 modality_shares: dict[str, float] | None = None,
                 min_per_class: int = 1) -> dict[ClassKey, int]:
    """Images per class. ``per_class`` sets the mean (exact when balanced); ``total`` the sum."""
    if (total is None) == (per_class is None):
        raise ValueError("give exactly one of total= or per_class=")
    total = per_class * len(classes) if per_class is not None else total
    assert total is not None
    if total < len(classes) * min_per_class:
        raise ValueError(f"{total} images cannot give {len(classes)} classes "
                         f"at least {min_per_class} each")
    if balanced:
        weights = {c: 1.0 for c in classes}
    else:
        weights = class_weights(classes, modality_shares)
    named = {c.key: c for c in classes}
    counts = _apportion(total, {c.key: weights[c] for c in classes}, minimum=min_per_class)
    return {named[k]: v for k, v in counts.items()}


def stem_prefix(c: ClassKey, index: int) -> str:
    """File-name prefix before the 6-digit number: ``abd-normal``, ``foot``,
    ``usn``. ``index`` picks among an organ's body parts (the patient, so it stays fixed)."""
    if c.modality == "US":
        return "usn"
    if c.is_normal:
        return f"{c.organ}-normal"
    parts = BODY_PARTS.get(c.organ, (c.organ,))
    return parts[index % len(parts)]
