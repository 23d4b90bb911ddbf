"""Ingest through real associations: dcmtk's echoscu/storescu against a running node, polled
in this process through its index. The samples test runs on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib

import pydicom
import pytest

from dicom_node.samples import STORESCU_SYNTAX_OPTION, sample_files
from dicom_node.testing.peers import echoscu, storescu
from tests.certs import self_signed
from tests.dicom_fixtures import SMALL_SAMPLE, with_new_uids
from tests.nodes import wait_for

pytestmark = pytest.mark.integration


def send_samples(port: int) -> None:
    for path in sample_files():
        result = storescu(port, path, option=STORESCU_SYNTAX_OPTION[path.name])
        assert result.returncode == 0, f"{path.name}: {result.stderr}"


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_samples_become_six_jobs_and_one_skipped_study(make_node, request, backend):
    url = request.getfixturevalue("postgres_url") if backend == "postgresql" else None
    node = make_node(database_url=url)
    assert echoscu(node.port).returncode == 0
    send_samples(node.port)

    def settled():
        s = node.status()
        return s if s.instances == 7 and not node.counts("studies").get("receiving") else None

    s = wait_for(settled)
    assert s, node.status()
    assert node.counts("studies") == {"queued": 6, "skipped": 1}
    assert node.counts("jobs") == {"queued": 6}
    (reason,) = s.skipped_reasons.values()
    assert "EXTREMITY" in reason


def test_stored_file_is_the_sent_dataset_with_its_digest(make_node, tmp_path):
    node = make_node()
    sent = with_new_uids(SMALL_SAMPLE, tmp_path / "one.dcm")
    assert storescu(node.port, sent).returncode == 0
    (stored,) = (node.data_dir / "spool").rglob("*.dcm")
    original, received = pydicom.dcmread(sent), pydicom.dcmread(stored)
    assert received.SOPInstanceUID == original.SOPInstanceUID
    assert received.PixelData == original.PixelData
    assert received.file_meta.TransferSyntaxUID == original.file_meta.TransferSyntaxUID
    (row,) = node.index.views.instances()
    assert row.sha256 == hashlib.sha256(stored.read_bytes()).hexdigest()
    assert row.size == stored.stat().st_size
    assert row.calling_ae == "STORESCU" and row.peer_host == "127.0.0.1"
    assert row.modality == "DX" and row.body_part == "CHEST"


def test_duplicate_identical_is_success_and_changed_bytes_become_a_version(make_node, tmp_path):
    node = make_node()
    first = with_new_uids(SMALL_SAMPLE, tmp_path / "a.dcm")
    assert storescu(node.port, first).returncode == 0
    assert storescu(node.port, first).returncode == 0
    assert node.status().instances == 1
    changed = pydicom.dcmread(first)
    changed.PatientComments = "corrected"
    changed.save_as(tmp_path / "b.dcm")
    assert storescu(node.port, tmp_path / "b.dcm").returncode == 0
    rows = node.index.views.instances()
    assert [r.version for r in rows] == [1, 2]
    assert rows[0].sop_instance_uid == rows[1].sop_instance_uid
    assert rows[0].sha256 != rows[1].sha256
    assert "kept as version 2" in node.log_text()


def test_late_image_reopens_a_completed_study_as_a_new_version(make_node, tmp_path):
    node = make_node()
    study_uid = pydicom.uid.generate_uid()
    first = with_new_uids(SMALL_SAMPLE, tmp_path / "1.dcm", study_uid=study_uid)
    assert storescu(node.port, first).returncode == 0
    assert wait_for(lambda: node.counts("jobs").get("queued") == 1)
    late = with_new_uids(SMALL_SAMPLE, tmp_path / "2.dcm", study_uid=study_uid)
    assert storescu(node.port, late).returncode == 0
    assert wait_for(lambda: node.counts("jobs").get("queued") == 2)
    (study,) = node.index.views.studies()
    assert study.version == 2 and study.state.value == "queued"


def test_calling_ae_not_on_allow_list_is_rejected(make_node):
    node = make_node(node={"accept_from": [{"ae_title": "PACS"}]})
    refused = echoscu(node.port, calling="INTRUDER")
    assert refused.returncode != 0
    assert "Rejected" in refused.stderr or "rejected" in refused.stderr.lower()
    assert "'INTRUDER'" in node.log_text() and "not on accept_from" in node.log_text()
    assert echoscu(node.port, calling="PACS").returncode == 0


def test_host_not_on_allow_list_is_dropped_before_the_request_is_read(make_node):
    node = make_node(node={"accept_from": [{"ae_title": "PACS", "host": "10.0.0.0/8"}]})
    assert echoscu(node.port, calling="PACS").returncode != 0
    assert "refusing connection from 127.0.0.1: not on accept_from" in node.log_text()


def test_ae_title_allowed_only_from_its_own_host_is_rejected_from_another(make_node):
    node = make_node(
        node={"accept_from": [{"ae_title": "PACS", "host": "10.0.0.0/8"}, {"host": "127.0.0.1"}]}
    )
    assert echoscu(node.port, calling="OTHER").returncode == 0  # the host rule admits it
    assert echoscu(node.port, calling="PACS").returncode == 0  # PACS from here: host rule too
    strict = make_node(
        node={
            "accept_from": [
                {"ae_title": "PACS", "host": "10.0.0.0/8"},
                {"ae_title": "MODALITY", "host": "127.0.0.1"},
            ]
        }
    )
    assert echoscu(strict.port, calling="MODALITY").returncode == 0
    refused = echoscu(strict.port, calling="PACS")  # host passes (MODALITY's rule), pair fails
    assert refused.returncode != 0
    assert "rejecting association from 'PACS' at 127.0.0.1: not on accept_from" in (
        strict.log_text()
    )


def test_associations_beyond_the_maximum_are_rejected_and_logged(make_node):
    from tests.scu import associate

    node = make_node(node={"max_associations": 1})
    held = associate(node.port)
    try:
        refused = echoscu(node.port)
        assert refused.returncode != 0 and "Rejected" in refused.stderr
    finally:
        held.release()
    assert "1 associations already open (the maximum)" in node.log_text()
    assert echoscu(node.port).returncode == 0


def test_tls_association(make_node, tmp_path):
    import ssl

    from pynetdicom import AE
    from pynetdicom.sop_class import Verification

    cert, key = self_signed(tmp_path)
    node = make_node(
        node={
            "tls": {
                "enabled": True,
                "cert": str(cert),
                "key": str(key),
            }
        }
    )
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(cert))
    ae = AE()
    ae.add_requested_context(Verification)
    assoc = ae.associate(
        "127.0.0.1", node.port, ae_title="DICOM_NODE", tls_args=(context, "localhost")
    )
    assert assoc.is_established
    assert assoc.send_c_echo().Status == 0
    assoc.release()
    assert echoscu(node.port).returncode != 0  # plain TCP to a TLS port gets nowhere


def test_one_host_cannot_hold_every_slot(make_node):
    from tests.scu import associate

    node = make_node(node={"max_associations": 8, "max_associations_per_host": 2})
    held = [associate(node.port), associate(node.port)]
    try:
        assert echoscu(node.port).returncode != 0
        assert "2 connections already open from that host" in node.log_text()
    finally:
        for assoc in held:
            assoc.release()
    assert wait_for(lambda: echoscu(node.port).returncode == 0, timeout=10)


def test_rejected_hosts_never_hold_a_slot(make_node):
    import socket

    node = make_node(node={"max_associations": 2, "accept_from": [{"host": "10.0.0.0/8"}]})
    silent = [socket.create_connection(("127.0.0.1", node.port)) for _ in range(5)]
    try:
        for sock in silent:  # each is closed by the node at once, before it sends a byte
            sock.settimeout(5)
            assert sock.recv(1) == b""
    finally:
        for sock in silent:
            sock.close()
    assert node.log_text().count("refusing connection from 127.0.0.1") == 5
