"""CT and MR organ templates: unions of jittered ellipses with tissue labels.

Each template paints one canvas. Random choices come from the canvas's patient stream, so all
slices of one synthetic patient share their anatomy. Named regions are the hosts where a
class's lesion can sit; ``HOSTS`` lists them per organ with a category that decides which
lesion recipes fit there. Coordinates: x to the image's right, y down, both in [-1, 1].
"""

from __future__ import annotations

import math
from collections.abc import Callable

from .canvas import Canvas
from .rng import unit_hash
from .tissues import T

Template = Callable[[Canvas, dict], None]


def abd(c: Canvas, hints: dict) -> None:
    """Axial abdomen at the upper (liver/kidney) or the pelvic level."""
    level = hints.get("level") or ("upper" if c.rng.random() < 0.6 else "pelvis")
    sex = hints.get("sex") or ("m" if c.rng.random() < 0.5 else "f")
    w = c.vary(0.06)
    c.paint(T.FAT, 0, 0.05, 0.86 * w, 0.6 * w, p=2.2, name="body")
    c.paint(T.MUSCLE, 0, 0.05, 0.79 * w, 0.54 * w, p=2.2, name="wall")
    c.paint(T.FAT, 0, 0.06, 0.74 * w, 0.49 * w, p=2.2, name="mesentery")
    if level == "upper":
        dx, dy = c.offset()
        c.paint(T.LIVER, -0.33 + dx, -0.1 + dy, 0.36 * c.vary(), 0.31 * c.vary(), 0.3, 2.3,
                name="liver")
        if c.rng.random() < 0.7:
            c.paint(T.FLUID, -0.2 + dx, 0.12 + dy, 0.07, 0.045, 0.4, name="gb")
        dx, dy = c.offset()
        c.paint(T.SPLEEN, 0.5 + dx, -0.02 + dy, 0.12 * c.vary(), 0.2 * c.vary(), -0.4,
                name="spleen")
        for i in range(int(c.rng.integers(2, 5))):
            bx, by = 0.05 + 0.45 * c.rng.random(), -0.35 + 0.2 * c.rng.random()
            c.paint(T.BOWEL, bx, by, 0.09 * c.vary(0.3), 0.06 * c.vary(0.3),
                    c.rng.uniform(0, math.pi), name="bowel")
            if c.rng.random() < 0.5:
                c.paint(T.AIR, bx, by - 0.02, 0.04, 0.02)
        dx, dy = c.offset(0.03)
        c.paint(T.PANCREAS, 0.12 + dx, 0.06 + dy, 0.22 * c.vary(), 0.05, -0.2, name="pancreas")
        for sx, side in ((-1, "r"), (1, "l")):
            dx, dy = c.offset(0.04)
            kx, ky = sx * 0.3 + dx, 0.25 + dy
            c.paint(T.KIDNEY, kx, ky, 0.09 * c.vary(), 0.14 * c.vary(), sx * 0.3, name="kidney")
            c.paint(T.SINUS, kx - sx * 0.025, ky, 0.035, 0.065, sx * 0.3, name="sinus")
            c.paint(T.ADRENAL, sx * 0.2 + dx, 0.08 + dy, 0.045, 0.018, sx * 0.9,
                    name="adrenal")
        c.paint(T.VESSEL, 0.04, 0.2, 0.045, 0.045, name="aorta")
        c.paint(T.VESSEL, -0.1, 0.16, 0.05, 0.035)
        _vertebra(c, 0.0, 0.38, spinous=True)
    else:
        dx, dy = c.offset()
        c.paint(T.FLUID, dx, -0.05 + dy, 0.2 * c.vary(0.15), 0.16 * c.vary(0.15), 0, 2.6,
                name="bladder")
        if sex == "m":
            c.paint(T.GLAND, dx, 0.17 + dy, 0.09, 0.07, name="prostate")
        else:
            c.paint(T.UTERUS, dx, 0.13 + dy, 0.14 * c.vary(), 0.09, 0.1, name="uterus")
            for sx in (-1, 1):
                c.paint(T.OVARY, sx * 0.27 + dx, 0.08 + dy, 0.06, 0.045, name="ovary")
        c.paint(T.BOWEL, 0, 0.33, 0.08, 0.07, name="bowel")
        c.paint(T.AIR, 0, 0.32, 0.03, 0.025)
        for sx in (-1, 1):
            c.paint(T.BOWEL, sx * 0.3, -0.28, 0.12, 0.08, sx * 0.3, name="bowel")
            c.ring(T.BONE, T.MARROW, sx * 0.56, 0.12, 0.15 * c.vary(), 0.15, 0.035,
                   name="marrow")
            c.paint(T.MUSCLE, sx * 0.52, 0.4, 0.22, 0.1, sx * 0.2, name="muscle")
        c.ring(T.BONE, T.MARROW, 0, 0.48, 0.16, 0.08, 0.03, name="marrow")
    for sx in (-1, 1):
        c.paint(T.MUSCLE, sx * 0.14, 0.55, 0.1, 0.07, name="muscle")


def _vertebra(c: Canvas, x: float, y: float, spinous: bool) -> None:
    c.ring(T.BONE, T.MARROW, x, y, 0.12 * c.vary(), 0.11, 0.025, name="marrow")
    if spinous:
        c.paint(T.BONE, x, y + 0.17, 0.03, 0.07)
    for sx in (-1, 1):
        c.paint(T.MUSCLE, x + sx * 0.17, y, 0.075, 0.1, name="muscle")


def lung(c: Canvas, hints: dict) -> None:
    """Axial chest: two lungs, heart, ribs, vessels and airways as distractors in every class."""
    w = c.vary(0.05)
    c.paint(T.FAT, 0, 0.05, 0.9 * w, 0.64 * w, p=2.2)
    c.paint(T.MUSCLE, 0, 0.05, 0.84 * w, 0.58 * w, p=2.2, name="chest_wall")
    lungs = []
    for sx in (-1, 1):
        dx, dy = c.offset(0.03)
        geom = (sx * 0.38 + dx, 0.02 + dy, 0.3 * c.vary(), 0.44 * c.vary(), sx * 0.08)
        lungs.append(geom)
        c.paint(T.LUNG, *geom, p=2.3, name="lung")
    c.paint(T.HEART, 0.1, 0.05, 0.22 * c.vary(), 0.2 * c.vary(), -0.3, name="heart")
    c.paint(T.SOFT, 0.1, 0.32, 0.05, 0.05)  # descending aorta, unenhanced
    _vertebra(c, 0.0, 0.45, spinous=True)
    for i in range(10):  # ribs along the chest wall
        t = math.pi * (0.15 + 0.7 * i / 9)
        c.paint(T.BONE, 0.8 * math.cos(t) * (1 if i % 2 else -1), -0.05 + 0.5 * math.sin(t) - 0.2,
                0.035, 0.022, t)
    c.paint(T.AIR, 0, -0.25, 0.045, 0.045, name="airway")
    for gx, gy, ga, gb, gang in lungs:  # vessels (elongated) and small airways
        for _ in range(int(c.rng.integers(4, 11))):
            r, t = 0.8 * math.sqrt(c.rng.random()), c.rng.uniform(0, 2 * math.pi)
            x = gx + ga * r * math.cos(t)
            y = gy + gb * r * math.sin(t)
            size = c.rng.uniform(0.008, 0.022)
            c.paint(T.SOFT, x, y, size, size * c.rng.uniform(1.0, 3.0), c.rng.uniform(0, math.pi))
        for _ in range(int(c.rng.integers(1, 4))):
            r, t = 0.6 * math.sqrt(c.rng.random()), c.rng.uniform(0, 2 * math.pi)
            x, y = gx + ga * r * math.cos(t), gy + gb * r * math.sin(t)
            c.ring(T.SOFT, T.AIR, x, y, 0.022, 0.022, 0.008, name="airway")


def brain(c: Canvas, hints: dict) -> None:
    """Axial brain: scalp, skull, CSF, cortex with sulci, white matter, ventricles, sella."""
    w = c.vary(0.05)
    c.paint(T.FAT, 0, 0, 0.78 * w, 0.92 * w, name="scalp")
    c.paint(T.BONE, 0, 0, 0.73 * w, 0.87 * w, name="skull")
    c.paint(T.CSF, 0, 0, 0.68 * w, 0.82 * w, name="csf")
    c.paint(T.GM, 0, 0, 0.65 * w, 0.79 * w, name="gm")
    dx, dy = c.offset(0.02)
    c.paint(T.WM, dx, 0.02 + dy, 0.5 * w, 0.63 * w, p=2.2, name="wm")
    for _ in range(int(c.rng.integers(12, 22))):  # sulcal holes at the cortex
        t = c.rng.uniform(0, 2 * math.pi)
        r = c.rng.uniform(0.82, 0.97)
        c.paint(T.CSF, 0.65 * w * r * math.cos(t), 0.79 * w * r * math.sin(t),
                0.012, c.rng.uniform(0.03, 0.07), t)
    for sx in (-1, 1):
        c.paint(T.GM, sx * 0.2 + dx, 0.08 + dy, 0.07, 0.1, sx * 0.3, name="gm")
        c.paint(T.CSF, sx * 0.08 + dx, -0.06 + dy, 0.045 * c.vary(0.2), 0.22 * c.vary(), sx * 0.15,
                name="ventricle")
    c.paint(T.CSF, 0, -0.45, 0.008, 0.28)  # interhemispheric fissure
    c.paint(T.CSF, 0, 0.58, 0.085, 0.06)
    c.paint(T.GLAND, 0, 0.58, 0.055, 0.035, name="pituitary")


def knee(c: Canvas, hints: dict) -> None:
    """Sagittal knee: femur, tibia, patella with cartilage, menisci, cruciates, tendons."""
    c.paint(T.FAT, 0, 0, 0.9, 1.1, p=2.5, name="fat")
    c.paint(T.MUSCLE, -0.45, -0.75, 0.28, 0.4, name="muscle")
    c.paint(T.MUSCLE, 0.45, -0.65, 0.3, 0.45, name="muscle")
    c.paint(T.MUSCLE, 0.45, 0.7, 0.3, 0.4, name="muscle")
    c.paint(T.FLUID, -0.33, -0.45, 0.035, 0.12, 0.2, name="joint")
    dx, dy = c.offset(0.03)
    c.paint(T.CARTILAGE, dx, -0.15 + dy, 0.4, 0.31, name="cartilage")
    c.ring(T.BONE, T.MARROW, dx, -0.65 + dy, 0.21 * c.vary(), 0.5, 0.04, name="femur")
    c.ring(T.BONE, T.MARROW, dx, -0.15 + dy, 0.36 * c.vary(0.05), 0.27, 0.03, name="femur")
    c.paint(T.FAT, -0.32, 0.12, 0.12, 0.09, name="fat_pad")
    c.paint(T.CARTILAGE, 0, 0.37, 0.38, 0.1, name="cartilage")
    c.ring(T.BONE, T.MARROW, 0, 0.52, 0.36 * c.vary(0.05), 0.15, 0.03, name="tibia")
    c.ring(T.BONE, T.MARROW, 0.03, 0.85, 0.22, 0.3, 0.04, name="tibia")
    for sx in (-1, 1):
        c.paint(T.FIBRO, sx * 0.26, 0.22, 0.1 * c.vary(), 0.05, p=1.3, name="meniscus")
    c.paint(T.CARTILAGE, -0.47, -0.25, 0.1, 0.17, name="cartilage")
    c.ring(T.BONE, T.MARROW, -0.5, -0.25, 0.075, 0.15, 0.02, name="patella")
    c.paint(T.FIBRO, -0.42, 0.2, 0.028, 0.22, -0.25, name="patellar_tendon")
    c.paint(T.FIBRO, -0.48, -0.6, 0.028, 0.2, 0.1, name="quad_tendon")
    c.paint(T.FIBRO, 0.04, 0.1, 0.028, 0.15, 0.6, name="acl")
    c.paint(T.FIBRO, 0.16, 0.12, 0.028, 0.15, -0.6, name="pcl")
    c.paint(T.FIBRO, 0.42, 0.05, 0.022, 0.25, 0.05, name="collateral")


def af(c: Canvas, hints: dict) -> None:
    """Sagittal ankle/foot: tibia, talus, calcaneus, midfoot, Achilles and plantar structures."""
    c.paint(T.FAT, 0.05, -0.6, 0.36, 0.55, name="fat")
    c.paint(T.FAT, -0.05, 0.22, 0.95, 0.45, p=2.5, name="fat")
    c.paint(T.MUSCLE, 0.18, -0.65, 0.2, 0.35, name="muscle")
    dx, dy = c.offset(0.03)
    c.ring(T.BONE, T.MARROW, dx, -0.55 + dy, 0.15 * c.vary(), 0.42, 0.035, name="tibia")
    c.paint(T.CARTILAGE, dx, -0.1 + dy, 0.2, 0.05, name="cartilage")
    c.ring(T.BONE, T.MARROW, dx, 0.03 + dy, 0.2 * c.vary(), 0.13, 0.03, name="talus")
    c.ring(T.BONE, T.MARROW, 0.35, 0.27, 0.3 * c.vary(), 0.15, 0.03, 0.15, name="calcaneus")
    c.ring(T.BONE, T.MARROW, -0.3, 0.12, 0.1, 0.08, 0.025, name="midfoot")
    c.ring(T.BONE, T.MARROW, -0.63, 0.24, 0.28, 0.055, 0.02, 0.15, name="metatarsal")
    c.paint(T.FIBRO, 0.45, -0.35, 0.032, 0.45, -0.08, name="achilles")
    c.paint(T.FIBRO, -0.1, 0.48, 0.55, 0.024, 0.12, name="plantar_fascia")
    c.paint(T.FIBRO, 0.27, -0.15, 0.022, 0.25, 0.1, name="tendon")
    c.paint(T.FIBRO, -0.2, -0.25, 0.022, 0.28, -0.1, name="tendon")
    c.paint(T.FIBRO, 0.12, 0.14, 0.12, 0.018, 0.3, name="ligament")
    c.paint(T.FIBRO, -0.45, 0.05, 0.1, 0.018, -0.2, name="ligament")
    c.paint(T.FIBRO, -0.86, 0.34, 0.07, 0.022, 0.1, name="plantar_plate")


def hip(c: Canvas, hints: dict) -> None:
    """Coronal hip: acetabulum, femoral head/neck/shaft, labrum, abductors, hamstrings."""
    c.paint(T.FAT, 0, 0, 0.95, 1.0, p=2.5, name="fat")
    c.paint(T.MUSCLE, 0.62, -0.25, 0.3, 0.5, name="abductor")
    c.paint(T.MUSCLE, 0.0, 0.62, 0.32, 0.35, name="muscle")
    c.ring(T.BONE, T.MARROW, -0.15, -0.5, 0.5, 0.32, 0.04, 0.2, name="pelvis")
    dx, dy = c.offset(0.03)
    c.paint(T.CARTILAGE, 0.05 + dx, -0.05 + dy, 0.25, 0.25, name="cartilage")
    c.paint(T.FLUID, 0.2 + dx, 0.15 + dy, 0.05, 0.03, 0.6, name="joint")
    c.ring(T.BONE, T.MARROW, 0.05 + dx, -0.05 + dy, 0.21 * c.vary(), 0.21, 0.03, name="femur")
    c.ring(T.BONE, T.MARROW, 0.26 + dx, 0.2 + dy, 0.11, 0.26, 0.03, -0.75, name="femur")
    c.ring(T.BONE, T.MARROW, 0.5 + dx, 0.12 + dy, 0.14, 0.12, 0.03, name="femur")
    c.ring(T.BONE, T.MARROW, 0.42 + dx, 0.65 + dy, 0.15, 0.42, 0.04, -0.1, name="femur")
    c.paint(T.FIBRO, 0.27 + dx, -0.24 + dy, 0.055, 0.025, 0.8, p=1.4, name="labrum")
    c.paint(T.FIBRO, 0.66, 0.02, 0.022, 0.13, 0.2, name="abductor_tendon")
    c.paint(T.FIBRO, -0.05, 0.42, 0.028, 0.16, 0.3, name="hamstring")


def shoulder(c: Canvas, hints: dict) -> None:
    """Coronal oblique shoulder: humeral head, glenoid, acromion, rotator cuff, labrum."""
    c.paint(T.FAT, 0, 0, 0.95, 1.0, p=2.5, name="fat")
    c.paint(T.MUSCLE, 0.55, -0.05, 0.22, 0.6, name="muscle")
    c.paint(T.MUSCLE, -0.3, -0.38, 0.38, 0.1, 0.1, name="muscle")
    c.paint(T.MUSCLE, -0.55, 0.32, 0.28, 0.16, name="muscle")
    dx, dy = c.offset(0.03)
    c.paint(T.CARTILAGE, 0.1 + dx, 0.05 + dy, 0.31, 0.31, name="cartilage")
    c.ring(T.BONE, T.MARROW, 0.12 + dx, 0.07 + dy, 0.28 * c.vary(), 0.28, 0.03, name="humerus")
    c.ring(T.BONE, T.MARROW, 0.3 + dx, 0.72 + dy, 0.15, 0.4, 0.04, name="humerus")
    c.ring(T.BONE, T.MARROW, -0.36, 0.05, 0.1, 0.2, 0.025, name="glenoid")
    c.ring(T.BONE, T.MARROW, 0.1, -0.57, 0.38, 0.07, 0.02, 0.1, name="acromion")
    c.ring(T.BONE, T.MARROW, -0.45, -0.62, 0.28, 0.07, 0.02, -0.1, name="clavicle")
    c.paint(T.SOFT, -0.14, -0.6, 0.035, 0.07, name="acj")
    c.paint(T.FAT, 0.22 + dx, -0.41, 0.27, 0.016, 0.35, name="bursa")
    c.paint(T.FIBRO, 0.2 + dx, -0.33 + dy, 0.26, 0.04, 0.35, name="supraspinatus")
    c.paint(T.FIBRO, 0.42 + dx, -0.18 + dy, 0.14, 0.03, 0.95, name="infraspinatus")
    c.paint(T.FIBRO, -0.14, 0.35, 0.13, 0.022, -0.1, name="subscapularis")
    c.paint(T.FIBRO, 0.0 + dx, -0.24 + dy, 0.022, 0.08, name="biceps")
    for y in (-0.16, 0.26):
        c.paint(T.FIBRO, -0.24, y, 0.045, 0.025, p=1.4, name="labrum")


def spine(c: Canvas, hints: dict) -> None:
    """Sagittal lumbar spine: vertebral bodies, discs, canal, cord, posterior elements."""
    c.paint(T.FAT, 0, 0, 0.97, 1.05, p=3, name="fat")
    c.paint(T.SOFT, -0.7, 0, 0.35, 1.05, p=3)
    c.paint(T.MUSCLE, 0.62, 0, 0.28, 1.05, p=3, name="muscle")
    curve = float(hints.get("curve", 0.0))
    gap = 0.4 * c.vary(0.05)
    ys = [gap * (k - 2) + c.rng.uniform(-0.02, 0.02) for k in range(5)]
    c.paint(T.CSF, 0.17, 0, 0.075, 1.1, p=4, name="canal")
    c.paint(T.CORD, 0.17, -0.25, 0.035, 0.75, p=3, name="cord")
    for k, y in enumerate(ys):
        x = -0.15 + curve * math.sin(1.3 * k)
        c.ring(T.BONE, T.MARROW, x, y, 0.22, 0.15 * c.vary(0.05), 0.03, p=3, name="vertebra")
        c.ring(T.BONE, T.MARROW, 0.45, y + 0.04, 0.13, 0.06, 0.02, 0.2, name="posterior")
        c.paint(T.FIBRO, 0.28, y + 0.14, 0.03, 0.08, 0.3, name="facet")
        c.paint(T.FAT, 0.27, y - 0.05, 0.018, 0.1, name="epidural")
        if k < 4:
            yd = y + gap / 2
            c.paint(T.FIBRO, x, yd, 0.22, 0.045, p=2.5, name="disc_annulus")
            c.paint(T.DISC, x, yd, 0.15, 0.03, p=2.5, name="disc")


TEMPLATES: dict[str, Template] = {
    "abd": abd, "lung": lung, "brain": brain, "knee": knee, "af": af, "hip": hip,
    "shoulder": shoulder, "spine": spine,
}

# Host regions per template and their category; categories decide which recipes fit.
HOSTS: dict[str, dict[str, str]] = {
    "abd": {"liver": "parenchyma", "spleen": "parenchyma", "kidney": "parenchyma",
            "pancreas": "parenchyma", "adrenal": "parenchyma", "prostate": "parenchyma",
            "uterus": "parenchyma", "ovary": "parenchyma", "sinus": "soft", "gb": "fluid",
            "bladder": "fluid", "aorta": "tube", "bowel": "tube", "marrow": "marrow",
            "muscle": "soft", "mesentery": "soft", "wall": "soft"},
    "lung": {"lung": "lung", "heart": "parenchyma", "marrow": "marrow", "chest_wall": "soft",
             "airway": "tube"},
    "brain": {"wm": "wm", "gm": "gm", "ventricle": "fluid", "pituitary": "parenchyma",
              "csf": "fluid", "scalp": "soft", "skull": "fibro"},
    "knee": {"femur": "marrow", "tibia": "marrow", "patella": "marrow", "cartilage": "cartilage",
             "meniscus": "fibro", "acl": "fibro", "pcl": "fibro", "collateral": "fibro",
             "patellar_tendon": "fibro", "quad_tendon": "fibro", "fat_pad": "soft",
             "joint": "fluid", "muscle": "soft", "fat": "soft"},
    "af": {"tibia": "marrow", "talus": "marrow", "calcaneus": "marrow", "midfoot": "marrow",
           "metatarsal": "marrow", "achilles": "fibro", "plantar_fascia": "fibro",
           "tendon": "fibro", "ligament": "fibro", "plantar_plate": "fibro",
           "cartilage": "cartilage", "muscle": "soft", "fat": "soft"},
    "hip": {"femur": "marrow", "pelvis": "marrow", "labrum": "fibro", "cartilage": "cartilage",
            "abductor": "soft", "abductor_tendon": "fibro", "hamstring": "fibro",
            "muscle": "soft", "joint": "fluid", "fat": "soft"},
    "shoulder": {"humerus": "marrow", "glenoid": "marrow", "acromion": "marrow",
                 "clavicle": "marrow", "supraspinatus": "fibro", "infraspinatus": "fibro",
                 "subscapularis": "fibro", "biceps": "fibro", "labrum": "fibro",
                 "bursa": "soft", "acj": "soft", "cartilage": "cartilage", "muscle": "soft",
                 "fat": "soft"},
    "spine": {"vertebra": "marrow", "disc": "fibro", "canal": "fluid", "cord": "wm",
              "posterior": "marrow", "facet": "fibro", "epidural": "soft", "muscle": "soft",
              "fat": "soft"},
}

# Hosts that only exist at one abdominal level or in one sex: the class forces them.
HOST_HINTS: dict[str, dict[str, str]] = {
    "liver": {"level": "upper"}, "spleen": {"level": "upper"}, "kidney": {"level": "upper"},
    "sinus": {"level": "upper"}, "pancreas": {"level": "upper"}, "adrenal": {"level": "upper"},
    "gb": {"level": "upper"}, "aorta": {"level": "upper"}, "bladder": {"level": "pelvis"},
    "prostate": {"level": "pelvis", "sex": "m"}, "uterus": {"level": "pelvis", "sex": "f"},
    "ovary": {"level": "pelvis", "sex": "f"},
}


def template_name(organ: str) -> str:
    """The template drawing ``organ``; unknown organs (custom taxonomies) get a fixed stand-in."""
    if organ in TEMPLATES:
        return organ
    names = sorted(TEMPLATES)
    return names[int(unit_hash("template", organ) * len(names))]
