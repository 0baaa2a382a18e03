"""dicom_to_wds end to end on real files from the pydicom wheel, copied into class folders
(the pixel pipeline itself: tests/data/test_dicom.py). Samples are read back with
pgnm.data.shards.iter_samples and compared with pydicom's own values."""

from __future__ import annotations

import json
import re
import shutil
import warnings

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.pixels import apply_modality_lut, apply_voi_lut

from data_tools import dicom_to_wds
from data_tools.verify import verify
from pgnm.data.manifest import load_classes, load_dataset_info
from pgnm.data.shards import iter_samples

FILES = {  # class folder -> real files; the last two MR files are skipped (no JPEG-LS, no pixels)
    "CT": ["CT_small.dcm", "693_J2KI.dcm"],
    "MR": ["MR_small.dcm", "MR_small_RLE.dcm", "MR_small_bigendian.dcm",
           "MR_small_jpeg_ls_lossless.dcm", "rtplan.dcm"],
    "US": ["examples_rgb_color.dcm", "examples_ybr_color.dcm"],
}  # fmt: skip


def read(path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(path)


@pytest.fixture(scope="module")
def src(tmp_path_factory):
    root = tmp_path_factory.mktemp("dicom")
    for name, files in FILES.items():
        (root / name).mkdir()
        for file in files:
            shutil.copy(get_testdata_file(file, download=False), root / name / file)
    (root / "MR" / ".DS_Store").write_text("hidden: ignored")
    return root


def convert(src, out, *flags):
    dicom_to_wds.main(["--src", str(src), "--out", str(out), "--workers", "1", *flags])


def samples(out, split="train"):
    return {s.source: s for s in iter_samples(out, split)}


def test_8_bit_round_trip_skips_with_reasons(src, tmp_path, capsys):
    out = tmp_path / "out"
    convert(src, out)
    printed = capsys.readouterr().out
    assert f"skipped {src / 'MR' / 'MR_small_jpeg_ls_lossless.dcm'}: transfer syntax " \
           "1.2.840.10008.1.2.4.80 (JPEG-LS Lossless Image Compression)" in printed
    assert f"skipped {src / 'MR' / 'rtplan.dcm'}: no pixel data (RT Plan Storage)" in printed
    assert "DICOM: 9 files read, 2 skipped" in printed and "Traceback" not in printed
    assert [c.key for c in load_classes(out)] == ["CT", "MR", "US"]
    info = load_dataset_info(out)
    assert (info.bit_depth, info.value_offset) == (8, 0)
    got = samples(out)
    assert sorted(got) == ["CT/693_J2KI.dcm", "CT/CT_small.dcm", "MR/MR_small.dcm",
                           "MR/MR_small_RLE.dcm", "MR/MR_small_bigendian.dcm",
                           "US/examples_rgb_color.dcm", "US/examples_ybr_color.dcm#16"]
    mr = read(src / "MR" / "MR_small.dcm")  # its own window, 600/1600, range -32768..32767
    shown = apply_voi_lut(mr.pixel_array, mr)
    expected = np.rint(np.clip((shown + 32768) / 65535, 0, 1) * 255).astype(np.uint8)
    for name in ("MR_small.dcm", "MR_small_RLE.dcm", "MR_small_bigendian.dcm"):
        assert got[f"MR/{name}"].pixels.dtype == np.uint8
        assert np.array_equal(got[f"MR/{name}"].pixels, expected)
    ct = read(src / "CT" / "CT_small.dcm")  # no window: the 0.5..99.5 percentile window
    hu = apply_modality_lut(ct.pixel_array, ct)
    low, high = np.percentile(hu, [0.5, 99.5])
    expected = np.rint(np.clip((hu - low) / (high - low), 0, 1) * 255).astype(np.uint8)
    assert np.array_equal(got["CT/CT_small.dcm"].pixels, expected)
    assert got["US/examples_ybr_color.dcm#16"].pixels.shape == (240, 320)
    assert verify(out)["ok"]


def test_16_bit_keeps_hounsfield_units(src, tmp_path, capsys):
    out = tmp_path / "out16"
    convert(src, out, "--bit-depth", "16", "--window", "lung")  # the window plays no part
    info = load_dataset_info(out)
    assert (info.bit_depth, info.value_offset) == (16, 32768)
    assert json.loads((out / "dataset.json").read_text())["bit_depth"] == 16
    got = samples(out)
    ct = read(src / "CT" / "CT_small.dcm")
    stored = got["CT/CT_small.dcm"].pixels
    assert stored.dtype == np.uint16
    assert np.array_equal(stored.astype(int) - 32768, apply_modality_lut(ct.pixel_array, ct))
    mr = read(src / "MR" / "MR_small.dcm")  # no rescale: the stored values themselves
    assert np.array_equal(got["MR/MR_small.dcm"].pixels.astype(int) - 32768, mr.pixel_array)
    us = read(src / "US" / "examples_rgb_color.dcm")  # colour: its PIL grey is the value
    grey = np.asarray(Image.fromarray(us.pixel_array).convert("L"))
    assert np.array_equal(got["US/examples_rgb_color.dcm"].pixels.astype(int) - 32768, grey)
    assert "clipped" not in capsys.readouterr().out
    assert verify(out)["ok"]
    dataset = json.loads((out / "dataset.json").read_text())
    (out / "dataset.json").write_text(json.dumps({**dataset, "bit_depth": 8}))
    problems = verify(out, use_dali=False)["problems"]
    assert problems and all("16-bit image, dataset.json says 8" in p for p in problems)


def test_every_frame_and_a_labels_csv_with_splits(src, tmp_path):
    labels = tmp_path / "labels.csv"
    labels.write_text("path,label,split\nUS/examples_ybr_color.dcm,cine,train\n"
                      "CT/CT_small.dcm,ct,train\nMR/MR_small.dcm,mr,test\n")
    out = tmp_path / "out"
    convert(src, out, "--labels", str(labels), "--frames", "all")
    assert [c.key for c in load_classes(out)] == ["cine", "ct", "mr"]
    train = samples(out)
    frames = sorted(s for s in train if s.startswith("US/"))
    assert frames == sorted(f"US/examples_ybr_color.dcm#{i}" for i in range(1, 31))
    assert {train[s].class_key for s in frames} == {"cine"} and len(train) == 31
    assert list(samples(out, "test")) == ["MR/MR_small.dcm"]


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ("path,label\nCT/CT_small.dcm,ct\nCT/missing.dcm,ct\n", "labels.csv:3: file not found"),
        ("path,label\nCT/CT_small.dcm\n", "labels.csv:2: expected path,label"),
        ("path,label\n../x.dcm,ct\n", "labels.csv:2: ../x.dcm must be a path inside --src"),
        ("path,label\nCT/CT_small.dcm,a\nCT/CT_small.dcm,b\n", "labels.csv:3: .*listed again"),
        ("path,label,split\nCT/CT_small.dcm,a,dev\n", "labels.csv:2: split 'dev'"),
        ("file,class\n", "labels.csv:1: expected the header"),
    ],
)
def test_bad_label_rows_are_named(src, tmp_path, capsys, rows, message):
    (tmp_path / "labels.csv").write_text(rows)
    with pytest.raises(SystemExit) as exit_info:
        convert(src, tmp_path / "out", "--labels", str(tmp_path / "labels.csv"))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert re.search(message, err) and "Traceback" not in err


def test_a_file_that_is_not_dicom_is_an_error_naming_it(tmp_path, capsys):
    (tmp_path / "src" / "CT").mkdir(parents=True)
    shutil.copy(get_testdata_file("CT_small.dcm", download=False), tmp_path / "src" / "CT")
    (tmp_path / "src" / "CT" / "notes.txt").write_text("not an image")
    with pytest.raises(SystemExit):
        convert(tmp_path / "src", tmp_path / "out")
    err = capsys.readouterr().err
    assert f"{tmp_path / 'src' / 'CT' / 'notes.txt'}: not a DICOM file" in err


def test_nothing_decodable_and_bad_options_exit_2(tmp_path, capsys):
    (tmp_path / "src" / "SR").mkdir(parents=True)
    shutil.copy(get_testdata_file("rtplan.dcm", download=False), tmp_path / "src" / "SR")
    with pytest.raises(SystemExit) as exit_info:
        convert(tmp_path / "src", tmp_path / "out")
    captured = capsys.readouterr()
    assert exit_info.value.code == 2 and "no decodable DICOM image among 1 file" in captured.err
    assert "skipped" in captured.out and "DICOM: 1 files read, 1 skipped" in captured.out
    for flags in (["--bit-depth", "16", "--format", "jpeg"], ["--percentiles", "60", "40"]):
        with pytest.raises(SystemExit) as exit_info:
            convert(tmp_path / "src", tmp_path / "out", *flags)
        assert exit_info.value.code == 2
