"""Ultrasound scenes: one template per US organ folder, plus a breast scene for downstream sets.

In RadImageNet the US organ folder is the label, so what tells classes apart here is the
scene itself: which parenchyma fills the fan, which anechoic structures cross it, where the
bright reflectors (and their shadows) sit. The probe sits at the top; everything is drawn in
template coordinates inside the convex fan (apex at y = -1.3, radii 0.45–2.2).
"""

from __future__ import annotations

import math

from .canvas import Canvas
from .rng import unit_hash
from .tissues import T

APEX_Y = -1.3


def _near_field(c: Canvas, background: T = T.SOFT) -> None:
    """Tissue background, then skin and subcutaneous fat following the probe's arc."""
    c.paint(background, 0, 0, 2.5, 2.5, name="background")
    c.paint(T.FAT, 0, APEX_Y, 0.66, 0.66)
    c.paint(T.SKIN, 0, APEX_Y, 0.53, 0.53)


def _liver_bed(c: Canvas, y: float = 0.1) -> None:
    c.paint(T.LIVER, 0, y, 1.5, 1.0, name="liver")


def thyroid(c: Canvas) -> None:
    _near_field(c)
    c.paint(T.MUSCLE, 0, -0.58, 0.9, 0.09, name="muscle")
    c.paint(T.THYROID, 0, -0.42, 0.25, 0.07, name="thyroid")
    for sx in (-1, 1):
        dx, dy = c.offset()
        c.paint(T.THYROID, sx * 0.42 + dx, -0.18 + dy, 0.3 * c.vary(), 0.25 * c.vary(),
                name="thyroid")
        c.paint(T.VESSEL, sx * 0.82, -0.12, 0.11, 0.11)
    c.ring(T.SKIN, T.AIR, 0, -0.22, 0.14, 0.14, 0.03)


def kidney(c: Canvas) -> None:
    _near_field(c)
    _liver_bed(c, -0.4)
    c.paint(T.FAT, 0, 0.2, 0.7, 0.42)
    dx, dy = c.offset()
    c.paint(T.KIDNEY, dx, 0.18 + dy, 0.58 * c.vary(), 0.3 * c.vary(), 0.1, name="kidney")
    c.paint(T.SINUS, dx, 0.2 + dy, 0.36, 0.11, 0.1, name="sinus")


def liver(c: Canvas) -> None:
    _near_field(c)
    _liver_bed(c)
    for _ in range(int(c.rng.integers(3, 7))):
        c.paint(T.VESSEL, c.rng.uniform(-0.6, 0.6), c.rng.uniform(-0.4, 0.6),
                c.rng.uniform(0.03, 0.08), c.rng.uniform(0.03, 0.15), c.rng.uniform(0, math.pi))
    c.paint(T.SINUS, 0, 1.2, 1.3, 0.5)  # diaphragm, a bright curved interface
    c.paint(T.LIVER, 0, 1.2, 1.28, 0.47)


def gb(c: Canvas) -> None:
    _near_field(c)
    _liver_bed(c)
    dx, dy = c.offset(0.08)
    c.ring(T.SKIN, T.FLUID, dx, 0.05 + dy, 0.5 * c.vary(0.15), 0.22 * c.vary(0.15), 0.02,
           c.rng.uniform(-0.4, 0.4), name="gb")


def spleen(c: Canvas) -> None:
    _near_field(c, T.FAT)
    dx, dy = c.offset()
    c.paint(T.SPLEEN, 0.1 + dx, 0.1 + dy, 0.85, 0.5, 0.35, name="spleen")
    for x in (-0.55, 0.5):
        c.paint(T.BONE, x, -0.6, 0.1, 0.05, 0.2)


def bladder(c: Canvas) -> None:
    _near_field(c)
    dx, dy = c.offset()
    c.ring(T.SKIN, T.FLUID, dx, -0.05 + dy, 0.62 * c.vary(), 0.45 * c.vary(), 0.025, 0, 2.6,
           name="bladder")


def ovary(c: Canvas) -> None:
    _near_field(c)
    c.paint(T.FLUID, -0.55, -0.45, 0.55, 0.25, name="bladder")
    dx, dy = c.offset()
    c.paint(T.OVARY, 0.1 + dx, 0.15 + dy, 0.38 * c.vary(), 0.27 * c.vary(), name="ovary")
    for _ in range(int(c.rng.integers(3, 9))):
        t, r = c.rng.uniform(0, 2 * math.pi), 0.7 * math.sqrt(c.rng.random())
        c.paint(T.FLUID, 0.1 + dx + 0.3 * r * math.cos(t), 0.15 + dy + 0.2 * r * math.sin(t),
                c.rng.uniform(0.03, 0.07), c.rng.uniform(0.03, 0.07))


def uterus(c: Canvas) -> None:
    _near_field(c)
    c.paint(T.FLUID, 0, -0.5, 0.6, 0.2, name="bladder")
    dx, dy = c.offset()
    ang = c.rng.uniform(-0.25, 0.25)
    c.paint(T.UTERUS, dx, 0.12 + dy, 0.72 * c.vary(), 0.32 * c.vary(), ang, name="uterus")
    c.paint(T.SINUS, dx, 0.12 + dy, 0.5, 0.04, ang)


def aorta(c: Canvas) -> None:
    _near_field(c)
    c.paint(T.BOWEL, -0.4, -0.45, 0.4, 0.15)
    dx, dy = c.offset()
    c.ring(T.SKIN, T.VESSEL, 0.05 + dx, 0.1 + dy, 0.2 * c.vary(), 0.2, 0.02, name="aorta")
    c.paint(T.VESSEL, -0.45 + dx, 0.12 + dy, 0.18, 0.1)
    c.paint(T.BONE, 0.05, 0.55, 0.32, 0.12, p=2.5)


def pancreas(c: Canvas) -> None:
    _near_field(c)
    _liver_bed(c, -0.6)
    dx, dy = c.offset()
    c.paint(T.PANCREAS, dx, -0.05 + dy, 0.85, 0.15, -0.1, name="pancreas")
    c.paint(T.VESSEL, dx, 0.12 + dy, 0.6, 0.03, -0.1)
    c.paint(T.VESSEL, 0.15, 0.45, 0.1, 0.1)
    c.paint(T.BONE, 0.1, 0.8, 0.3, 0.1)


def ivc(c: Canvas) -> None:
    _near_field(c)
    _liver_bed(c, -0.3)
    dx, dy = c.offset()
    c.paint(T.VESSEL, dx, 0.15 + dy, 1.2, 0.11 * c.vary(0.2), c.rng.uniform(-0.15, 0.15),
            name="ivc")


def portal_vein(c: Canvas) -> None:
    _near_field(c)
    _liver_bed(c)
    dx, dy = c.offset()
    ang = c.rng.uniform(-0.5, 0.0)
    c.ring(T.SINUS, T.VESSEL, dx, 0.05 + dy, 0.6, 0.09, 0.025, ang, name="portal_vein")


def cbd(c: Canvas) -> None:
    _near_field(c)
    _liver_bed(c)
    dx, dy = c.offset()
    c.paint(T.FLUID, dx, -0.05 + dy, 0.45, 0.035, -0.2, name="cbd")
    c.paint(T.VESSEL, dx, 0.12 + dy, 0.6, 0.08, -0.2)


def testis(c: Canvas) -> None:
    _near_field(c)
    dx, dy = c.offset()
    c.paint(T.TESTIS, dx, 0.1 + dy, 0.62 * c.vary(), 0.45 * c.vary(), name="testis")
    c.paint(T.SINUS, dx, 0.25 + dy, 0.35, 0.02)
    c.paint(T.SOFT, 0.5 + dx, -0.25 + dy, 0.2, 0.14)


def breast(c: Canvas) -> None:
    """Breast scene for BUSI-like sets: fat lobules, glandular layer, pectoralis, a rib."""
    _near_field(c, T.FAT)
    c.paint(T.GLAND, 0, -0.05, 1.6, 0.35, p=2.2, name="gland")
    for _ in range(int(c.rng.integers(3, 7))):
        c.paint(T.FAT, c.rng.uniform(-0.8, 0.8), c.rng.uniform(-0.65, -0.4),
                c.rng.uniform(0.08, 0.2), c.rng.uniform(0.04, 0.08), name="fat")
    c.paint(T.MUSCLE, 0, 0.52, 1.6, 0.14, name="muscle")
    c.paint(T.BONE, c.rng.uniform(-0.4, 0.4), 0.78, 0.22, 0.07)


US_TEMPLATES = {
    "thyroid": thyroid, "kidney": kidney, "liver": liver, "gb": gb, "spleen": spleen,
    "bladder": bladder, "ovary": ovary, "uterus": uterus, "aorta": aorta,
    "pancreas": pancreas, "ivc": ivc, "portal_vein": portal_vein, "cbd": cbd,
    "testis": testis, "breast": breast,
}


def us_template_name(organ: str) -> str:
    if organ in US_TEMPLATES:
        return organ
    names = sorted(US_TEMPLATES)
    return names[int(unit_hash("us-template", organ) * len(names))]
