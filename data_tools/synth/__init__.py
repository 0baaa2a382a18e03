"""Synthetic RadImageNet-like data: raw release tree, CSVs, MedMNIST npz files
and folder-per-class downstream sets, reproducible from a seed.

Module map, in the order an image is made:
``taxonomy`` (class list, long-tail counts) → ``plan`` (patients, splits, stems, defects) →
``anatomy``/``anatomy_us`` (organ templates on a ``canvas``) → ``lesions``/``lesion_shapes``
(the class signal) → ``formation`` (CT/MR/US physics; ``xray`` for radiographs) →
``writers`` (atomic PNG/CSV/npz). ``generate`` runs it all; ``companions`` adds the extras.
"""

from __future__ import annotations

from .companions import (
                         FOLDER_PRESETS,
                         NPZ_PRESETS,
                         CompanionError,
                         write_folder_dataset,
                         write_medmnist_npz,
)
from .generate import GeneratorError, generate_radimagenet, read_meta
from .settings import REALISM_ON, Realism, RenderKnobs
from .taxonomy import ClassKey, TaxonomyError, default_classes, select_classes

__all__ = [
    "FOLDER_PRESETS", "NPZ_PRESETS", "REALISM_ON", "ClassKey", "CompanionError",
    "GeneratorError", "Realism", "RenderKnobs", "TaxonomyError", "default_classes",
    "generate_radimagenet", "read_meta", "select_classes", "write_folder_dataset",
    "write_medmnist_npz",
]
