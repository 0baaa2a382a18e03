"""Tissue labels and their appearance in each modality.

One table, so every modality sees the same anatomy: CT Hounsfield units, MR (T1, T2) signal
in [0, 1], ultrasound echogenicity in dB relative to soft tissue, and an X-ray attenuation
derived from HU.
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np


class T(IntEnum):
    BG = 0        # outside the body: air for CT/MR
    AIR = 1       # gas inside the body (bowel, airways)
    FAT = 2
    SOFT = 3
    MUSCLE = 4
    SKIN = 5
    LIVER = 6
    SPLEEN = 7
    KIDNEY = 8
    SINUS = 9     # renal sinus fat
    PANCREAS = 10
    ADRENAL = 11
    BOWEL = 12
    FLUID = 13    # urine, bile, joint fluid, ascites
    VESSEL = 14   # contrast-enhanced (CT), flow void (MR), anechoic (US)
    MARROW = 15
    BONE = 16     # cortical bone
    LUNG = 17
    HEART = 18
    CSF = 19
    GM = 20
    WM = 21
    CARTILAGE = 22
    FIBRO = 23    # tendon, ligament, meniscus, labrum
    DISC = 24
    CORD = 25
    THYROID = 26
    GLAND = 27    # pituitary, prostate, breast glandular tissue
    UTERUS = 28
    OVARY = 29
    TESTIS = 30
    BLOOD = 31    # subacute haematoma


#                 HU     T1     T2    US dB
_PROPS = {
    T.BG:        (-1000, 0.00, 0.00, -60.0),
    T.AIR:       (-1000, 0.00, 0.00, 14.0),
    T.FAT:       (-100, 0.90, 0.75, 4.0),
    T.SOFT:      (40, 0.40, 0.35, 0.0),
    T.MUSCLE:    (45, 0.35, 0.25, -7.0),
    T.SKIN:      (45, 0.40, 0.40, 8.0),
    T.LIVER:     (60, 0.50, 0.30, 3.0),
    T.SPLEEN:    (50, 0.45, 0.45, 2.0),
    T.KIDNEY:    (150, 0.40, 0.55, -3.0),
    T.SINUS:     (-60, 0.85, 0.70, 12.0),
    T.PANCREAS:  (45, 0.55, 0.35, 5.0),
    T.ADRENAL:   (35, 0.40, 0.40, 2.0),
    T.BOWEL:     (35, 0.40, 0.50, 1.0),
    T.FLUID:     (5, 0.12, 0.95, -35.0),
    T.VESSEL:    (160, 0.05, 0.05, -35.0),
    T.MARROW:    (250, 0.75, 0.55, 14.0),
    T.BONE:      (700, 0.02, 0.02, 14.0),
    T.LUNG:      (-850, 0.02, 0.02, 14.0),
    T.HEART:     (40, 0.40, 0.40, -5.0),
    T.CSF:       (5, 0.15, 0.95, -35.0),
    T.GM:        (35, 0.45, 0.60, 0.0),
    T.WM:        (28, 0.65, 0.40, 0.0),
    T.CARTILAGE: (80, 0.45, 0.55, -20.0),
    T.FIBRO:     (80, 0.04, 0.04, 6.0),
    T.DISC:      (80, 0.40, 0.75, 0.0),
    T.CORD:      (35, 0.50, 0.45, 0.0),
    T.THYROID:   (70, 0.45, 0.45, 8.0),
    T.GLAND:     (35, 0.50, 0.45, 5.0),
    T.UTERUS:    (70, 0.45, 0.50, 2.0),
    T.OVARY:     (40, 0.40, 0.60, 0.0),
    T.TESTIS:    (40, 0.50, 0.60, 4.0),
    T.BLOOD:     (65, 0.70, 0.60, -10.0),
}

_TABLE = np.array([_PROPS[T(i)] for i in range(len(T))], dtype=np.float32)
HU = _TABLE[:, 0].copy()
T1 = _TABLE[:, 1].copy()
T2 = _TABLE[:, 2].copy()
US_DB = _TABLE[:, 3].copy()
# Linear attenuation relative to water, for the projection (X-ray-like) images.
MU = np.clip((HU + 1000.0) / 1000.0, 0.0, None).astype(np.float32)

# Tissues whose CT value a window can saturate: lesions there are drawn as lytic instead.
BONY = (T.BONE, T.MARROW)
