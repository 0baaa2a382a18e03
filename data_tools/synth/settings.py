"""Generator settings: rendering knobs, realism switches and split/plan options.

Everything here is recorded in ``synthetic_meta.json`` so a dataset says how it was made.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

GENERATOR_NAME = "pgnm-synth-radimagenet"
GENERATOR_VERSION = "1.0.0"


@dataclass(frozen=True)
class RenderKnobs:
    """How images look; none of these depends on the class (no global-intensity shortcuts)."""

    size: int = 224
    rgb: bool = False
    # Lesion contrast-to-noise ratio, drawn log-uniformly per image: the global difficulty.
    # a first prototype used (1, 4); (1.25, 5) is calibrated with synth_learnability so
    # fewer lesions vanish into noise at 64 px while top-1 stays well below 0.9.
    cnr_range: tuple[float, float] = (1.25, 5.0)
    min_lesion_px: float = 2.0      # smallest lesion radius at the render size
    distractor_rate: float = 0.3    # benign blobs in any class of an organ
    sequence_mix: float = 0.5       # fraction of MR images that are T2-weighted
    window_jitter: float = 1.0      # scales the CT window level/width jitter
    us_text_rate: float = 0.3       # burned-in annotation in US images

    def __post_init__(self) -> None:
        lo, hi = self.cnr_range
        if not 0 < lo <= hi:
            raise ValueError(f"cnr_range must satisfy 0 < low <= high (got {self.cnr_range})")
        if self.size < 16:
            raise ValueError(f"size must be at least 16 px (got {self.size})")
        for name in ("distractor_rate", "sequence_mix", "us_text_rate"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1] (got {getattr(self, name)})")


@dataclass(frozen=True)
class Realism:
    """Defects of the real release (BMEII-AI issue #17), off unless asked for."""

    dup_cross_class_rate: float = 0.0   # same bytes and stem in a second class of the organ
    near_dup_rate: float = 0.0          # neighbouring slice: stem + 1, slight elastic change
    blank_rate: float = 0.0             # all-zero image
    label_noise: float = 0.0            # image drawn from another class of the same organ

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if not 0.0 <= value <= 0.5:
                raise ValueError(f"{name} must be in [0, 0.5] (got {value})")


# The rates --realism turns on.
REALISM_ON = Realism(dup_cross_class_rate=0.002, near_dup_rate=0.01, blank_rate=0.0005)

SPLIT_DEFAULT = (0.75, 0.10, 0.15)
SPLIT_LIKE_REAL = (0.88, 0.04, 0.08)
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class PlanSettings:
    """How many images, in which classes, patients and splits."""

    seed: int = 0
    per_class: int | None = None
    total: int | None = None
    balanced: bool = False
    split: tuple[float, float, float] = SPLIT_DEFAULT
    max_patient_images: int = 8
    modality_shares: dict[str, float] | None = None
    realism: Realism = field(default_factory=Realism)

    def __post_init__(self) -> None:
        if (self.per_class is None) == (self.total is None):
            raise ValueError("give exactly one of per_class (--images-per-class) "
                             "or total (--total)")
        if (self.per_class or 1) < 1 or (self.total if self.total is not None else 1) < 1:
            raise ValueError("image counts must be positive")
        if len(self.split) != 3 or min(self.split) < 0 or abs(sum(self.split) - 1.0) > 1e-6:
            raise ValueError(f"split ratios must be three non-negative numbers summing to 1 "
                             f"(got {self.split})")
        if self.max_patient_images < 1:
            raise ValueError("max_patient_images must be at least 1")
