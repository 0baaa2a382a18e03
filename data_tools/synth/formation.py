"""Image formation per modality: tissue labels + lesion effects → 8-bit image.

Every acquisition parameter (noise level, window, bias field, gain, dynamic range, probe
angle, annotation) is drawn from the image's own stream and never from the class, so no
class can be told apart by a global intensity or noise signature.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from .canvas import correlated_noise, smooth_field
from .lesion_shapes import Effect
from .settings import RenderKnobs
from .tissues import HU, T1, T2, US_DB, T

FAN_APEX_Y = -1.3
FAN_RADII = (0.45, 2.2)
# Extra ultrasound attenuation (dB per unit of normalised depth): bone and gas shadow,
# fluid enhances what lies behind it.
US_ATTENUATION = np.zeros(len(T), np.float32)
US_ATTENUATION[[T.BONE, T.MARROW, T.AIR]] = 150.0
US_ATTENUATION[[T.FLUID, T.VESSEL, T.CSF]] = -5.0


def log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


def _apply(base: np.ndarray, effects: list[Effect], unit: float, table: np.ndarray,
           t1_weighted: bool = False, allow_hu: bool = False) -> np.ndarray:
    """Apply lesion effects to a property map (HU, MR signal or dB)."""
    for e in effects:
        w = e.weight
        if e.mode == "add":
            base += w * (e.amount * unit * (e.t1 if t1_weighted else 1.0))
        elif e.mode == "tissue":
            target = table[int(e.amount)]
            base += (target - base) * (w * e.blend)
        elif e.mode == "hu" and allow_hu:
            base += (e.amount - base) * w
    return base


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    coords = ((np.arange(size) + 0.5) / size * 2.0 - 1.0).astype(np.float32)
    return coords[None, :].repeat(size, 0), coords[:, None].repeat(size, 1)


def form_ct(labels: np.ndarray, effects: list[Effect], rng: np.random.Generator,
            knobs: RenderKnobs, window: str) -> np.ndarray:
    size = labels.shape[0]
    body = labels != T.BG
    hu = HU[labels].astype(np.float32)
    hu += 8.0 * smooth_field(rng, size, 0.02 * size) * body
    sigma = rng.uniform(8.0, 25.0)
    j = knobs.window_jitter
    if window == "lung":
        level = -600.0 + 50.0 * j * rng.uniform(-1, 1)
        width = 1500.0 * (1 + 0.05 * j * rng.uniform(-1, 1))
    else:
        level = 40.0 + 10.0 * j * rng.uniform(-1, 1)
        width = 400.0 * (1 + 0.1 * j * rng.uniform(-1, 1))
    # Contrast is specified relative to the display window, so a lesion is equally visible in
    # a W400 abdomen and a W1500 lung.
    unit = 1.5 * log_uniform(rng, *knobs.cnr_range) * sigma * width / 400.0
    hu = _apply(hu, effects, unit, HU, allow_hu=True)
    hu = ndimage.gaussian_filter(hu, 0.5)  # partial volume at structure edges
    hu += sigma * correlated_noise(rng, size, 0.7)
    x, y = _grid(size)
    fov = rng.uniform(0.92, 1.02)  # reconstruction circle; the scanner pads outside it
    hu[x * x + y * y > fov * fov] = -3024.0
    out = np.clip((hu - (level - width / 2)) / width, 0.0, 1.0)
    return np.rint(255.0 * out).astype(np.uint8)


def form_mr(labels: np.ndarray, effects: list[Effect], rng: np.random.Generator,
            knobs: RenderKnobs) -> np.ndarray:
    size = labels.shape[0]
    t2 = rng.random() < knobs.sequence_mix
    table = T2 if t2 else T1
    signal = table[labels].astype(np.float32)
    signal *= 1.0 + 0.05 * smooth_field(rng, size, 0.02 * size)
    sigma = rng.uniform(0.02, 0.06)
    unit = 3.0 * log_uniform(rng, *knobs.cnr_range) * sigma
    signal = _apply(signal, effects, unit, table, t1_weighted=not t2)
    signal = ndimage.gaussian_filter(np.clip(signal, 0.0, None), 0.5)
    x, y = _grid(size)
    c = rng.normal(0.0, 0.15, 5)
    bias = np.exp(c[0] * x + c[1] * y + c[2] * x * y + c[3] * (1.5 * x * x - 0.5)
                  + c[4] * (1.5 * y * y - 0.5))
    signal *= bias
    real = signal + sigma * rng.standard_normal(signal.shape).astype(np.float32)
    imag = sigma * rng.standard_normal(signal.shape).astype(np.float32)
    magnitude = np.sqrt(real * real + imag * imag)  # Rician: the background becomes Rayleigh
    top = float(np.percentile(magnitude, 99.5)) or 1.0
    return np.rint(255.0 * np.clip(magnitude / top, 0.0, 1.0)).astype(np.uint8)


def fan_geometry(size: int, half_angle: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(inside-fan mask, radius, angle) of every pixel for a convex probe."""
    x, y = _grid(size)
    dy = y - FAN_APEX_Y
    radius = np.sqrt(x * x + dy * dy)
    angle = np.arctan2(x, dy)
    inside = (radius >= FAN_RADII[0]) & (radius <= FAN_RADII[1]) & (np.abs(angle) <= half_angle)
    return inside, radius, angle


def _ray_integral(att: np.ndarray, radius: np.ndarray, angle: np.ndarray,
                  half_angle: float) -> np.ndarray:
    """∫ att along each ray from the probe to every pixel (shadows and enhancement)."""
    size = att.shape[0]
    n_t, n_r = size, size
    thetas = np.linspace(-half_angle, half_angle, n_t, dtype=np.float32)
    radii = np.linspace(FAN_RADII[0], FAN_RADII[1], n_r, dtype=np.float32)
    px = (radii[None, :] * np.sin(thetas[:, None]) + 1.0) * size / 2 - 0.5
    py = (radii[None, :] * np.cos(thetas[:, None]) + FAN_APEX_Y + 1.0) * size / 2 - 0.5
    polar = ndimage.map_coordinates(att, [py, px], order=1, cval=0.0)
    cumulative = np.cumsum(polar, axis=1) * (radii[1] - radii[0])
    ti = (angle + half_angle) / (2 * half_angle) * (n_t - 1)
    ri = (radius - FAN_RADII[0]) / (FAN_RADII[1] - FAN_RADII[0]) * (n_r - 1)
    return ndimage.map_coordinates(cumulative, [ti, ri], order=1, mode="nearest")


def form_us(labels: np.ndarray, effects: list[Effect], rng: np.random.Generator,
            knobs: RenderKnobs) -> np.ndarray:
    size = labels.shape[0]
    half_angle = math.radians(rng.uniform(30.0, 38.0))
    inside, radius, angle = fan_geometry(size, half_angle)
    db = US_DB[labels].astype(np.float32)
    db += rng.uniform(-2.0, 2.0) + 2.0 * smooth_field(rng, size, 0.05 * size)
    unit = 3.0 * log_uniform(rng, *knobs.cnr_range)
    db = _apply(db, effects, unit, US_DB)
    att = US_ATTENUATION[labels]
    for e in effects:
        if e.attenuation:
            att = att + e.weight * e.attenuation
    shadow = _ray_integral(att, radius, angle, half_angle)
    depth = (radius - FAN_RADII[0]) / (FAN_RADII[1] - FAN_RADII[0])
    db -= np.clip(shadow, -6.0, 25.0) + rng.uniform(3.0, 10.0) * depth
    amplitude = np.power(10.0, db / 20.0).astype(np.float32)
    # Speckle: complex scatterers blurred by an anisotropic point-spread function.
    s = size / 224.0
    psf = (1.2 * s, rng.uniform(3.0, 5.0) * s)  # (axial, lateral) in pixels
    re, im = (ndimage.gaussian_filter(
        amplitude * rng.standard_normal((size, size)).astype(np.float32), psf) for _ in range(2))
    envelope = np.sqrt(re * re + im * im)
    ref = float(np.percentile(envelope[inside], 99.9)) if inside.any() else 1.0
    dynamic_range = rng.uniform(45.0, 60.0)
    log_img = 20.0 * np.log10(envelope / max(ref, 1e-12) + 1e-12)
    out = np.rint(255.0 * np.clip((log_img + dynamic_range) / dynamic_range, 0.0, 1.0))
    out[~inside] = 0
    out = out.astype(np.uint8)
    if rng.random() < knobs.us_text_rate:
        burn_in_text(out, rng)
    return out


def burn_in_text(image: np.ndarray, rng: np.random.Generator) -> None:
    """Bright glyph-like blocks top-left, like scanner annotations (class-independent)."""
    size = image.shape[0]
    h = max(2, int(0.025 * size))
    for row in range(int(rng.integers(1, 4))):
        x, y = int(0.03 * size), int(0.03 * size) + row * 2 * h
        for _ in range(int(rng.integers(3, 9))):
            w = max(1, int(rng.uniform(0.4, 1.0) * h))
            image[y:y + h, x:x + w] = int(rng.integers(200, 256))
            x += w + max(1, h // 2)
            if x > 0.35 * size:
                break
