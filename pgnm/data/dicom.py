"""DICOM files as :class:`~pgnm.data.shards.Record`\\ s: pixels, value scaling and labels.

Each step exists because of what the DICOM standard lets a file hold:

* **Decoding** (PS3.5 section 8 and 10, Annex A): the transfer syntax says how Pixel Data is
  encoded. A syntax no installed pydicom plugin decodes (JPEG-LS, lossless JPEG without
  pylibjpeg or GDCM) or a file without pixel data is skipped with the reason, never a traceback:
  an archive export mixes syntaxes and SOP classes, and one of them must not stop the rest.
* **Modality LUT** (PS3.3 C.11.1; Rescale Slope and Intercept): stored values become modality
  units (CT: Hounsfield units), the scale every window and CT preset is defined on.
* **8-bit**: a VOI window (PS3.3 C.11.2): the file's own VOI LUT or Window Center/Width (what the
  acquiring site chose to show), a named CT preset, or a percentile window where neither fits.
  MONOCHROME1 (PS3.3 C.7.6.3.1.2, minimum shown white) is inverted: bright means dense in the set.
* **16-bit**: the modality values themselves plus an offset (32768 when any value can be
  negative, as CT's can), for loaders that window at training time.
* **Colour** (RGB, YBR_FULL, YBR_FULL_422, PALETTE COLOR; PS3.3 C.7.6.3.1.2) becomes RGB and
  then grey the way every other source does (PIL "L"), so a sample is grey whatever its origin.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image
from pydicom import Dataset, dcmread
from pydicom import pixels as dicom_pixels
from pydicom.errors import InvalidDicomError

from pgnm.data.listing import labelled_files
from pgnm.data.manifest import ClassInfo
from pgnm.data.shards import Record, ShardingError
from pgnm.data.sources import Collected


class Window(Enum):
    """How 8-bit output is windowed; a CT preset applies to CT files, others fall back to FILE."""
    FILE = "file"  # the file's VOI LUT or Window Center/Width; a percentile window without one
    PERCENTILE = "percentile"  # always the percentile window
    BRAIN, SUBDURAL, LUNG, MEDIASTINUM = "brain", "subdural", "lung", "mediastinum"
    ABDOMEN, LIVER, BONE, SOFT_TISSUE = "abdomen", "liver", "bone", "soft_tissue"


# (center, width) in HU: the usual radiology reading windows (e.g. Radiopaedia's "Windowing (CT)")
CT_PRESETS: dict[Window, tuple[float, float]] = {
    Window.BRAIN: (40, 80), Window.SUBDURAL: (80, 200), Window.LUNG: (-600, 1500),
    Window.MEDIASTINUM: (50, 350), Window.ABDOMEN: (50, 400), Window.LIVER: (30, 150),
    Window.BONE: (400, 1800), Window.SOFT_TISSUE: (40, 400),
}  # fmt: skip


class Frames(Enum):
    MIDDLE = "middle"  # one sample per file: the middle frame of a cine loop or a volume
    ALL = "all"  # one sample per frame


@dataclass(frozen=True)
class DicomOptions:
    window: Window = Window.FILE
    percentiles: tuple[float, float] = (0.5, 99.5)  # of a frame's modality values: 0 and 255
    frames: Frames = Frames.MIDDLE
    bit_depth: int = 8  # 16: modality values, no window

    def __post_init__(self) -> None:
        low, high = self.percentiles
        if not 0 <= low < high <= 100:
            raise ValueError(f"--percentiles must satisfy 0 <= low < high <= 100, got {low} {high}")
        if self.bit_depth not in (8, 16):
            raise ValueError(f"--bit-depth must be 8 or 16, got {self.bit_depth}")


class Undecodable(Exception):
    """Why a file's pixels cannot be read here; the reader skips the file with this reason."""


class Rendered(NamedTuple):
    index: int  # of the frame, from 0
    pixels: np.ndarray  # uint8 (H, W), or uint16 (H, W) in 16-bit mode
    clipped: bool  # 16-bit: some value + offset fell outside 0..65535


MONOCHROME = ("MONOCHROME1", "MONOCHROME2")
SIGNED_OFFSET = 32768  # 16-bit: int16's range moved onto uint16's

# ----------------------------------------------------------------------------- pixels


def frame_count(ds: Dataset) -> int:
    value = ds.get("NumberOfFrames")
    try:  # Number of Frames (PS3.3 C.7.6.6) is an IS string, which can be malformed
        return max(int(value or 1), 1)
    except (TypeError, ValueError):
        raise Undecodable(f"Number of Frames {value!r} is not a number") from None


def decode_frame(ds: Dataset, index: int) -> tuple[np.ndarray, str]:
    """One frame as stored, and the photometric interpretation the decoder left it in (a JPEG
    2000 decoder has already turned YBR_RCT into RGB; pydicom says so)."""
    uid = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if uid is None:
        raise Undecodable("no Transfer Syntax UID in the file meta: the pixel encoding is unknown")
    try:
        decoder = dicom_pixels.get_decoder(uid)
    except NotImplementedError:
        raise Undecodable(f"transfer syntax {uid} ({uid.name}): pydicom has no decoder") from None
    if not decoder.is_available:
        plugins = ", ".join(d.split(" - ")[0] for d in decoder.missing_dependencies)
        raise Undecodable(f"transfer syntax {uid} ({uid.name}) cannot be decoded here: no "
                          f"decoding plugin installed (pydicom could use {plugins})")
    try:
        pixels, meta = decoder.as_array(ds, index=index, as_rgb=False)
    except Exception as err:  # each plugin raises its own types; pydicom wraps some
        why = " ".join(str(err).split())[:300]
        raise Undecodable(f"transfer syntax {uid} ({uid.name}): decoding failed ({why})") from None
    return pixels, str(meta["photometric_interpretation"])


def modality_values(pixels: np.ndarray, ds: Dataset) -> np.ndarray:
    """Stored values in modality units (PS3.3 C.11.1), as float64: windows are defined there."""
    return np.asarray(dicom_pixels.apply_modality_lut(pixels, ds), dtype=np.float64)


def modality_range(ds: Dataset) -> tuple[float, float]:
    """The values the Modality LUT can produce, from the header alone (PS3.3 C.7.6.3 Bits
    Stored and Pixel Representation, C.11.1): the 16-bit offset is chosen before any decoding."""
    if ds.get("PhotometricInterpretation") not in MONOCHROME:
        return 0.0, 255.0  # colour becomes 8-bit grey
    if ds.get("ModalityLUTSequence"):
        return 0.0, float(2 ** int(ds.ModalityLUTSequence[0].LUTDescriptor[2]) - 1)
    bits = int(ds.get("BitsStored") or 16)
    signed = ds.get("PixelRepresentation") == 1
    low, high = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
    if "RescaleSlope" in ds and "RescaleIntercept" in ds:  # the pair pydicom applies
        slope, intercept = float(ds.RescaleSlope), float(ds.RescaleIntercept)
        low, high = sorted((low * slope + intercept, high * slope + intercept))
    return float(low), float(high)


def _scale(values: np.ndarray, low: float, high: float) -> np.ndarray:
    if high <= low:  # a single value: a blank image, which the writer's report lists
        return np.zeros(values.shape, np.uint8)
    return np.rint(np.clip((values - low) / (high - low), 0.0, 1.0) * 255).astype(np.uint8)


def _file_voi(values: np.ndarray, ds: Dataset) -> np.ndarray | None:
    """The file's VOI (PS3.3 C.11.2) through pydicom, its output range mapped onto 0..255; None
    when the file has no usable one. Like pydicom, a VOI LUT is preferred to a window."""
    lut = ds.get("VOILUTSequence")
    if lut and lut[0].get("LUTDescriptor") and lut[0].get("LUTData") is not None:
        entries, first = int(lut[0].LUTDescriptor[0]) or 2**16, int(lut[0].LUTDescriptor[1])
        output = dicom_pixels.apply_voi(np.arange(first, first + entries), ds)  # all it yields
        shown = dicom_pixels.apply_voi_lut(np.rint(values).astype(np.int64), ds)  # int inputs
    elif ds.get("WindowCenter") is not None and ds.get("WindowWidth") is not None:
        try:  # pydicom's output range (PS3.3 C.11.2.1.2): probe the window at both extremes
            with np.errstate(over="ignore"):  # a SIGMOID window overflows exp() there
                output = dicom_pixels.apply_windowing(np.array([-1e15, 1e15]), ds)
            shown = dicom_pixels.apply_voi_lut(values, ds)
        except ValueError:  # a width below 1 or an unknown VOI LUT Function
            return None
    else:
        return None
    return _scale(np.asarray(shown, np.float64), float(output.min()), float(output.max()))


def window_uint8(values: np.ndarray, ds: Dataset, options: DicomOptions) -> np.ndarray:
    """Modality values (one monochrome frame) windowed to uint8, MONOCHROME1 inverted."""
    preset = CT_PRESETS.get(options.window) if ds.get("Modality") == "CT" else None
    grey = None
    if preset is not None:  # the LINEAR function of PS3.3 C.11.2.1.2.1, onto 0..255
        center, width = preset
        low = center - 0.5 - (width - 1) / 2
        grey = _scale(values, low, low + width - 1)
    elif options.window is not Window.PERCENTILE:
        grey = _file_voi(values, ds)
    if grey is None:
        low, high = np.percentile(values, options.percentiles)
        if high <= low:  # mostly one value (a mask): the full range still shows the rest
            low, high = values.min(), values.max()
        grey = _scale(values, low, high)
    return 255 - grey if ds.get("PhotometricInterpretation") == "MONOCHROME1" else grey


def colour_to_grey(pixels: np.ndarray, photometric: str, ds: Dataset) -> np.ndarray:
    """An RGB, YBR_FULL(_422) or PALETTE COLOR frame as uint8 grey, as PIL's "L" makes it."""
    if photometric == "PALETTE COLOR":
        rgb = dicom_pixels.apply_color_lut(pixels, ds)
        bits = int(ds.RedPaletteColorLookupTableDescriptor[2])
    elif photometric in ("RGB", "YBR_FULL", "YBR_FULL_422"):
        rgb = pixels if photometric == "RGB" else \
            dicom_pixels.convert_color_space(pixels, photometric, "RGB")
        bits = int(ds.get("BitsStored") or 8)
    else:
        raise Undecodable(f"photometric interpretation {photometric} is not supported")
    if rgb.dtype != np.uint8 or bits != 8:  # 16- or 32-bit colour: to 8 bits before PIL
        rgb = _scale(rgb.astype(np.float64), 0, 2**bits - 1)
    return np.asarray(Image.fromarray(rgb, "RGB").convert("L"))


def to_uint16(values: np.ndarray, offset: int) -> tuple[np.ndarray, bool]:
    stored = np.rint(values.astype(np.float64)) + offset  # rint keeps uint8 as float16: too narrow
    clipped = bool(stored.min() < 0 or stored.max() > 65535)
    return np.clip(stored, 0, 65535).astype(np.uint16), clipped


def render(ds: Dataset, options: DicomOptions = DicomOptions(), value_offset: int = 0
           ) -> list[Rendered]:
    """The frames ``options`` asks for, as pixels to store; raises :class:`Undecodable`."""
    if "PixelData" not in ds:
        sop = ds.get("SOPClassUID")
        raise Undecodable(f"no pixel data ({sop.name if sop else 'no SOP Class UID'})")
    count = frame_count(ds)
    rendered = []
    for index in range(count) if options.frames is Frames.ALL else [count // 2]:
        pixels, photometric = decode_frame(ds, index)
        if photometric not in MONOCHROME:
            values = colour_to_grey(pixels, photometric, ds)
        elif options.bit_depth == 8:
            values = window_uint8(modality_values(pixels, ds), ds, options)
        else:
            values = modality_values(pixels, ds)
            if photometric == "MONOCHROME1":  # mirrored in its range: bright = dense here too
                low, high = modality_range(ds)
                values = low + high - values
        if options.bit_depth == 16:
            rendered.append(Rendered(index, *to_uint16(values, value_offset)))
        else:
            rendered.append(Rendered(index, values, False))
    return rendered


# ----------------------------------------------------------------------------- records


class Skipped(NamedTuple):
    path: Path
    reason: str


@dataclass
class DicomReport:
    """What :func:`records_from_dicom` read, skipped and clipped, for the caller to print."""
    files: int = 0
    skipped: list[Skipped] = field(default_factory=list)
    clipped: list[str] = field(default_factory=list)  # sources with 16-bit values clipped


def _header_signed(path: Path) -> bool:
    """Whether the file's modality values can be negative; raises if it is no DICOM file."""
    try:
        header = dcmread(path, stop_before_pixels=True)
    except InvalidDicomError:
        raise ShardingError(f"{path}: not a DICOM file (no 'DICM' after the 128-byte preamble "
                            f"of PS3.10 7.1); remove it, or hide it (a name starting with '.')"
                            ) from None
    except Exception as err:  # pydicom raises many types for a damaged header
        raise ShardingError(f"{path}: unreadable DICOM header ({err})") from None
    return "BitsStored" in header and modality_range(header)[0] < 0


def _read(path: Path, options: DicomOptions, offset: int) -> tuple[list[Rendered], int]:
    try:
        ds = dcmread(path)
    except Exception as err:  # the header read, so the body is damaged: truncated, bad VRs
        raise Undecodable(f"unreadable after its header ({err})") from None
    return render(ds, options, offset), frame_count(ds)


def records_from_dicom(src: Path, labels_csv: Path | None = None,
                       options: DicomOptions = DicomOptions(),
                       report: DicomReport | None = None) -> Collected:
    """Records (in-memory pixels) and the sorted class table of every decodable file, labelled
    by ``labels_csv`` (``path,label[,split]``) or by class folders. A file that is not DICOM
    raises :class:`ShardingError`; an undecodable one goes to ``report``. A multi-frame file's
    samples are named ``file.dcm#<frame>``, frames counted from 1 as in DICOM."""
    src, report = Path(src), report if report is not None else DicomReport()
    files = labelled_files(src, labels_csv)
    signed = [_header_signed(path) for _, _, path in files]  # all DICOM? before any decoding
    offset = SIGNED_OFFSET if options.bit_depth == 16 and any(signed) else 0
    rendering = (f"dicom window={options.window.value} percentiles={options.percentiles} "
                 f"frames={options.frames.value} bit_depth={options.bit_depth} offset={offset}")
    kept: list[tuple[str, str, str, np.ndarray]] = []
    for split, name, path in files:
        report.files += 1
        try:
            frames, count = _read(path, options, offset)
        except Undecodable as err:
            report.skipped.append(Skipped(path, str(err)))
            continue
        source = path.relative_to(src).as_posix()
        for frame in frames:
            named = f"{source}#{frame.index + 1}" if count > 1 else source
            if frame.clipped:
                report.clipped.append(named)
            kept.append((split, named, name, frame.pixels))
    if not kept:
        raise ShardingError(f"{src}: no decodable DICOM image among {report.files} file(s)")
    names = sorted({name for _, _, name, _ in kept})
    classes = [ClassInfo(key=name, label=i, name=name) for i, name in enumerate(names)]
    label = {c.key: c.label for c in classes}
    records = [Record(split, named, name, label[name], pixels=pixels, value_offset=offset,
                      rendering=rendering) for split, named, name, pixels in kept]
    return records, classes
