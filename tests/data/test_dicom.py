"""The DICOM pixel pipeline (pgnm.data.dicom) on the real files the pydicom wheel ships.

Expected values come from pydicom itself (pixel_array, apply_modality_lut, apply_voi_lut,
apply_windowing) with the output range of the VOI written out here from PS3.3 C.11.2, so a
slip in the library's range handling cannot hide in a shared helper. Agreement is exact
(every pixel) unless a test says otherwise.
"""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.pixels import apply_modality_lut, apply_voi_lut, get_decoder
from pydicom.uid import JPEGLSLossless

from pgnm.data.dicom import (
    CT_PRESETS,
    DicomOptions,
    Frames,
    Undecodable,
    Window,
    modality_range,
    render,
)

MR_SYNTAXES = {  # the same 64x64 MR image in five transfer syntaxes (PS3.5 section 10)
    "MR_small.dcm": "1.2.840.10008.1.2.1",  # explicit VR little endian
    "MR_small_implicit.dcm": "1.2.840.10008.1.2",  # implicit VR little endian
    "MR_small_bigendian.dcm": "1.2.840.10008.1.2.2",  # explicit VR big endian (retired)
    "MR_small_RLE.dcm": "1.2.840.10008.1.2.5",  # RLE lossless: pydicom's own decoder
    "MR_small_jp2klossless.dcm": "1.2.840.10008.1.2.4.90",  # JPEG 2000 lossless: Pillow
}


def real(name: str) -> Path:
    path = get_testdata_file(name, download=False)  # the wheel's own files: never a download
    assert path, f"{name} is not among the files the pydicom wheel ships"
    return Path(path)


def read(name: str) -> Dataset:
    with warnings.catch_warnings():  # some test files are deliberately odd
        warnings.simplefilter("ignore")
        return pydicom.dcmread(real(name))


def only(ds: Dataset, options: DicomOptions = DicomOptions(), offset: int = 0) -> np.ndarray:
    (frame,) = render(ds, options, offset)
    return frame.pixels


def expected_file_window(ds: Dataset, stored: np.ndarray) -> np.ndarray:
    """pydicom's modality LUT and window, onto 0..255 from the output range pydicom documents
    for a window: the stored-value range of Bits Stored / Pixel Representation, rescaled."""
    shown = apply_voi_lut(apply_modality_lut(stored, ds), ds)
    bits = ds.BitsStored
    low, high = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if ds.PixelRepresentation else \
        (0, 2**bits - 1)
    if "RescaleSlope" in ds:
        low, high = low * ds.RescaleSlope + ds.RescaleIntercept, \
            high * ds.RescaleSlope + ds.RescaleIntercept
    return np.rint(np.clip((shown - low) / (high - low), 0, 1) * 255).astype(np.uint8)


def pil_grey(rgb: np.ndarray) -> np.ndarray:
    return np.asarray(Image.fromarray(rgb).convert("L"))


@pytest.mark.parametrize("name", sorted(MR_SYNTAXES))
def test_mr_file_window_matches_pydicom_in_every_syntax(name):
    ds = read(name)
    assert ds.file_meta.TransferSyntaxUID == MR_SYNTAXES[name]
    assert "WindowCenter" in ds and ds.Modality == "MR"
    got = only(ds)
    assert got.dtype == np.uint8 and got.shape == (64, 64)
    assert np.array_equal(got, expected_file_window(ds, ds.pixel_array))
    assert np.array_equal(got, only(read("MR_small.dcm")))  # lossless: one image in all five


def test_ct_file_window_jpeg2000_lossy():
    ds = read("693_J2KI.dcm")  # CT, JPEG 2000 (lossy), Window 40/100, Rescale -1024
    assert ds.Modality == "CT" and ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.91"
    assert np.array_equal(only(ds), expected_file_window(ds, ds.pixel_array))


def test_ct_without_a_window_gets_the_percentile_window():
    ds = read("CT_small.dcm")  # CT, explicit VR LE, Rescale -1024, no Window Center/Width
    assert "WindowCenter" not in ds and "VOILUTSequence" not in ds
    hu = apply_modality_lut(ds.pixel_array, ds)
    low, high = np.percentile(hu, [1, 99])
    expected = np.rint(np.clip((hu - low) / (high - low), 0, 1) * 255).astype(np.uint8)
    got = only(ds, DicomOptions(percentiles=(1, 99)))
    assert np.array_equal(got, expected)
    assert got.min() == 0 and got.max() == 255
    assert np.array_equal(only(ds), only(ds, DicomOptions(window=Window.PERCENTILE)))


def test_deflated_syntax_and_a_one_bit_mask():
    ds = read("image_dfl.dcm")  # deflated explicit VR little endian, 8-bit, no window
    assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1.99"
    values = ds.pixel_array.astype(float)
    low, high = np.percentile(values, [0.5, 99.5])
    expected = np.rint(np.clip((values - low) / (high - low), 0, 1) * 255).astype(np.uint8)
    assert np.array_equal(only(ds), expected)
    mask = read("liver_1frame.dcm")  # SEG, 1 bit per pixel, 86% zeros
    assert np.percentile(mask.pixel_array, 80) == 0  # a 1..80 window collapses...
    shown = only(mask, DicomOptions(percentiles=(1, 80)))
    assert np.array_equal(shown, mask.pixel_array * 255)  # ...so the full range is shown


@pytest.mark.parametrize("window", sorted(CT_PRESETS, key=lambda w: w.value))
def test_ct_presets_are_pydicoms_linear_window(window):
    """The preset gives what pydicom's windowing gives when the file carries the preset as
    its Window Center/Width, pixel for pixel."""
    ds = read("CT_small.dcm")
    center, width = CT_PRESETS[window]
    with_window = copy.deepcopy(ds)
    with_window.WindowCenter, with_window.WindowWidth = center, width
    expected = expected_file_window(with_window, ds.pixel_array)
    assert np.array_equal(only(ds, DicomOptions(window=window)), expected)


def test_presets_only_window_ct():
    mr = read("MR_small.dcm")
    assert np.array_equal(only(mr, DicomOptions(window=Window.LUNG)), only(mr))


def test_a_voi_lut_is_preferred_to_the_window_and_scaled_by_its_output():
    ds = read("MR_small.dcm")  # stored 127..2145; the real file has a window, no VOI LUT
    lut = Dataset()
    lut.LUTDescriptor = [2200, 0, 16]
    lut.LUTData = [int(v) for v in np.sqrt(np.arange(2200) / 2199) * 60000]
    ds.VOILUTSequence = [lut]
    shown = apply_voi_lut(ds.pixel_array, ds).astype(float)  # pydicom prefers the LUT
    expected = np.rint(shown / 60000 * 255).astype(np.uint8)  # LUT outputs span 0..60000
    assert np.array_equal(only(ds), expected)


def test_monochrome1_is_inverted_and_mirrored_in_16_bit():
    mr = read("MR_small.dcm")
    inverted = copy.deepcopy(mr)
    inverted.PhotometricInterpretation = "MONOCHROME1"  # no such file in the wheel
    assert np.array_equal(only(inverted), 255 - only(mr))
    sixteen = DicomOptions(bit_depth=16)
    low, high = modality_range(mr)  # signed 16-bit: -32768..32767
    mirrored = only(inverted, sixteen, 32768).astype(int) - 32768
    assert np.array_equal(mirrored, low + high - mr.pixel_array.astype(int))


def test_16_bit_keeps_hounsfield_units():
    ds = read("CT_small.dcm")
    hu = apply_modality_lut(ds.pixel_array, ds)
    assert modality_range(ds)[0] < 0  # signed: the reader picks offset 32768
    (frame,) = render(ds, DicomOptions(bit_depth=16), 32768)
    assert frame.pixels.dtype == np.uint16 and not frame.clipped
    assert np.array_equal(frame.pixels.astype(int) - 32768, hu.astype(int))
    (unsigned,) = render(ds, DicomOptions(bit_depth=16), 0)
    assert unsigned.clipped and unsigned.pixels.min() == 0  # HU below 0 do not fit


def test_colour_becomes_pil_grey():
    """RGB (US, native), YBR_FULL_422 native and YBR_FULL in JPEG baseline (Pillow), PALETTE
    COLOR (US) and JPEG 2000 YBR_RCT: each through pydicom's RGB, then PIL's "L"."""
    for name in ("examples_rgb_color.dcm", "SC_ybr_full_422_uncompressed.dcm",
                 "SC_rgb_jpeg_dcmtk.dcm", "examples_jpeg2k.dcm", "ExplVR_BigEnd.dcm"):
        ds = read(name)
        assert np.array_equal(only(ds), pil_grey(ds.pixel_array)), name  # pydicom: as RGB
    palette = read("examples_palette.dcm")
    rgb16 = pydicom.pixels.apply_color_lut(palette.pixel_array, palette)  # 16-bit entries
    rgb = np.rint(rgb16 / 65535 * 255).astype(np.uint8)
    assert np.array_equal(only(palette), pil_grey(rgb))


def test_multi_frame_middle_or_all():
    ds = read("examples_ybr_color.dcm")  # US, 30 frames, JPEG baseline YBR_FULL_422
    frames = ds.pixel_array
    (middle,) = render(ds)
    assert middle.index == 15 and np.array_equal(middle.pixels, pil_grey(frames[15]))
    every = render(ds, DicomOptions(frames=Frames.ALL))
    assert [f.index for f in every] == list(range(30))
    assert all(np.array_equal(f.pixels, pil_grey(frames[f.index])) for f in every)
    dose = read("rtdose.dcm")  # 15 monochrome uint32 frames, no window: percentiles
    assert [f.pixels.dtype for f in render(dose, DicomOptions(frames=Frames.ALL))] == \
        [np.uint8] * 15


def test_undecodable_files_say_why():
    with pytest.raises(Undecodable, match=r"no pixel data \(RT Plan Storage\)"):
        render(read("rtplan.dcm"))
    with pytest.raises(Undecodable, match="no Transfer Syntax UID"):
        render(read("meta_missing_tsyntax.dcm"))
    with pytest.raises(Undecodable, match=r"1\.2\.840\.10008\.1\.2\.4\.51 \(JPEG Extended"):
        render(read("JPGExtended.dcm"))  # 12-bit JPEG: Pillow is the only plugin, and refuses
    if get_decoder(JPEGLSLossless).is_available:
        pytest.skip("a JPEG-LS plugin is installed here")
    with pytest.raises(Undecodable, match=r"1\.2\.840\.10008\.1\.2\.4\.80 \(JPEG-LS Lossless "
                                          r"Image Compression\) cannot be decoded here"):
        render(read("MR_small_jpeg_ls_lossless.dcm"))


def test_options_are_checked():
    with pytest.raises(ValueError, match="percentiles"):
        DicomOptions(percentiles=(99, 1))
    with pytest.raises(ValueError, match="bit-depth"):
        DicomOptions(bit_depth=12)
