"""Companion datasets: MedMNIST-format npz files and folder-per-class downstream sets.

MedMNIST (v2 and MedMNIST+): ``FLAG.npz`` at 28 px, ``FLAG_<size>.npz`` otherwise, six keys
``{train,val,test}_{images,labels}``, uint8 images (N, H, W) or (N, H, W, 3), labels (N, 1).
Presets mimic OrganA/C/S (11 CT organ crops), Breast (binary US) and Pneumonia (binary
chest X-ray). Counts default to a fraction of the official ones; pgnm reads these files with
its own loader, since the ``medmnist`` package asserts the official counts.

Downstream sets (``DIR/<name>/<split>/<class>/*.png``) mimic the few-shot tasks: BUSI
(``benign/ malignant/ normal/``), brain-tumour MRI (``glioma/ meningioma/ notumor/
pituitary/``), brain MRI (``yes/ no/``) and pediatric pneumonia (``NORMAL/ PNEUMONIA/``),
with file names in the style of the real sets (spaces and parentheses included).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from .anatomy import abd, lung
from .canvas import Canvas
from .formation import form_ct
from .lesions import Recipe
from .render import Scene, render
from .rng import stream
from .settings import SPLITS, RenderKnobs
from .writers import write_npz, write_png
from .xray import render_chest_xr

ORGAN_LABELS = ("bladder", "femur-left", "femur-right", "heart", "kidney-left",
                "kidney-right", "liver", "lung-left", "lung-right", "pancreas", "spleen")


@dataclass(frozen=True)
class NpzPreset:
    kind: str                          # "organ" | "breast" | "pneumonia"
    classes: tuple[str, ...]
    official: tuple[int, int, int]     # MedMNIST v3 train/val/test counts
    probs: tuple[float, ...] | None = None  # class frequencies (None: uniform)


NPZ_PRESETS = {
    "organamnist": NpzPreset("organ", ORGAN_LABELS, (34561, 6491, 17778)),
    "organcmnist": NpzPreset("organ", ORGAN_LABELS, (12975, 2392, 8216)),
    "organsmnist": NpzPreset("organ", ORGAN_LABELS, (13932, 2452, 8827)),
    "breastmnist": NpzPreset("breast", ("malignant", "normal+benign"), (546, 78, 156),
                             (0.27, 0.73)),
    "pneumoniamnist": NpzPreset("pneumonia", ("normal", "pneumonia"), (4708, 524, 624),
                                (0.27, 0.73)),
}

# Lesions of the downstream tasks, fixed by hand (not hashed: their meaning is the label).
BENIGN = Recipe("focal", "gland", -1.0, 1.0, (0.5, 0.5), 1.2, 0.0)
MALIGNANT = Recipe("spiculated", "gland", -1.0, 1.0, (0.5, 0.5), 1.3, 0.0)
GLIOMA = (Recipe("spiculated", "wm", 1.0, 1.2, (0.5, 0.4), 1.0, 0.0),
          Recipe("edema", "wm", 1.0, 1.3, (0.5, 0.4), 1.0, 0.0))
MENINGIOMA = (Recipe("focal", "csf", 1.0, 1.3, (0.5, 0.15), 1.2, 0.0),)
PITUITARY = (Recipe("focal", "pituitary", 1.0, 1.5, (0.5, 0.5), 1.2, 0.0),)


class CompanionError(ValueError):
    pass


# -- one image per (kind, label) ---------------------------------------------------------------
def _organ_crop(label: int, size: int, seed: int, key: str, index: int) -> np.ndarray:
    """A CT slice rendered at 2× (at least 128 px) and cropped around one organ."""
    name = ORGAN_LABELS[label]
    base = max(128, 2 * size)
    knobs = RenderKnobs(size=base)
    prng, irng = stream(seed, key, "patient", index // 3), stream(seed, key, "image", index)
    canvas = Canvas(base, prng, irng)
    if name in ("heart", "lung-left", "lung-right"):
        lung(canvas, {})
        region = {"heart": "heart"}.get(name, "lung")
    elif name in ("bladder", "femur-left", "femur-right"):
        abd(canvas, {"level": "pelvis"})
        region = "bladder" if name == "bladder" else "marrow"
    else:
        abd(canvas, {"level": "upper"})
        region = name.split("-")[0]
    mask = canvas.host(region)
    body_cols = np.flatnonzero((canvas.labels != 0).any(axis=0))
    mid = (body_cols[0] + body_cols[-1]) / 2 if body_cols.size else base / 2
    cols = np.arange(base)[None, :]
    if name.endswith("-left"):      # the patient's left is the image's right
        mask &= cols > mid + (0.15 * base if name.startswith("femur") else 0)
    elif name.endswith("-right"):
        mask &= cols < mid - (0.15 * base if name.startswith("femur") else 0)
    image = form_ct(canvas.labels, [], irng, knobs, "abd")
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return _resize(image, size)
    side = max(np.ptp(ys), np.ptp(xs)) * irng.uniform(1.2, 1.5) + 4
    cy = (ys.min() + ys.max()) / 2 + irng.uniform(-0.08, 0.08) * side
    cx = (xs.min() + xs.max()) / 2 + irng.uniform(-0.08, 0.08) * side
    box = (int(cx - side / 2), int(cy - side / 2), int(cx + side / 2), int(cy + side / 2))
    crop = Image.fromarray(image).crop(box)  # zero-padded where the box leaves the image
    return np.asarray(crop.resize((size, size), Image.Resampling.BILINEAR))


def _resize(image: np.ndarray, size: int) -> np.ndarray:
    if image.shape[0] == size:
        return image
    return np.asarray(Image.fromarray(image).resize((size, size), Image.Resampling.LANCZOS))


def _sample(kind: str, label: int, size: int, seed: int, key: str, index: int) -> np.ndarray:
    if kind == "organ":
        return _organ_crop(label, size, seed, key, index)
    # Render above the target size and shrink, as MedMNIST shrinks larger sources; for US
    # this also averages speckle the way a real downsampled scan does.
    knobs = RenderKnobs(size=max(128, size))
    if kind == "pneumonia":
        img = render_chest_xr(knobs, seed=seed, key=key, patient=index, index=index,
                              pneumonia=label == 1)
    else:  # breast: 0 malignant, 1 normal or benign
        benign_or_normal = (BENIGN,) if stream(seed, key, "variant", index).random() < 0.6 else ()
        scene = Scene("US", "breast", (MALIGNANT,) if label == 0 else benign_or_normal)
        img = render(scene, knobs, seed=seed, key=key, patient=index, index=index)
    return _resize(img, size)


# -- MedMNIST npz --------------------------------------------------------------------------------
def npz_name(flag: str, size: int) -> str:
    return f"{flag}.npz" if size == 28 else f"{flag}_{size}.npz"


def write_medmnist_npz(out_dir: str | Path, flag: str, sizes: tuple[int, ...] = (28,),
                       counts: tuple[int, int, int] | None = None, scale: float = 0.02,
                       seed: int = 0, rgb: bool = False) -> list[Path]:
    """Write ``FLAG[_size].npz`` for each size; returns the paths written.

    ``counts`` (train, val, test) defaults to ``scale`` × the official counts (at least two
    images per class and split). Each image is drawn once at the largest size and resized
    for the smaller ones, as MedMNIST+ resizes one source image to every size.
    """
    if flag not in NPZ_PRESETS:
        raise CompanionError(f"--medmnist-npz {flag!r}: choose one of {', '.join(NPZ_PRESETS)}")
    preset = NPZ_PRESETS[flag]
    bad = [s for s in sizes if s < 8]
    if bad or not sizes:
        raise CompanionError(f"--sizes must be positive sizes of at least 8 px (got {sizes})")
    n_cls = len(preset.classes)
    if counts is None:
        counts = tuple(max(2 * n_cls, round(scale * n)) for n in preset.official)  # type: ignore
    big = max(sizes)
    arrays: dict[int, dict[str, np.ndarray]] = {s: {} for s in sizes}
    for split, n in zip(SPLITS, counts):
        key = f"medmnist/{flag}/{split}"
        rng = stream(seed, key, "labels")
        labels = rng.choice(n_cls, size=n, p=preset.probs) if preset.probs else \
            rng.permutation(np.arange(n) % n_cls)
        images = {s: [] for s in sizes}
        for i, label in enumerate(labels):
            base = _sample(preset.kind, int(label), big, seed, key, i)
            for s in sizes:
                images[s].append(_resize(base, s))
        for s in sizes:
            stack = np.stack(images[s]).astype(np.uint8) if n else np.zeros((0, s, s), np.uint8)
            if rgb:
                stack = np.repeat(stack[..., None], 3, axis=-1)
            arrays[s][f"{split}_images"] = stack
            arrays[s][f"{split}_labels"] = labels.astype(np.uint8).reshape(-1, 1)
    out_dir = Path(out_dir)
    paths = []
    for s in sizes:
        path = out_dir / npz_name(flag, s)
        write_npz(path, arrays[s])
        paths.append(path)
    return paths


# -- folder-per-class downstream sets ------------------------------------------------------------
FOLDER_PRESETS: dict[str, tuple[str, ...]] = {
    "busi": ("benign", "malignant", "normal"),
    "brain_tumor": ("glioma", "meningioma", "notumor", "pituitary"),
    "brain_mri": ("no", "yes"),
    "pneumonia_xr": ("NORMAL", "PNEUMONIA"),
}


def _file_name(name: str, cls: str, split: str, i: int) -> str:
    if name == "busi":
        return f"{cls} ({i + 1}).png"
    if name == "brain_tumor":
        return f"{'Tr' if split == 'train' else 'Te'}-{cls[:2]}_{i:04d}.png"
    if name == "brain_mri":
        return f"{'Y' if cls == 'yes' else 'N'}{i + 1}.png"
    if cls == "PNEUMONIA":
        return f"person{i + 1}_bacteria_{i + 1}.png"
    return f"IM-{i + 1:04d}-0001.png"


def _folder_image(name: str, cls: str, size: int, seed: int, key: str, i: int) -> np.ndarray:
    knobs = RenderKnobs(size=size)
    if name == "pneumonia_xr":
        return render_chest_xr(knobs, seed=seed, key=key, patient=i, index=i,
                               pneumonia=cls == "PNEUMONIA")
    if name == "busi":
        recipes = {"benign": (BENIGN,), "malignant": (MALIGNANT,), "normal": ()}[cls]
        scene = Scene("US", "breast", recipes)
    else:
        tumours = {"glioma": GLIOMA, "meningioma": MENINGIOMA, "pituitary": PITUITARY}
        if cls == "yes":
            options = list(tumours.values())
            recipes = options[int(stream(seed, key, "variant", i).integers(len(options)))]
        else:
            recipes = tumours.get(cls, ())
        scene = Scene("MR", "brain", recipes)
    return render(scene, knobs, seed=seed, key=key, patient=i, index=i)


def write_folder_dataset(out_dir: str | Path, name: str,
                         per_class: int | tuple[int, int, int] = (20, 5, 5), size: int = 224,
                         seed: int = 0, rgb: bool = False) -> Path:
    """Write ``out_dir/<name>/<split>/<class>/*.png``; returns ``out_dir/<name>``.

    ``per_class``: images per class for (train, val, test), or one number split 0.75/0.10/0.15.
    Every image is its own synthetic patient, so no patient crosses splits.
    """
    if name not in FOLDER_PRESETS:
        raise CompanionError(f"--downstream {name!r}: choose one of {', '.join(FOLDER_PRESETS)}")
    if isinstance(per_class, int):
        n_val, n_test = round(0.10 * per_class), round(0.15 * per_class)
        per_class = (per_class - n_val - n_test, n_val, n_test)
    root = Path(out_dir) / name
    for split, n in zip(SPLITS, per_class):
        for cls in FOLDER_PRESETS[name]:
            key = f"downstream/{name}/{split}/{cls}"
            for i in range(n):
                image = _folder_image(name, cls, size, seed, key, i)
                write_png(root / split / cls / _file_name(name, cls, split, i), image, rgb)
    return root
