"""Ingest through real associations: dcmtk's echoscu/storescu against a running node process,
on SQLite and on PostgreSQL."""

from __future__ import annotations

import hashlib
import json
import subprocess
import time

import pydicom
import pytest

from dicom_node.samples import STORESCU_SYNTAX_OPTION, sample_files
from tests.dicom_fixtures import SMALL_SAMPLE, with_new_uids

pytestmark = pytest.mark.integration


def storescu(
    port: int, *files, calling: str = "STORESCU", option: str = "-xe"
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            "storescu",
            "-v",
            option,
            "-aet",
            calling,
            "-aec",
            "DICOM_NODE",
            "127.0.0.1",
            str(port),
            *map(str, files),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={"TCP_NODELAY": "1", "PATH": "/usr/bin:/bin"},
    )


def echoscu(port: int, calling: str = "ECHOSCU") -> subprocess.CompletedProcess:
    return subprocess.run(
        ["echoscu", "-aet", calling, "-aec", "DICOM_NODE", "127.0.0.1", str(port)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def status(node) -> dict:
    out = node.cli("status", "--json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def wait_for(predicate, timeout: float = 30.0, every: float = 0.3):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(every)


def send_samples(port: int) -> None:
    for path in sample_files():
        result = storescu(port, path, option=STORESCU_SYNTAX_OPTION[path.name])
        assert result.returncode == 0, f"{path.name}: {result.stderr}"


def test_samples_become_six_jobs_and_one_skipped_study(make_node):
    node = make_node()
    assert echoscu(node.port).returncode == 0
    send_samples(node.port)

    def settled():
        s = status(node)
        return s if s["studies"].get("receiving", 0) == 0 and s["instances"] == 7 else None

    s = wait_for(settled)
    assert s, status(node)
    assert s["instances"] == 7
    assert s["studies"] == {"queued": 6, "skipped": 1}
    assert s["jobs"] == {"queued": 6}
    (reason,) = s["skipped_reasons"].values()
    assert "EXTREMITY" in reason


def test_stored_file_is_the_sent_dataset_with_its_digest(make_node, tmp_path):
    node = make_node()
    sent = with_new_uids(SMALL_SAMPLE, tmp_path / "one.dcm")
    assert storescu(node.port, sent).returncode == 0
    (stored,) = (node.data_dir / "spool").rglob("*.dcm")
    original, received = pydicom.dcmread(sent), pydicom.dcmread(stored)
    assert received.SOPInstanceUID == original.SOPInstanceUID
    assert received.PixelData == original.PixelData
    from dicom_node.db import Index

    index = Index(node_url(node))
    (row,) = index.instances()
    index.close()
    assert row.sha256 == hashlib.sha256(stored.read_bytes()).hexdigest()
    assert row.size == stored.stat().st_size
    assert row.calling_ae == "STORESCU" and row.peer_host == "127.0.0.1"
    assert row.modality == "DX" and row.body_part == "CHEST"


def node_url(node) -> str:
    from dicom_node.config import load_settings

    return load_settings(node.config).storage.effective_database_url


def test_duplicate_identical_is_success_and_changed_bytes_become_a_version(make_node, tmp_path):
    node = make_node()
    first = with_new_uids(SMALL_SAMPLE, tmp_path / "a.dcm")
    assert storescu(node.port, first).returncode == 0
    assert storescu(node.port, first).returncode == 0
    assert status(node)["instances"] == 1
    changed = pydicom.dcmread(first)
    changed.PatientComments = "corrected"
    changed.save_as(tmp_path / "b.dcm")
    assert storescu(node.port, tmp_path / "b.dcm").returncode == 0
    from dicom_node.db import Index

    index = Index(node_url(node))
    rows = index.instances()
    index.close()
    assert [r.version for r in rows] == [1, 2]
    assert rows[0].sop_instance_uid == rows[1].sop_instance_uid
    assert rows[0].sha256 != rows[1].sha256
    assert "kept as version 2" in node.log_text()


def test_late_image_reopens_a_completed_study_as_a_new_version(make_node, tmp_path):
    node = make_node()
    study_uid = pydicom.uid.generate_uid()
    assert (
        storescu(
            node.port, with_new_uids(SMALL_SAMPLE, tmp_path / "1.dcm", study_uid=study_uid)
        ).returncode
        == 0
    )
    assert wait_for(lambda: status(node)["jobs"].get("queued") == 1)
    assert (
        storescu(
            node.port, with_new_uids(SMALL_SAMPLE, tmp_path / "2.dcm", study_uid=study_uid)
        ).returncode
        == 0
    )
    assert wait_for(lambda: status(node)["jobs"].get("queued") == 2)
    from dicom_node.db import Index

    index = Index(node_url(node))
    (study,) = index.studies()
    index.close()
    assert study.version == 2 and study.state == "queued"


def test_calling_ae_not_on_allow_list_is_rejected(make_node):
    node = make_node(node={"accept_from": [{"ae_title": "PACS"}]})
    refused = echoscu(node.port, calling="INTRUDER")
    assert refused.returncode != 0
    assert "Rejected" in refused.stderr or "rejected" in refused.stderr.lower()
    assert "INTRUDER" in node.log_text() and "not on accept_from" in node.log_text()
    assert echoscu(node.port, calling="PACS").returncode == 0


def test_host_not_on_allow_list_is_rejected(make_node):
    node = make_node(node={"accept_from": [{"ae_title": "PACS", "host": "10.0.0.0/8"}]})
    assert echoscu(node.port, calling="PACS").returncode != 0
    assert "127.0.0.1: not on accept_from" in node.log_text()


def test_sigterm_stops_cleanly(make_node, tmp_path):
    node = make_node()
    assert storescu(node.port, with_new_uids(SMALL_SAMPLE, tmp_path / "x.dcm")).returncode == 0
    assert node.stop() == 0
    assert "stopped" in node.log_text()
    assert not list((node.data_dir / "spool" / ".incoming").iterdir())


def test_associations_beyond_the_maximum_are_rejected(make_node):
    from tests.scu import associate

    node = make_node(node={"max_associations": 1})
    held = associate(node.port)
    try:
        refused = echoscu(node.port)
        assert refused.returncode != 0 and "Rejected" in refused.stderr
    finally:
        held.release()
    assert echoscu(node.port).returncode == 0


def test_tls_association(make_node, tmp_path):
    import ssl

    from pynetdicom import AE
    from pynetdicom.sop_class import Verification

    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-keyout",
            str(tmp_path / "key.pem"),
            "-out",
            str(tmp_path / "cert.pem"),
        ],
        check=True,
        capture_output=True,
    )
    node = make_node(
        node={
            "tls": {
                "enabled": True,
                "cert": str(tmp_path / "cert.pem"),
                "key": str(tmp_path / "key.pem"),
            }
        }
    )
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(tmp_path / "cert.pem"))
    ae = AE()
    ae.add_requested_context(Verification)
    assoc = ae.associate(
        "127.0.0.1", node.port, ae_title="DICOM_NODE", tls_args=(context, "localhost")
    )
    assert assoc.is_established
    assert assoc.send_c_echo().Status == 0
    assoc.release()
    assert echoscu(node.port).returncode != 0  # plain TCP to a TLS port gets nowhere
