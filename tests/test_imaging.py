"""DICOM pixels to model input, on every shipped sample and against the val.npz twins."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest

from dicom_node.errors import ImageDecodeError
from dicom_node.model.inputs import to_model_input
from dicom_node.model.pixels import read_unit_image, unit_image_from_dataset
from dicom_node.samples import SAMPLES_DIR, sample_files


@pytest.mark.parametrize("path", sample_files(), ids=lambda p: p.name)
def test_every_sample_decodes_to_a_unit_image(path):
    unit = read_unit_image(path)
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    assert unit.shape == (ds.Rows, ds.Columns)
    assert unit.dtype == np.float32 and np.isfinite(unit).all()
    assert unit.std() > 0.1  # a radiograph's range, not a blank or a one-value image
    x = to_model_input(unit, 64)
    assert x.shape == (1, 1, 64, 64) and -1 <= float(x.min()) and float(x.max()) <= 1


def test_monochrome1_is_inverted_so_bone_is_white():
    ds = pydicom.dcmread(SAMPLES_DIR / "cr_chest_pa_mono1_j2k.dcm")
    unit = unit_image_from_dataset(ds)
    ds.PhotometricInterpretation = "MONOCHROME2"
    not_inverted = unit_image_from_dataset(ds)
    np.testing.assert_allclose(unit, 1.0 - not_inverted, atol=1e-6)
    # In a PA chest the mediastinum (centre) is brighter than the lungs beside it.
    h, w = unit.shape
    centre = unit[h // 3 : 2 * h // 3, w // 2 - w // 20 : w // 2 + w // 20].mean()
    lungs = unit[h // 3 : 2 * h // 3, w // 4 - w // 20 : w // 4 + w // 20].mean()
    assert centre > lungs


# The zhanglab samples and their 224 px twins in val.npz (sample README), used when the
# 224 px val.npz images copied into tests/data (CC BY 4.0, see dicom_node/samples/README.md).
TWINS = {
    "zhanglab_01_normal.dcm": "IM-0145-0001.jpeg",
    "zhanglab_02_normal.dcm": "IM-0343-0001.jpeg",
    "zhanglab_03_pneumonia.dcm": "person1003_virus_1685.jpeg",
    "zhanglab_04_pneumonia.dcm": "person1023_virus_1714.jpeg",
    "zhanglab_05_normal.dcm": "IM-0437-0001-0002.jpeg",
}
TWIN_CROPS = SAMPLES_DIR.parent.parent / "tests" / "data" / "val_twins_224.npz"


@pytest.mark.parametrize("name", sorted(TWINS))
def test_dicom_and_its_val_twin_become_nearly_the_same_input(name):
    twins = np.load(TWIN_CROPS)
    twin = twins[TWINS[name]]  # the val.npz image at 224 px, stored here as uint8
    a = to_model_input(read_unit_image(SAMPLES_DIR / name), 64)
    b = to_model_input(twin.astype(np.float32) / 255.0, 64)
    assert float((a - b).abs().mean()) < 0.01


def test_image_without_pixel_data_says_so(tmp_path):
    ds = pydicom.dcmread(SAMPLES_DIR / "zhanglab_03_pneumonia.dcm")
    del ds.PixelData
    with pytest.raises(ImageDecodeError, match="no Pixel Data"):
        unit_image_from_dataset(ds)


def test_corrupt_jpeg_stream_says_why(tmp_path):
    ds = pydicom.dcmread(SAMPLES_DIR / "zhanglab_04_pneumonia.dcm")
    ds.PixelData = ds.PixelData[:200] + b"\x00" * 64  # fragment header kept, JPEG data gone
    path = tmp_path / "broken.dcm"
    ds.save_as(path)
    with pytest.raises(ImageDecodeError, match="cannot decode pixel data"):
        read_unit_image(path)


def test_not_a_dicom_file(tmp_path):
    path = tmp_path / "note.txt"
    path.write_text("hello")
    with pytest.raises(ImageDecodeError, match="not a readable DICOM file"):
        read_unit_image(path)


def test_colour_image_is_refused():
    ds = pydicom.dcmread(SAMPLES_DIR / "zhanglab_03_pneumonia.dcm")
    ds.PhotometricInterpretation = "RGB"
    with pytest.raises(ImageDecodeError, match="not grayscale"):
        unit_image_from_dataset(ds)


@pytest.mark.parametrize(
    "make,reason",
    [
        ("one_bit", "Bits Allocated 1"),
        ("two_frames", "2 frames"),
    ],
)
def test_layouts_the_model_cannot_judge_say_why(tmp_path, make, reason):
    from tests import dicom_fixtures as fx

    path = getattr(fx, make)(tmp_path / "x.dcm")
    with pytest.raises(ImageDecodeError, match=reason):
        read_unit_image(path)


def test_a_thumbnail_is_too_small_to_judge():
    ds = pydicom.dcmread(SAMPLES_DIR / "zhanglab_03_pneumonia.dcm")
    ds.Rows = 32
    with pytest.raises(ImageDecodeError, match="too small to judge"):
        unit_image_from_dataset(ds)


def test_a_window_of_width_zero_is_ignored_not_an_error(tmp_path):
    from tests import dicom_fixtures as fx

    windowed = read_unit_image(fx.zero_window(tmp_path / "w.dcm"))
    plain = read_unit_image(SAMPLES_DIR / "zhanglab_03_pneumonia.dcm")
    np.testing.assert_allclose(windowed, plain)


@pytest.mark.parametrize("name", sorted(TWINS))
def test_the_npz_and_dicom_paths_score_the_same_pixels_the_same(name, tmp_path):
    """One preprocessing path: a val.npz image wrapped as an 8-bit DICOM image scores exactly
    as the npz path (training, calibration, evaluation) scores the array itself. The pneumonia
    twin of sample 03 spans 0-234, so dividing by 255 on one path would fail here."""
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    from dicom_node.config import SHIPPED_MODEL
    from dicom_node.model.ensemble import load_model
    from dicom_node.training.datasets import ImageSet

    pixels = np.load(TWIN_CROPS)[TWINS[name]]
    ds = pydicom.dcmread(SAMPLES_DIR / name)
    ds.file_meta = FileMetaDataset(ds.file_meta)
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    for keyword in ("WindowCenter", "WindowWidth", "VOILUTSequence"):
        ds.pop(keyword, None)
    ds.Rows, ds.Columns = pixels.shape
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit, ds.PixelRepresentation = 7, 0
    ds.PixelData = pixels.tobytes()
    path = tmp_path / "twin.dcm"
    ds.save_as(path, enforce_file_format=True)
    model = load_model(SHIPPED_MODEL)
    dicom = model.score(to_model_input(read_unit_image(path), model.image_size))[0]
    npz = ImageSet(pixels[None], np.zeros(1, np.int64), np.array(["p"]))
    array = model.score(npz.model_inputs(model.image_size))[0]
    assert dicom.score == pytest.approx(array.score, abs=1e-5)
    assert dicom.statistics == pytest.approx(array.statistics, abs=1e-4)
