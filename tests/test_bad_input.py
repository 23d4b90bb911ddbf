"""Bad input through real associations: each gets the right status or rejection and a reason
in the log, nothing of it is kept, and the next association is served normally."""

from __future__ import annotations

import json
import re

import pydicom
import pytest
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from dicom_node.dicom.terms import StoreStatus
from dicom_node.index import Index
from dicom_node.ingest.store import InstanceStore, Peer
from dicom_node.storage.files import FileObjects
from dicom_node.testing.peers import echoscu, storescu
from tests import dicom_fixtures as fx
from tests.scu import drop_mid_transfer, send_raw_store

pytestmark = pytest.mark.integration


@pytest.fixture
def node(make_node):
    return make_node()


def assert_nothing_kept_and_still_serving(node, tmp_path):
    assert node.status().instances == 0
    assert not list((node.data_dir / "spool").rglob("*.dcm"))
    assert not list((node.data_dir / "spool" / ".incoming").iterdir())
    assert echoscu(node.port).returncode == 0
    good = fx.with_new_uids(fx.SMALL_SAMPLE, tmp_path / "good.dcm")
    assert storescu(node.port, good).returncode == 0
    assert node.status().instances == 1


def encoded(ds: pydicom.Dataset) -> bytes:
    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, False
    write_dataset(fp, ds)
    return fp.getvalue()


def test_truncated_in_pixel_data(node, tmp_path):
    bad = fx.truncated(fx.SMALL_SAMPLE, tmp_path / "t.dcm", keep_fraction=0.6)
    uid = pydicom.dcmread(bad, stop_before_pixels=True).SOPInstanceUID
    data = bad.read_bytes()
    body = data[data.index(b"\x08\x00\x05\x00") :]  # dataset without preamble and file meta
    assert send_raw_store(node.port, uid, body) == 0xC210
    # How many arrived depends on the UIDs' lengths (fresh each run): the count is not fixed.
    assert re.search(r"\(7FE0,0010\) declares 620928 bytes, \d+ arrived", node.log_text())
    assert_nothing_kept_and_still_serving(node, tmp_path)


def test_truncated_inside_an_element(node, tmp_path):
    ds = pydicom.dcmread(fx.SMALL_SAMPLE)
    ds.SOPInstanceUID = generate_uid()
    body = encoded(ds)
    cut = body.index(b"\x10\x00\x10\x00") + 6  # inside Patient's Name: header says more bytes
    assert send_raw_store(node.port, ds.SOPInstanceUID, body[:cut]) == 0xC210
    assert "cannot be parsed" in node.log_text()
    assert_nothing_kept_and_still_serving(node, tmp_path)


def test_missing_sop_instance_uid(node, tmp_path):
    ds = pydicom.dcmread(fx.SMALL_SAMPLE)
    del ds.SOPInstanceUID
    assert send_raw_store(node.port, generate_uid(), encoded(ds)) == 0xA900
    assert "missing SOPInstanceUID" in node.log_text()
    assert_nothing_kept_and_still_serving(node, tmp_path)


def test_missing_study_instance_uid_with_storescu(node, tmp_path):
    bad = fx.without(fx.SMALL_SAMPLE, tmp_path / "s.dcm", "StudyInstanceUID")
    result = storescu(node.port, bad)
    assert "Received Store Response (Error: DataSetDoesNotMatchSOPClass)" in result.stderr
    assert "missing StudyInstanceUID" in node.log_text()
    assert_nothing_kept_and_still_serving(node, tmp_path)


def test_non_image_sop_class_is_refused(node, tmp_path):
    result = storescu(node.port, fx.text_report(tmp_path / "sr.dcm"))
    assert "sopclassnotsupported" in result.stderr.lower(), result.stderr
    assert "is not an image" in node.log_text()
    assert_nothing_kept_and_still_serving(node, tmp_path)


def test_unsupported_transfer_syntax_proposal_is_rejected(node, tmp_path):
    result = storescu(
        node.port, fx.with_new_uids(fx.SMALL_SAMPLE, tmp_path / "m.dcm"), option="-xm"
    )
    assert result.returncode != 0
    assert "MPEG2" in node.log_text() and "rejected" in node.log_text()
    assert_nothing_kept_and_still_serving(node, tmp_path)


def test_pixel_length_mismatch_with_storescu(node, tmp_path):
    result = storescu(node.port, fx.wrong_pixel_length(fx.SMALL_SAMPLE, tmp_path / "p.dcm"))
    assert "Received Store Response (Error: DataSetDoesNotMatchSOPClass)" in result.stderr
    assert "Pixel Data is" in node.log_text()
    assert_nothing_kept_and_still_serving(node, tmp_path)


def test_empty_dataset(node, tmp_path):
    # A DIMSE message cannot carry a zero-length data set; the nearest is one holding only
    # Data Set Trailing Padding (FFFC,FFFC), which means nothing.
    padding_only = b"\xfc\xff\xfc\xffOB\x00\x00\x00\x00\x00\x00"
    assert send_raw_store(node.port, generate_uid(), padding_only) == 0xA900
    assert "empty dataset" in node.log_text()
    assert_nothing_kept_and_still_serving(node, tmp_path)


def test_peer_drops_connection_mid_transfer(node, tmp_path):
    ds = pydicom.dcmread(fx.SMALL_SAMPLE)
    ds.SOPInstanceUID = generate_uid()
    drop_mid_transfer(node.port, ds.SOPInstanceUID, encoded(ds))
    assert_nothing_kept_and_still_serving(node, tmp_path)


HOSTILE_UIDS = {
    "traversal": "../../../escape",
    "absolute": "/tmp/escape",
    "spaces": "1.2.3 4",
    "leading zero": "1.2.03",
    "65 characters": "1." + "2" * 63,
    "shell": "1.2;rm -rf",
}


@pytest.mark.parametrize("keyword", ["StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"])
@pytest.mark.parametrize("kind", sorted(HOSTILE_UIDS))
def test_an_invalid_uid_is_refused_and_nothing_is_written_anywhere(node, tmp_path, kind, keyword):
    before = set(tmp_path.rglob("*"))
    ds = pydicom.dcmread(fx.SMALL_SAMPLE)
    ds.SOPInstanceUID = generate_uid()
    setattr(ds, keyword, HOSTILE_UIDS[kind])
    announced = ds.SOPInstanceUID if len(ds.SOPInstanceUID) <= 64 else generate_uid()
    assert send_raw_store(node.port, announced, encoded(ds)) == 0xA900
    assert f"{keyword} " in node.log_text()
    new = {p for p in set(tmp_path.rglob("*")) - before if p.is_file()}
    assert {p.name for p in new} <= {"index.sqlite3-wal", "index.sqlite3-shm", "audit.log"}
    last = json.loads((node.data_dir / "audit.log").read_text().splitlines()[-1])
    assert (last["event"], last["status"]) == ("instance_refused", "0xA900")  # escaped JSON
    assert_nothing_kept_and_still_serving(node, tmp_path)


def test_a_multi_valued_study_uid_is_refused_not_retried(node, tmp_path):
    ds = pydicom.dcmread(fx.SMALL_SAMPLE)
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = [generate_uid(), generate_uid()]
    assert send_raw_store(node.port, ds.SOPInstanceUID, encoded(ds)) == 0xA900
    assert "StudyInstanceUID has 2 values" in node.log_text()
    assert_nothing_kept_and_still_serving(node, tmp_path)


def test_identical_bytes_of_an_older_version_add_nothing(node, tmp_path):
    a = fx.with_new_uids(fx.SMALL_SAMPLE, tmp_path / "a.dcm")
    changed = pydicom.dcmread(a)
    changed.PatientComments = "corrected"
    changed.save_as(tmp_path / "b.dcm")
    for path in (a, tmp_path / "b.dcm", a, tmp_path / "b.dcm"):
        assert storescu(node.port, path).returncode == 0
    assert [r.version for r in node.index.views.instances()] == [1, 2]


def test_below_min_free_bytes_the_sender_is_told_to_retry_and_status_says_why(make_node, tmp_path):
    from dicom_node.app.cli import main

    node = make_node(storage={"min_free_bytes": 10**18})  # more than any disk has free
    result = storescu(node.port, fx.with_new_uids(fx.SMALL_SAMPLE, tmp_path / "a.dcm"))
    assert "Received Store Response (Refused: OutOfResources)" in result.stderr, result.stderr
    assert "disk nearly full" in node.log_text()
    assert node.status().instances == 0
    assert not list((node.data_dir / "spool").rglob("*.dcm"))
    assert main(["status", "--config", str(node.config)]) == 1  # and prints "disk: ... LOW"


def test_a_dataset_over_max_instance_bytes_is_cut_off_while_received(make_node, tmp_path):
    node = make_node(storage={"max_instance_bytes": 1_000_000})
    big = fx.with_new_uids(fx.SAMPLES_DIR / "zhanglab_01_normal.dcm", tmp_path / "big.dcm")
    result = storescu(node.port, big)  # 1.8 MB
    assert result.returncode != 0 or "Success" not in result.stderr
    assert "its dataset is over max_instance_bytes (1000000)" in node.log_text()
    assert_nothing_kept_and_still_serving(node, tmp_path)  # a 0.6 MB one still goes in


def test_a_dataset_over_max_instance_bytes_that_arrived_whole_is_refused(tmp_path):
    """The SCP cuts such a connection while it receives, but bytes already buffered by the
    kernel can still complete the dataset: the store refuses it too."""
    index = Index(f"sqlite:///{tmp_path / 'index.sqlite3'}")
    try:
        store = InstanceStore(
            index.catalog, FileObjects(tmp_path / "spool"), tmp_path, max_instance_bytes=100
        )
        result = store.store(
            encoded(pydicom.dcmread(fx.SMALL_SAMPLE)), ExplicitVRLittleEndian, Peer("X", "h")
        )
        assert result.status == StoreStatus.OUT_OF_RESOURCES
        assert "over max_instance_bytes (100)" in result.reason
        assert index.views.status().instances == 0
        assert not list((tmp_path / "spool").rglob("*.dcm"))
    finally:
        index.close()
