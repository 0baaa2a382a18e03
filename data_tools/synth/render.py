"""One image from one (class, patient, index): anatomy → lesion → modality → uint8.

The random streams are keyed by names (rng.stream), so an image depends only on the global
seed, its class key, its patient and its index: never on the order of generation or on which
worker draws it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from .anatomy import TEMPLATES, template_name
from .anatomy_us import US_TEMPLATES, us_template_name
from .canvas import Canvas, smooth_field
from .formation import form_ct, form_mr, form_us
from .lesion_shapes import LesionPainter, distractor
from .lesions import Recipe
from .rng import stream
from .settings import RenderKnobs


@dataclass(frozen=True)
class Scene:
    """What to draw: modality, organ template and the lesion recipes (none for normal)."""

    modality: str
    organ: str
    recipes: tuple[Recipe, ...] = ()


def render(scene: Scene, knobs: RenderKnobs, *, seed: int, key: str, patient: int,
           index: int) -> np.ndarray:
    """An (S, S) uint8 image. ``key`` names the random streams (the class key in RadImageNet)."""
    patient_rng = stream(seed, key, "patient", patient)
    image_rng = stream(seed, key, "image", index)
    lesion_rng = stream(seed, key, "lesion", patient)
    size = knobs.size
    if scene.modality == "US":
        canvas = Canvas(size, patient_rng, image_rng, pose=0.3)
        US_TEMPLATES[us_template_name(scene.organ)](canvas)
    else:
        canvas = Canvas(size, patient_rng, image_rng)
        hints = {k: v for r in scene.recipes for k, v in r.hints}
        TEMPLATES[template_name(scene.organ)](canvas, hints)
    painter = LesionPainter(canvas, scene.modality, scene.organ, knobs.min_lesion_px, lesion_rng)
    effects = [e for r in scene.recipes for e in painter.paint(r)]
    if image_rng.random() < knobs.distractor_rate:
        effects += distractor(painter, image_rng)
    if scene.modality == "CT":
        window = "lung" if template_name(scene.organ) == "lung" else "abd"
        return form_ct(canvas.labels, effects, image_rng, knobs, window)
    if scene.modality == "MR":
        return form_mr(canvas.labels, effects, image_rng, knobs)
    return form_us(canvas.labels, effects, image_rng, knobs)


def near_duplicate(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The neighbouring slice: the same picture under a sub-pixel smooth elastic warp."""
    size = image.shape[0]
    amp = 0.6
    dy = amp * smooth_field(rng, size, 0.15 * size)
    dx = amp * smooth_field(rng, size, 0.15 * size)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    warped = ndimage.map_coordinates(image.astype(np.float32), [yy + dy, xx + dx], order=1,
                                     mode="nearest")
    out = np.rint(warped).astype(np.uint8)
    out[image == 0] = 0  # keep padding and fan borders exactly black
    if np.array_equal(out, image):  # tiny images can survive a sub-pixel warp unchanged
        out[size // 2, size // 2] = np.uint8((int(out[size // 2, size // 2]) + 1) % 256)
    return out
