"""The generation plan: every file, its class, patient, split, stem and realism defect.

Planning is cheap and happens in the main process; rendering is the expensive part and runs
in workers. Every decision is drawn from a stream keyed by (seed, class key, purpose), so the
plan, and with it every file name and split, is identical for any worker count.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from .rng import stream
from .settings import SPLITS, PlanSettings
from .taxonomy import ClassKey, class_counts, stem_prefix


@dataclass(frozen=True)
class Output:
    """One file of the release and its CSV row."""

    relpath: str   # from the output root: radiology_ai/CT/abd/normal/abd-normal000017.png
    label: str     # the CSV label of the folder's class
    split: str


@dataclass(frozen=True)
class Job:
    """One rendered picture and every file that carries it."""

    cls: ClassKey                 # folder class (seeds are keyed by it)
    content: ClassKey             # class whose lesion is drawn (differs under label noise)
    patient: int
    index: int
    blank: bool
    original: Output
    duplicates: tuple[Output, ...] = ()   # same bytes in another class folder
    near_dup: Output | None = None        # neighbouring slice, stem + 1


@dataclass
class Plan:
    jobs: list[Job]
    counts: dict[ClassKey, int]            # rendered pictures per class (before extras)
    patients: dict[ClassKey, int] = field(default_factory=dict)

    def outputs(self) -> list[Output]:
        out: list[Output] = []
        for job in self.jobs:
            out.append(job.original)
            if job.near_dup is not None:
                out.append(job.near_dup)
            out.extend(job.duplicates)
        return out

    def file_counts(self) -> dict[str, dict[str, int]]:
        """CSV rows per label and split: what the three CSV files must contain."""
        table: dict[str, Counter] = {}
        for o in self.outputs():
            table.setdefault(o.label, Counter())[o.split] += 1
        return {label: {s: c.get(s, 0) for s in SPLITS} for label, c in sorted(table.items())}


def patient_groups(n_images: int, max_size: int, min_ratio: float, seed: int,
                   key: str) -> list[int]:
    """Sizes of synthetic patients covering ``n_images``.

    Patients hold 1..max_size images, but a small class gets smaller patients (at most
    ``n_images * min_ratio``) so that even its smallest split can receive a patient.
    """
    cap = max(1, min(max_size, int(n_images * min_ratio)))
    rng = stream(seed, key, "patients")
    sizes: list[int] = []
    left = n_images
    while left > 0:
        s = min(left, int(rng.integers(1, cap + 1)))
        sizes.append(s)
        left -= s
    return sizes


def assign_splits(sizes: list[int], ratios: tuple[float, float, float], seed: int,
                  key: str) -> list[str]:
    """A split per patient, keeping each class's images near the target ratios.

    Patients are visited in a shuffled order and each goes to the split furthest below its
    target image count. A patient is never divided, so the split is grouped by patient.
    """
    rng = stream(seed, key, "split")
    total = sum(sizes)
    targets = [r * total for r in ratios]
    filled = [0, 0, 0]
    out = [""] * len(sizes)
    for p in rng.permutation(len(sizes)):
        best = max(range(3), key=lambda i: (targets[i] - filled[i], -i))
        out[p] = SPLITS[best]
        filled[best] += sizes[p]
    return out


def build_plan(classes: list[ClassKey], settings: PlanSettings) -> Plan:
    counts = class_counts(classes, total=settings.total, per_class=settings.per_class,
                          balanced=settings.balanced, modality_shares=settings.modality_shares)
    by_organ: dict[str, list[ClassKey]] = {}
    for c in classes:
        by_organ.setdefault(c.organ_key, []).append(c)
    us_classes = [c for c in classes if c.modality == "US"]
    realism = settings.realism
    sequence: Counter = Counter()   # next file number per (modality, organ); US is one series
    jobs: list[Job] = []
    plan = Plan(jobs=jobs, counts=counts)
    seed = settings.seed
    for c in classes:
        sizes = patient_groups(counts[c], settings.max_patient_images,
                               min(r for r in settings.split if r > 0), seed, c.key)
        splits = assign_splits(sizes, settings.split, seed, c.key)
        plan.patients[c] = len(sizes)
        # A duplicate lands in a sibling folder: another class of the organ, or for US
        # (organ = label) another US organ, as in BMEII-AI issue #17.
        siblings = [s for s in (us_classes if c.modality == "US" else by_organ[c.organ_key])
                    if s != c]
        series = ("US",) if c.modality == "US" else (c.modality, c.organ)
        index = 0
        for patient, (n, split) in enumerate(zip(sizes, splits)):
            for _ in range(n):
                rng = stream(seed, c.key, "realism", index)
                u_blank, u_near, u_dup, u_noise = rng.random(4)
                blank = bool(u_blank < realism.blank_rate)
                content = c
                if (not blank and c.modality != "US" and u_noise < realism.label_noise
                        and siblings):
                    content = siblings[int(rng.integers(len(siblings)))]
                seq = sequence[series] + 1
                sequence[series] += 1
                stem = f"{stem_prefix(c, patient)}{seq:06d}"
                original = Output(f"{c.folder}/{stem}.png", c.label, split)
                near = None
                if not blank and u_near < realism.near_dup_rate:
                    sequence[series] += 1
                    near_stem = f"{stem_prefix(c, patient)}{seq + 1:06d}"
                    near = Output(f"{c.folder}/{near_stem}.png", c.label, split)
                dups: tuple[Output, ...] = ()
                if u_dup < realism.dup_cross_class_rate and siblings:
                    other = siblings[int(rng.integers(len(siblings)))]
                    dups = (Output(f"{other.folder}/{stem}.png", other.label, split),)
                jobs.append(Job(c, content, patient, index, blank, original, dups, near))
                index += 1
    return plan
