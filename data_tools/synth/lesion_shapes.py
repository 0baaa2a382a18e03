"""Lesion geometry: turn a class recipe into weight maps on one image's canvas.

Each geometry returns :class:`Effect` objects: a soft weight map w in [0, 1] and what it
does where w > 0: ``add`` a contrast in units of the image's own noise (so the CNR knob sets
difficulty the same way in every modality), blend toward a ``tissue``, or set an absolute
CT value (``hu``, for lytic bone lesions that a window would otherwise saturate). Geometry is
drawn from the patient's lesion stream, so one patient's slices show the same lesion.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from .anatomy import HOSTS, template_name
from .canvas import Canvas, dilate, erode, soften
from .lesions import Recipe
from .tissues import BONY, T


@dataclass
class Effect:
    weight: np.ndarray
    mode: str                 # "add" | "tissue" | "hu"
    amount: float             # signed contrast units | tissue id | HU value
    t1: float = -0.5          # MR: contrast on T1 relative to T2 (lesion polarity flips)
    blend: float = 1.0        # "tissue": how far to move toward the tissue
    attenuation: float = 0.0  # US: extra attenuation inside (shadowing), dB per unit length


def host_category(organ: str, host: str, modality: str) -> str:
    if modality == "US":
        return "parenchyma"
    return HOSTS[template_name(organ)].get(host, "soft")


def _bbox(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return None
    return int(rows[0]), int(rows[-1]), int(cols[0]), int(cols[-1])


def pick_centre(mask: np.ndarray, anchor: tuple[float, float], rng: np.random.Generator,
                spread: float = 0.12, inset_px: int = 1) -> tuple[float, float] | None:
    """A pixel of ``mask`` near the anchor point of its bounding box (row, col)."""
    inner = erode(mask, inset_px)
    cand = inner if inner.any() else mask
    box = _bbox(cand)
    if box is None:
        return None
    y0, y1, x0, x1 = box
    ty = y0 + anchor[1] * (y1 - y0) + rng.normal(0, spread * (y1 - y0 + 1))
    tx = x0 + anchor[0] * (x1 - x0) + rng.normal(0, spread * (x1 - x0 + 1))
    ys, xs = np.nonzero(cand)
    i = int(np.argmin((ys - ty) ** 2 + (xs - tx) ** 2))
    return float(ys[i]), float(xs[i])


def soft_ellipse(size: int, cy: float, cx: float, ry: float, rx: float,
                 angle: float = 0.0) -> np.ndarray:
    """Anti-aliased filled ellipse (radii in pixels), evaluated on its bounding box."""
    out = np.zeros((size, size), np.float32)
    r = max(ry, rx) + 2
    y0, y1 = max(0, int(cy - r)), min(size, int(cy + r) + 2)
    x0, x1 = max(0, int(cx - r)), min(size, int(cx + r) + 2)
    if y0 >= y1 or x0 >= x1:
        return out
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    dy, dx = yy - cy, xx - cx
    cos, sin = math.cos(angle), math.sin(angle)
    u, v = (dx * cos + dy * sin) / rx, (-dx * sin + dy * cos) / ry
    rho = np.sqrt(u * u + v * v)
    out[y0:y1, x0:x1] = np.clip((1.0 - rho) * min(rx, ry) + 0.5, 0.0, 1.0)
    return out


class LesionPainter:
    """Renders one recipe (or a distractor) on one canvas."""

    def __init__(self, canvas: Canvas, modality: str, organ: str, min_px: float,
                 geo_rng: np.random.Generator) -> None:
        self.c, self.modality, self.organ = canvas, modality, organ
        self.size, self.min_px, self.rng = canvas.size, min_px, geo_rng
        labels = canvas.labels
        self.body = labels != T.BG
        self.not_bone = ~np.isin(labels, BONY)

    def radius(self, lo: float, hi: float, scale: float = 1.0) -> float:
        """Radius in pixels for a normalised radius drawn in [lo, hi]·scale."""
        return max(self.min_px, self.rng.uniform(lo, hi) * scale * self.size / 2.0)

    def _add(self, w: np.ndarray, r: Recipe, sign: float, t1: float = -0.5,
             category: str = "soft") -> Effect:
        if self.modality == "CT" and category == "marrow":  # lytic: visible in any window
            return Effect(w, "hu", float(self.rng.uniform(20, 120)))
        return Effect(w, "add", sign * r.gain, t1=t1)

    def paint(self, r: Recipe) -> list[Effect]:
        host = self.c.host(r.host)
        if not host.any():  # host cut away in this slice: fall back to the body
            host = self.body & self.not_bone
        category = host_category(self.organ, r.host, self.modality)
        return getattr(self, "_" + r.kind)(r, host, category)

    # -- geometries ---------------------------------------------------------------------------
    def _confine(self, w: np.ndarray, host: np.ndarray, grow_px: float) -> np.ndarray:
        allowed = dilate(host, max(1, int(grow_px))) & self.body
        return w * soften(allowed, 0.6)

    def _focal(self, r: Recipe, host: np.ndarray, cat: str) -> list[Effect]:
        rad = self.radius(0.06, 0.16, r.size)
        centre = pick_centre(host, r.anchor, self.rng, inset_px=int(rad / 2))
        if centre is None:
            return []
        aspect = self.rng.uniform(0.8, 1.25)
        w = soft_ellipse(self.size, *centre, rad * aspect, rad / aspect, self.rng.uniform(0, 3.2))
        return [self._add(self._confine(w, host, rad / 2), r, r.sign, category=cat)]

    def _nodule(self, r: Recipe, host: np.ndarray, cat: str) -> list[Effect]:
        rad = self.radius(0.04, 0.08, r.size)
        centre = pick_centre(host, r.anchor, self.rng, spread=0.25, inset_px=int(rad))
        if centre is None:
            return []
        return [Effect(soft_ellipse(self.size, *centre, rad, rad), "tissue", float(T.SOFT))]

    def _multifocal(self, r: Recipe, host: np.ndarray, cat: str) -> list[Effect]:
        w = np.zeros((self.size, self.size), np.float32)
        for _ in range(int(self.rng.integers(3, 9))):
            rad = self.radius(0.035, 0.07, r.size)
            centre = pick_centre(host, r.anchor, self.rng, spread=0.3)
            if centre is not None:
                w = np.maximum(w, soft_ellipse(self.size, *centre, rad, rad))
        return [self._add(self._confine(w, host, 1), r, r.sign, category=cat)]

    def _reticular(self, r: Recipe, host: np.ndarray, cat: str) -> list[Effect]:
        s = self.size
        noise = self.rng.standard_normal((s, s)).astype(np.float32)
        # Band-pass noise; its zero crossings form a honeycomb-like net a few pixels wide.
        band = ndimage.gaussian_filter(noise, 0.018 * s + 0.5) - \
            ndimage.gaussian_filter(noise, 0.045 * s + 1.0)
        net = (np.abs(band) < 0.3 * band.std()).astype(np.float32)
        centre = pick_centre(host, r.anchor, self.rng, spread=0.2)
        if centre is None:
            return []
        rad = 0.35 * r.size * s / 2
        disc = ndimage.gaussian_filter(soft_ellipse(s, *centre, rad, rad), 0.2 * rad)
        return [Effect(net * disc * host, "add", abs(r.gain))]

    def _ggo(self, r: Recipe, host: np.ndarray, cat: str) -> list[Effect]:
        rad = self.radius(0.12, 0.3, r.size)
        centre = pick_centre(host, r.anchor, self.rng, spread=0.2)
        if centre is None:
            return []
        aspect = self.rng.uniform(0.7, 1.4)
        w = ndimage.gaussian_filter(soft_ellipse(self.size, *centre, rad * aspect, rad / aspect),
                                    0.3 * rad)
        return [Effect(w * host, "add", 1.3 * abs(r.gain))]

    def _fluid_rim(self, r: Recipe, host: np.ndarray, cat: str) -> list[Effect]:
        k = max(2, int(round(self.rng.uniform(0.03, 0.07) * r.size * self.size / 2)))
        if cat == "lung":  # dependent effusion inside the pleural space
            rim = host & ~erode(host, k)
        else:
            rim = dilate(host, k) & ~host & self.body & self.not_bone
        box = _bbox(host)
        if box is None:
            return []
        cut = int(box[0] + (0.2 + 0.5 * r.anchor[1]) * (box[1] - box[0]))
        rim[:cut] = False
        return [Effect(soften(rim, 0.5), "tissue", float(T.FLUID))]

    def _wedge(self, r: Recipe, host: np.ndarray, cat: str) -> list[Effect]:
        centre = pick_centre(host, r.anchor, self.rng, spread=0.2)
        box = _bbox(self.body)
        if centre is None or box is None:
            return []
        cy, cx = centre
        mid_y, mid_x = (box[0] + box[1]) / 2, (box[2] + box[3]) / 2
        direction = math.atan2(mid_y - cy, mid_x - cx)
        reach = self.radius(0.15, 0.3, r.size)
        yy, xx = np.mgrid[0:self.size, 0:self.size].astype(np.float32)
        dist = np.hypot(yy - cy, xx - cx)
        diff = np.angle(np.exp(1j * (np.arctan2(yy - cy, xx - cx) - direction)))
        sector = (np.abs(diff) < 0.35) & (dist < reach)
        brain = np.isin(self.c.labels, (T.GM, T.WM)) if self.modality == "MR" else host
        return [self._add(soften(sector & (brain | host), 0.7), r, r.sign, t1=-0.6, category=cat)]

    def _tear(self, r: Recipe, host: np.ndarray, cat: str) -> list[Effect]:
        centre = pick_centre(host, r.anchor, self.rng, spread=0.15)
        if centre is None:
            return []
        cy, cx = centre
        theta = r.angle + self.rng.normal(0, 0.15)
        width = max(1.2, 0.012 * self.size) * r.size
        yy, xx = np.mgrid[0:self.size, 0:self.size].astype(np.float32)
        dist = np.abs((xx - cx) * math.sin(theta) - (yy - cy) * math.cos(theta))
        line = np.clip(width / 2 + 0.5 - dist, 0.0, 1.0)
        return [Effect(line * dilate(host, 1), "tissue", float(T[r.fill]), blend=0.8)]

    def _fluid_blob(self, r: Recipe, host: np.ndarray, cat: str) -> list[Effect]:
        rad = self.radius(0.05, 0.12, r.size)
        edge = dilate(host, max(1, int(rad * 0.6))) & ~host & self.body & self.not_bone
        centre = pick_centre(edge if edge.any() else host, r.anchor, self.rng, 0.2, inset_px=0)
        if centre is None:
            return []
        aspect = self.rng.uniform(0.7, 1.4)
        w = soft_ellipse(self.size, *centre, rad * aspect, rad / aspect, self.rng.uniform(0, 3.2))
        return [Effect(w * self.body * self.not_bone, "tissue", float(T[r.fill]),
                       attenuation=-4.0)]

    def _edema(self, r: Recipe, host: np.ndarray, cat: str) -> list[Effect]:
        rad = self.radius(0.1, 0.25, r.size)
        centre = pick_centre(host, r.anchor, self.rng, spread=0.2)
        if centre is None:
            return []
        blob = ndimage.gaussian_filter(soft_ellipse(self.size, *centre, rad, rad * 0.8),
                                       0.05 * self.size)
        blob /= max(float(blob.max()), 1e-6)
        effect = Effect(blob * soften(host, 0.7), "add", 1.2 * abs(r.gain), t1=-1.0)
        return [effect]

    def _tubes(self, r: Recipe, host: np.ndarray, cat: str) -> list[Effect]:
        lumen = np.zeros((self.size, self.size), np.float32)
        wall = np.zeros_like(lumen)
        for _ in range(int(self.rng.integers(2, 6))):
            centre = pick_centre(host, r.anchor, self.rng, spread=0.3)
            if centre is None:
                break
            if cat == "lung":  # dilated bronchi: air lumen, thick wall
                rad = self.radius(0.025, 0.05, r.size)
                outer = soft_ellipse(self.size, *centre, rad, rad)
                inner = soft_ellipse(self.size, *centre, 0.6 * rad, 0.6 * rad)
                wall, lumen = np.maximum(wall, outer - inner), np.maximum(lumen, inner)
            else:  # dilated ducts: fluid tubes
                length = self.radius(0.1, 0.22, r.size)
                thick = max(self.min_px * 0.6, 0.02 * self.size / 2 * r.size)
                ang = r.angle + self.rng.normal(0, 0.4)
                lumen = np.maximum(lumen, soft_ellipse(self.size, *centre, thick, length, ang))
        if cat == "lung":
            return [Effect(wall * host, "tissue", float(T.SOFT)),
                    Effect(lumen * host, "tissue", float(T.AIR))]
        return [Effect(lumen * soften(host, 0.5), "tissue", float(T.FLUID), attenuation=-4.0)]

    def _diffuse(self, r: Recipe, host: np.ndarray, cat: str) -> list[Effect]:
        return [Effect(soften(erode(host, 1), 1.0), "add", 0.7 * r.sign * r.gain)]

    def _thicken(self, r: Recipe, host: np.ndarray, cat: str) -> list[Effect]:
        """Local thickening of a tendon, ligament, wall or cartilage near one point."""
        k = max(1, int(round(0.02 * self.size / 2 * r.size * self.rng.uniform(1.0, 2.0))))
        tissue = self.c.regions[r.host][0] if r.host in self.c.regions else T.SOFT
        if cat == "fluid":  # wall thickening of a fluid-filled organ
            band, tissue = host & ~erode(host, k), T.SOFT
        else:
            band = dilate(host, k) & ~host & self.body & self.not_bone
        centre = pick_centre(host, r.anchor, self.rng, spread=0.15)
        if centre is None:
            return []
        reach = self.radius(0.15, 0.3, r.size)
        near = soft_ellipse(self.size, *centre, reach, reach)
        return [Effect(soften(band, 0.5) * near, "tissue", float(tissue))]

    # Downstream-only geometries (breast and brain-tumour sets).
    def _spiculated(self, r: Recipe, host: np.ndarray, cat: str) -> list[Effect]:
        """Irregular, taller-than-wide mass with spicules; shadows in US."""
        rad = self.radius(0.08, 0.16, r.size)
        centre = pick_centre(host, r.anchor, self.rng, spread=0.2, inset_px=int(rad / 3))
        if centre is None:
            return []
        cy, cx = centre
        yy, xx = np.mgrid[0:self.size, 0:self.size].astype(np.float32)
        theta = np.arctan2(yy - cy, xx - cx)
        wobble = sum(self.rng.uniform(0.05, 0.18) * np.cos(k * theta + self.rng.uniform(0, 6.3))
                     for k in range(2, 9))
        limit = rad * (1.0 + wobble) * (1.0 + 0.3 * np.abs(np.sin(theta)))
        w = np.clip(limit + 0.5 - np.hypot(yy - cy, xx - cx), 0.0, 1.0).astype(np.float32)
        shadow = 25.0 if self.modality == "US" else 0.0
        return [Effect(w * self.body, "add", r.sign * abs(r.gain) * 1.5, t1=-0.5,
                       attenuation=shadow)]


def distractor(painter: LesionPainter, rng: np.random.Generator) -> list[Effect]:
    """A small benign blob of either polarity in any host of the organ (every class alike)."""
    if painter.modality == "US":
        hosts = [n for n in painter.c.regions if n != "background"] or ["background"]
    else:
        hosts = [h for h, cat in HOSTS[template_name(painter.organ)].items()
                 if cat in ("parenchyma", "soft", "marrow", "wm")]
    name = hosts[int(rng.integers(len(hosts)))]
    host = painter.c.host(name)
    if not host.any():
        return []
    cat = host_category(painter.organ, name, painter.modality)
    centre = pick_centre(host, (rng.random(), rng.random()), rng, spread=0.3)
    if centre is None:
        return []
    rad = max(painter.min_px, rng.uniform(0.02, 0.045) * painter.size / 2)
    w = soft_ellipse(painter.size, *centre, rad, rad) * soften(host, 0.6)
    if painter.modality == "CT" and cat == "marrow":
        return [Effect(w, "hu", float(rng.uniform(20, 120)))]
    return [Effect(w, "add", float(rng.choice([-1.0, 1.0]) * rng.uniform(0.6, 1.0)))]



