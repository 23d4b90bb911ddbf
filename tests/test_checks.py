"""Pure checks of received datasets: truncation, the image IOD basics, and the Part 10 header
that turns received bytes into a file without re-encoding them."""

from __future__ import annotations

import pydicom
import pytest
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian, generate_uid

from dicom_node.dicom.checks import RejectedInstance, check_dataset
from dicom_node.dicom.encoding import check_layout, decode_header, part10_header
from dicom_node.dicom.terms import StoreStatus
from tests.dicom_fixtures import SMALL_SAMPLE

EXPLICIT = pydicom.uid.UID(ExplicitVRLittleEndian)


def encoded(ds: pydicom.Dataset) -> bytes:
    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, False
    write_dataset(fp, ds)
    return fp.getvalue()


@pytest.fixture
def sample() -> pydicom.Dataset:
    return pydicom.dcmread(SMALL_SAMPLE)


def test_a_whole_dataset_has_no_truncation_and_its_header_decodes(sample):
    data = encoded(sample)
    layout = check_layout(data, EXPLICIT)
    assert layout.truncation is None and layout.pixel_data_length == len(sample.PixelData)
    header = decode_header(data, EXPLICIT)
    assert header.SOPInstanceUID == sample.SOPInstanceUID and "PixelData" not in header


@pytest.mark.parametrize("cut", [1, 100, 5000])
def test_a_cut_dataset_says_where(sample, cut):
    data = encoded(sample)
    reason = check_layout(data[:-cut], EXPLICIT).truncation
    assert reason is not None and "(7FE0,0010) declares" in reason


def test_a_deflated_dataset_is_checked_after_inflating(sample):
    import zlib

    compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    deflated = compressor.compress(encoded(sample)) + compressor.flush()
    syntax = pydicom.uid.UID(DeflatedExplicitVRLittleEndian)
    assert check_layout(deflated, syntax).truncation is None
    assert decode_header(deflated, syntax).PatientID == sample.PatientID


def test_part10_header_and_the_received_bytes_make_a_readable_file(sample, tmp_path):
    path = tmp_path / "x.dcm"
    header = part10_header(sample.SOPClassUID, sample.SOPInstanceUID, EXPLICIT)
    path.write_bytes(header + encoded(sample))
    back = pydicom.dcmread(path)
    assert back.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert back.file_meta.MediaStorageSOPInstanceUID == sample.SOPInstanceUID
    assert back.PixelData == sample.PixelData


def check(ds, affected=None, syntax=ExplicitVRLittleEndian) -> None:
    pixels = len(ds.PixelData) if "PixelData" in ds else None
    check_dataset(ds, affected, syntax, pixels)


def rejection(ds, affected=None, syntax=ExplicitVRLittleEndian) -> RejectedInstance:
    with pytest.raises(RejectedInstance) as err:
        check(ds, affected, syntax)
    return err.value


def test_a_good_image_passes(sample):
    check(sample, sample.SOPInstanceUID)


@pytest.mark.parametrize("keyword", ["SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID"])
def test_a_missing_uid_is_named(sample, keyword):
    delattr(sample, keyword)
    err = rejection(sample)
    assert err.status is StoreStatus.DATASET_DOES_NOT_MATCH_SOP_CLASS
    assert f"missing {keyword}" in str(err)


def test_a_uid_other_than_the_announced_one_is_refused(sample):
    err = rejection(sample, affected=generate_uid())
    assert "differs from the request's" in str(err)


def test_a_non_image_is_not_supported(sample):
    sample.SOPClassUID = "1.2.840.10008.5.1.4.1.1.88.11"  # Basic Text SR
    assert rejection(sample).status is StoreStatus.SOP_CLASS_NOT_SUPPORTED


def test_pixel_data_of_the_wrong_length_is_refused(sample):
    sample.Rows = int(sample.Rows) + 1
    err = rejection(sample)
    assert "Pixel Data is" in str(err) and err.status == 0xA900


def test_an_image_without_pixel_data_is_refused(sample):
    del sample.PixelData
    assert "no Pixel Data" in str(rejection(sample))
