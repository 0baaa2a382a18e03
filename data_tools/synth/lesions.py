"""Class signal: one deterministic lesion recipe per pathology class.

A recipe names a geometry (``kind``), a host region of the organ template and a few class
constants (sign, size, preferred place inside the host, gain, orientation). The class name
picks the kind and host where it says something (``meniscal_abnormality`` → a tear in the
meniscus); everything else is drawn from SHA-256 of the class key, so a class looks the same
in any run, any seed and any subset. Inside one organ no two classes share (kind, host, sign)
while free combinations remain, so classes differ in *what* and *where*, not in global
intensity, size or noise.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from .anatomy import HOST_HINTS, HOSTS, template_name
from .rng import stream
from .taxonomy import ClassKey

# Which host categories each geometry fits.
KIND_HOSTS: dict[str, tuple[str, ...]] = {
    "focal": ("parenchyma", "marrow", "soft", "gm", "wm", "fluid"),
    "nodule": ("lung",),
    "multifocal": ("parenchyma", "wm", "lung", "marrow", "soft"),
    "reticular": ("lung",),
    "ggo": ("lung",),
    "fluid_rim": ("parenchyma", "lung", "soft"),
    "wedge": ("gm", "parenchyma"),
    "tear": ("fibro", "cartilage", "marrow"),
    "fluid_blob": ("soft", "parenchyma", "fibro", "marrow", "fluid"),
    "edema": ("marrow", "soft", "parenchyma", "wm", "fibro"),
    "tubes": ("lung", "parenchyma"),
    "diffuse": ("parenchyma", "wm", "gm"),
    "thicken": ("fibro", "cartilage", "fluid", "tube"),
}

# Name fragments → geometry, first match wins (lower-cased name).
_KIND_WORDS: list[tuple[tuple[str, ...], str]] = [
    (("nodule",), "nodule"),
    (("interstitial",), "reticular"),
    (("opacity",), "ggo"),
    (("bronchiect", "bil_dil"), "tubes"),
    (("effusion", "ascites"), "fluid_rim"),
    (("white_matter", "lymphaden", "flair", "metast"), "multifocal"),
    (("infarct", "encephalomalacia"), "wedge"),
    (("tear", "meniscal", "labral", "disruption", "fracture", "chondral"), "tear"),
    (("collection", "hematoma", "cyst", "bursitis", "fluid", "dilated"), "fluid_blob"),
    (("inflammation", "edema", "strain", "pancreatitis", "necrosis", "injury"), "edema"),
    (("tendinosis", "thickening", "_oa", "arthropathy", "degenerative", "stenosis",
      "coalition", "post_operative", "bowel", "bladder"), "thicken"),
    (("liver_disease", "steatosis"), "diffuse"),
    (("lesion", "neoplasm", "mass", "tumor", "gallstone", "abn", "anomaly", "hemorrhage",
      "pathology", "pathlogy"), "focal"),
]

# Name fragments → host, per organ template; generic bone words map to that organ's marrow.
_HOST_WORDS: dict[str, list[tuple[tuple[str, ...], str]]] = {
    "abd": [(("adrenal",), "adrenal"), (("liver", "hepat", "bil_"), "liver"),
            (("renal", "kidney", "urinary"), "kidney"),
            (("splen",), "spleen"), (("pancrea",), "pancreas"),
            (("gallbladder", "gallstone"), "gb"), (("arterial",), "aorta"),
            (("bowel", "intraperitoneal"), "bowel"), (("bladder",), "bladder"),
            (("prostat",), "prostate"), (("uter",), "uterus"), (("ovar",), "ovary"),
            (("wall",), "wall"), (("lymph", "collection", "ascites"), "mesentery"),
            (("osseous", "bone", "degenerative"), "marrow")],
    "lung": [(("",), "lung")],
    "brain": [(("white_matter", "intra_axial", "flair", "hemorrhage", "edema"), "wm"),
              (("infarct", "encephalomalacia", "arteriovenous"), "gm"),
              (("pituat",), "pituitary"), (("extra_axial", "dural"), "csf")],
    "knee": [(("meniscal",), "meniscus"), (("acl",), "acl"), (("pcl",), "pcl"),
             (("mcl", "lcl"), "collateral"), (("chondral", "cartilage"), "cartilage"),
             (("patellar",), "patellar_tendon"), (("quad",), "quad_tendon"),
             (("fat_pad",), "fat_pad"), (("intra_articular",), "joint"),
             (("muscle", "hematoma"), "muscle"), (("osseous", "bone"), "tibia")],
    "af": [(("achilles",), "achilles"), (("plantar_plate",), "plantar_plate"),
           (("plantar_fascia",), "plantar_fascia"), (("peroneal", "tibialis"), "tendon"),
           (("atfl", "cfl", "deltoid", "spring", "syndesmosis", "lisfranc"), "ligament"),
           (("chondral",), "cartilage"), (("coalition",), "calcaneus"),
           (("osseous", "bone"), "talus")],
    "hip": [(("labral",), "labrum"), (("abductor",), "abductor_tendon"),
            (("hamstring",), "hamstring"), (("chondral",), "cartilage"),
            (("joint",), "joint"), (("muscle",), "abductor"),
            (("avascular", "osseous", "bone", "marrow"), "femur")],
    "shoulder": [(("supraspinatus", "ca++"), "supraspinatus"),
                 (("infraspinatus",), "infraspinatus"), (("subscapularis",), "subscapularis"),
                 (("biceps",), "biceps"), (("labral",), "labrum"), (("acj",), "acj"),
                 (("ghj",), "cartilage"), (("bursitis",), "bursa"),
                 (("osseous", "bone", "marrow"), "humerus")],
    "spine": [(("disc",), "disc"), (("foraminal",), "facet"), (("cord",), "cord"),
              (("dural", "epidural"), "epidural"), (("facet",), "facet"),
              (("stenosis",), "canal"), (("osseous", "bone", "fracture"), "vertebra")],
}


# What fills a collection: blood for haematomas, fat for fat-containing tumours.
_FILL_WORDS: list[tuple[tuple[str, ...], str]] = [
    (("hematoma", "hemorrhage"), "BLOOD"), (("fat_containing",), "FAT"),
    (("gallstone", "ca++"), "BONE"),
]


@dataclass(frozen=True)
class Recipe:
    """The fixed lesion description of one class."""

    kind: str
    host: str
    sign: float          # +1 brighter / hyperechoic on T2 and CT, -1 darker
    size: float          # multiplies the kind's radius range
    anchor: tuple[float, float]  # preferred place inside the host's bounding box, in [0, 1]
    gain: float          # multiplies the contrast
    angle: float         # orientation of tears, tubes and wedges
    fill: str = "FLUID"  # tissue that fills collections and tears
    hints: tuple[tuple[str, str], ...] = ()  # template switches (abdominal level, sex)

    def to_json(self) -> dict:
        out = asdict(self)
        out["hints"] = dict(self.hints)
        return out


def _match(name: str, table: list[tuple[tuple[str, ...], str]]) -> str | None:
    low = name.lower()
    for words, value in table:
        if any(w in low for w in words):
            return value
    return None


_ANCHOR_GRID = [(u, v) for v in (0.25, 0.5, 0.75) for u in (0.25, 0.5, 0.75)]


def _recipe_for(c: ClassKey, taken: dict[tuple[str, str, float], list]) -> Recipe:
    """Kind and host from the name where it names them, the rest from SHA-256 of the key.

    ``taken`` maps (kind, host, sign) to the anchors already used in this organ: a class that
    would repeat a combination flips its sign, and if that is taken too it keeps the
    combination but sits as far as possible from the other classes' anchors.
    """
    organ = template_name(c.organ)
    hosts = HOSTS[organ]
    name = c.name or ""
    rng = stream(0, "recipe", c.key)
    kind = _match(name, _KIND_WORDS)
    host = _match(name, _HOST_WORDS.get(organ, []))
    if host in hosts:
        fitting = [k for k, cats in KIND_HOSTS.items() if hosts[host] in cats]
        if kind not in fitting:
            kind = fitting[int(rng.integers(len(fitting)))]
    else:
        if kind is None:
            kinds = [k for k, cats in KIND_HOSTS.items() if set(cats) & set(hosts.values())]
            kind = kinds[int(rng.integers(len(kinds)))]
        fits = [h for h, cat in hosts.items() if cat in KIND_HOSTS[kind]]
        if not fits:  # the name's geometry has no host here: fall back to a focal lesion
            kind = "focal"
            fits = [h for h, cat in hosts.items() if cat in KIND_HOSTS[kind]]
        free = [h for h in fits if (kind, h, 1.0) not in taken or (kind, h, -1.0) not in taken]
        pool = free or fits
        host = pool[int(rng.integers(len(pool)))]
    sign = -1.0 if rng.random() < 0.6 else 1.0
    if (kind, host, sign) in taken and (kind, host, -sign) not in taken:
        sign = -sign
    anchor = (float(rng.uniform(0.25, 0.75)), float(rng.uniform(0.25, 0.75)))
    used = taken.get((kind, host, sign), [])
    if used:
        anchor = max(_ANCHOR_GRID, key=lambda a: min(math.dist(a, b) for b in used))
    return Recipe(
        kind=kind, host=host, sign=sign, size=float(rng.uniform(0.8, 1.25)), anchor=anchor,
        gain=float(rng.uniform(0.85, 1.2)), angle=float(rng.uniform(0, math.pi)),
        fill=_match(name, _FILL_WORDS) or "FLUID",
        hints=tuple(sorted(HOST_HINTS.get(host, {}).items())) if organ == "abd" else (),
    )


def assign_recipes(classes: list[ClassKey]) -> dict[ClassKey, Recipe | None]:
    """Recipes for every CT/MR pathology class; None for ``normal`` and US organ labels.

    Classes are processed in name order inside each organ, so the assignment depends only on
    the names of that organ's classes, never on the seed. Pass the *full* taxonomy and pick
    subsets afterwards, so that ``--classes N`` renders each class exactly as the full set does.
    """
    out: dict[ClassKey, Recipe | None] = {}
    by_organ: dict[tuple[str, str], list[ClassKey]] = {}
    for c in classes:
        if c.modality == "US" or c.is_normal:
            out[c] = None
        else:
            by_organ.setdefault((c.modality, c.organ), []).append(c)
    for members in by_organ.values():
        organ_words = _HOST_WORDS.get(template_name(members[0].organ), [])
        # Classes whose name names their host go first, so they get the combination they ask for.
        order = sorted(members, key=lambda m: (_match(m.name or "", organ_words) is None,
                                               m.name or ""))
        taken: dict[tuple[str, str, float], list] = {}
        for c in order:
            recipe = _recipe_for(c, taken)
            taken.setdefault((recipe.kind, recipe.host, recipe.sign), []).append(recipe.anchor)
            out[c] = recipe
    return out
