"""Drawing primitives: a label canvas in template coordinates, smooth random fields, masks.

Templates describe anatomy in normalised coordinates (x right, y down, both in [-1, 1]) as
rotated ellipses and superellipses painted in order, later shapes over earlier ones. The
canvas maps them through one similarity transform per image (the patient's pose plus a small
per-slice change), and evaluates each shape only inside its bounding box, which keeps a
30-shape template at 224 px to a few milliseconds.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage


class Canvas:
    """An S×S tissue-label map plus named regions (host masks for lesions)."""

    def __init__(self, size: int, patient_rng: np.random.Generator,
                 image_rng: np.random.Generator, jitter: float = 0.05, pose: float = 1.0) -> None:
        """``pose`` scales the pose jitter (US keeps anatomy aligned with its fixed fan)."""
        self.size = size
        self.rng = patient_rng  # structure jitter: the same for every slice of a patient
        self.jitter = jitter
        self.scale = 1.0 + pose * (patient_rng.uniform(-0.1, 0.1) + image_rng.uniform(-0.03, 0.03))
        self.angle = pose * (patient_rng.uniform(-0.15, 0.15) + image_rng.uniform(-0.03, 0.03))
        self.shift = pose * (patient_rng.uniform(-0.05, 0.05, 2)
                             + image_rng.uniform(-0.02, 0.02, 2))
        coords = ((np.arange(size) + 0.5) / size * 2.0 - 1.0).astype(np.float32)
        dx = coords[None, :] - np.float32(self.shift[0])
        dy = coords[:, None] - np.float32(self.shift[1])
        cos, sin = math.cos(self.angle), math.sin(self.angle)
        # Template coordinates of every pixel centre (inverse of the similarity transform).
        self.tx = ((cos * dx + sin * dy) / self.scale).astype(np.float32)
        self.ty = ((-sin * dx + cos * dy) / self.scale).astype(np.float32)
        self.labels = np.zeros((size, size), np.uint8)
        self.regions: dict[str, tuple[int, np.ndarray]] = {}

    # -- jitter drawn from the patient stream ------------------------------------------------
    def offset(self, amount: float | None = None) -> tuple[float, float]:
        a = self.jitter if amount is None else amount
        return float(self.rng.uniform(-a, a)), float(self.rng.uniform(-a, a))

    def vary(self, spread: float = 0.08) -> float:
        """A size factor around 1 for one structure of this patient."""
        return float(self.rng.uniform(1.0 - spread, 1.0 + spread))

    # -- shapes ------------------------------------------------------------------------------
    def _bbox(self, cx: float, cy: float, radius: float) -> tuple[slice, slice]:
        cos, sin = math.cos(self.angle), math.sin(self.angle)
        ix = self.scale * (cos * cx - sin * cy) + self.shift[0]
        iy = self.scale * (sin * cx + cos * cy) + self.shift[1]
        half = self.size / 2.0
        r_px = radius * self.scale * half + 2.0
        px, py = (ix + 1.0) * half, (iy + 1.0) * half
        x0, x1 = max(0, int(px - r_px)), min(self.size, int(px + r_px) + 1)
        y0, y1 = max(0, int(py - r_px)), min(self.size, int(py + r_px) + 1)
        return slice(y0, max(y0, y1)), slice(x0, max(x0, x1))

    def shape_mask(self, cx: float, cy: float, a: float, b: float, angle: float = 0.0,
                   p: float = 2.0) -> tuple[tuple[slice, slice], np.ndarray]:
        """Inside test of a rotated superellipse |u|^p + |v|^p <= 1, on its bounding box."""
        radius = math.hypot(a, b) if p > 2.0 else max(a, b)
        box = self._bbox(cx, cy, radius)
        x = self.tx[box] - cx
        y = self.ty[box] - cy
        cos, sin = math.cos(angle), math.sin(angle)
        u = (x * cos + y * sin) / a
        v = (-x * sin + y * cos) / b
        if p == 2.0:
            inside = u * u + v * v <= 1.0
        else:
            inside = np.abs(u) ** p + np.abs(v) ** p <= 1.0
        return box, inside

    def paint(self, tissue: int, cx: float, cy: float, a: float, b: float,
              angle: float = 0.0, p: float = 2.0, name: str | None = None) -> None:
        """Paint one shape; ``name`` adds it to a host region (regions may be unions)."""
        if a <= 0 or b <= 0:
            return
        box, inside = self.shape_mask(cx, cy, a, b, angle, p)
        self.labels[box][inside] = tissue
        if name is not None:
            if name not in self.regions:
                self.regions[name] = (tissue, np.zeros_like(self.labels, dtype=bool))
            self.regions[name][1][box] |= inside

    def ring(self, outer: int, inner: int, cx: float, cy: float, a: float, b: float,
             thickness: float, angle: float = 0.0, p: float = 2.0,
             name: str | None = None) -> None:
        """A shell of ``outer`` tissue around an ``inner`` core (bone cortex and marrow)."""
        self.paint(outer, cx, cy, a, b, angle, p)
        self.paint(inner, cx, cy, a - thickness, b - thickness, angle, p, name=name)

    def host(self, name: str) -> np.ndarray:
        """Pixels of region ``name`` still showing its own tissue (later shapes cut it)."""
        if name not in self.regions:
            return np.zeros_like(self.labels, dtype=bool)
        tissue, mask = self.regions[name]
        return mask & (self.labels == tissue)

    def to_template(self, u: float, v: float) -> tuple[float, float]:
        """Image coordinates → template coordinates (for points chosen in the image)."""
        dx, dy = u - self.shift[0], v - self.shift[1]
        cos, sin = math.cos(self.angle), math.sin(self.angle)
        return (cos * dx + sin * dy) / self.scale, (-sin * dx + cos * dy) / self.scale


# -- random fields ---------------------------------------------------------------------------
def smooth_field(rng: np.random.Generator, size: int, sigma_px: float) -> np.ndarray:
    """Unit-variance Gaussian random field with correlation length ``sigma_px``.

    Wide blurs are done on a coarse grid and upsampled (bilinear), so the cost stays small
    at 224 px; the field's statistics are indistinguishable for texture purposes.
    """
    factor = max(1, int(sigma_px // 2))
    coarse = -(-size // factor) + 2
    white = rng.standard_normal((coarse, coarse)).astype(np.float32)
    field = ndimage.gaussian_filter(white, sigma_px / factor, mode="wrap")
    if factor > 1:
        field = ndimage.zoom(field, factor, order=1, mode="nearest")
    field = field[:size, :size]
    std = float(field.std())
    return (field - field.mean()) / (std if std > 0 else 1.0)


def correlated_noise(rng: np.random.Generator, size: int, sigma_px: float) -> np.ndarray:
    """White noise blurred by ``sigma_px`` and rescaled to unit standard deviation."""
    white = rng.standard_normal((size, size)).astype(np.float32)
    if sigma_px <= 0:
        return white
    blurred = ndimage.gaussian_filter(white, sigma_px)
    return blurred / np.float32(max(float(blurred.std()), 1e-6))


# -- masks -----------------------------------------------------------------------------------
def _crop(mask: np.ndarray, margin: int) -> tuple[slice, slice] | None:
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    h, w = mask.shape
    return (slice(max(0, rows[0] - margin), min(h, rows[-1] + margin + 1)),
            slice(max(0, cols[0] - margin), min(w, cols[-1] + margin + 1)))


def erode(mask: np.ndarray, px: int) -> np.ndarray:
    if px <= 0:
        return mask.copy()
    out = np.zeros_like(mask)
    box = _crop(mask, 1)
    if box is not None:
        out[box] = ndimage.binary_erosion(mask[box], iterations=px)
    return out


def dilate(mask: np.ndarray, px: int) -> np.ndarray:
    if px <= 0:
        return mask.copy()
    out = np.zeros_like(mask)
    box = _crop(mask, px + 1)
    if box is not None:
        out[box] = ndimage.binary_dilation(mask[box], iterations=px)
    return out


def soften(mask: np.ndarray, sigma_px: float) -> np.ndarray:
    """A float [0, 1] version of ``mask`` with blurred edges."""
    return ndimage.gaussian_filter(mask.astype(np.float32), sigma_px) if sigma_px > 0 \
        else mask.astype(np.float32)
