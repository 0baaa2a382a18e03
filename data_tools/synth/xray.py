"""Frontal chest radiographs: a projection of an ellipsoid chest phantom.

A radiograph sums attenuation along each ray, so every structure here is an ellipsoid whose
projected thickness is sqrt(1 - rho^2) inside its outline. Lungs subtract attenuation from
the soft-tissue body, bones add it; pneumonia is patchy consolidation that fills part of
one lung with soft-tissue density. Used by the Pneumonia-like npz and folder sets.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from .canvas import smooth_field
from .formation import burn_in_text, log_uniform
from .rng import stream
from .settings import RenderKnobs


def _thickness(x: np.ndarray, y: np.ndarray, cx: float, cy: float, a: float, b: float,
               angle: float = 0.0) -> np.ndarray:
    cos, sin = math.cos(angle), math.sin(angle)
    u = ((x - cx) * cos + (y - cy) * sin) / a
    v = (-(x - cx) * sin + (y - cy) * cos) / b
    return np.sqrt(np.clip(1.0 - u * u - v * v, 0.0, None))


def render_chest_xr(knobs: RenderKnobs, *, seed: int, key: str, patient: int, index: int,
                    pneumonia: bool) -> np.ndarray:
    size = knobs.size
    prng = stream(seed, key, "patient", patient)
    irng = stream(seed, key, "image", index)
    lrng = stream(seed, key, "lesion", patient)
    coords = ((np.arange(size) + 0.5) / size * 2.0 - 1.0).astype(np.float32)
    scale = prng.uniform(0.92, 1.08)
    angle = irng.uniform(-0.05, 0.05)
    sx, sy = irng.uniform(-0.04, 0.04, 2)
    cos, sin = math.cos(angle), math.sin(angle)
    gx, gy = coords[None, :] - sx, coords[:, None] - sy
    x = ((cos * gx + sin * gy) / scale).astype(np.float32)
    y = ((-sin * gx + cos * gy) / scale).astype(np.float32)

    att = 1.0 * _thickness(x, y, 0.0, 0.15, 0.97, 1.2)                # soft-tissue body
    lungs = np.zeros_like(att)
    for side in (-1, 1):
        lungs += _thickness(x, y, side * 0.42, -0.08, 0.3 * prng.uniform(0.95, 1.05),
                            0.62 * prng.uniform(0.95, 1.05), side * 0.08)
    heart = _thickness(x, y, 0.1, 0.28, 0.3 * prng.uniform(0.9, 1.1), 0.25, -0.3)
    att -= 0.7 * lungs * (1.0 - np.clip(heart * 1.5, 0.0, 1.0))
    att += 0.15 * heart
    att += 0.5 * _thickness(x, y, 0.0, 0.1, 0.07, 1.2)                # spine and mediastinum
    for side in (-1, 1):
        att += 0.8 * _thickness(x, y, side * 0.35, -0.74, 0.36, 0.03, -side * 0.2)  # clavicles
        for k in range(9):                                               # posterior ribs
            att += 0.2 * _thickness(x, y, side * 0.4, -0.62 + 0.135 * k, 0.36, 0.022,
                                     side * 0.35)
    if pneumonia:
        side = -1 if lrng.random() < 0.5 else 1
        zone_y = lrng.uniform(-0.3, 0.3)
        zone = _thickness(x, y, side * 0.42, zone_y, 0.26, lrng.uniform(0.2, 0.35))
        patches = smooth_field(irng, size, 0.035 * size) > lrng.uniform(-0.3, 0.4)
        consolidation = ndimage.gaussian_filter(patches * (zone > 0.0) * 1.0, 0.01 * size + 0.5)
        contrast = 0.35 * log_uniform(irng, *knobs.cnr_range) / 2.0
        att += contrast * consolidation * np.clip(lungs, 0.0, 1.0)

    att += 0.03 * smooth_field(irng, size, 0.02 * size)
    image = 1.0 - np.exp(-irng.uniform(1.2, 1.8) * np.clip(att, 0.0, None))
    image = ndimage.gaussian_filter(image, 0.6)
    image += irng.uniform(0.01, 0.03) * irng.standard_normal(image.shape)
    lo, hi = np.percentile(image, [1.0, 99.7])
    image = np.clip((image - lo) / max(hi - lo, 1e-6), 0.0, 1.0) ** irng.uniform(0.8, 1.2)
    out = np.rint(255.0 * image).astype(np.uint8)
    if irng.random() < knobs.us_text_rate:  # side marker / annotation, class-independent
        burn_in_text(out, irng)
    return out
