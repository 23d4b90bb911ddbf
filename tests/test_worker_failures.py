"""The worker and export when things go wrong: PACS down, dead worker, undecodable image, a
destination that refuses the SOP class."""

from __future__ import annotations

import subprocess
import sys

import pydicom
import pytest
import yaml

from dicom_node.db import Export, Index
from dicom_node.app.demo import ReceivingPacs
from dicom_node.samples import SAMPLES_DIR
from tests.conftest import free_port
from tests.dicom_fixtures import with_new_uids
from tests.test_ingest import node_url, status, storescu, wait_for

pytestmark = pytest.mark.integration

FAST_RETRIES = {
    "enabled": True,
    "poll_s": 0.2,
    "lease_s": 3,
    "export": {"max_attempts": 50, "backoff_s": 0.5, "max_backoff_s": 1},
}
SR_CLASS = "1.2.840.10008.5.1.4.1.1.88.34"


def destination(port: int) -> list[dict]:
    return [{"name": "pacs", "ae_title": "DEMO_PACS", "host": "127.0.0.1", "port": port}]


def send_study(node, tmp_path, name="zhanglab_03_pneumonia.dcm") -> str:
    path = with_new_uids(
        SAMPLES_DIR / name,
        tmp_path / f"{name}.{free_port()}.dcm",
        study_uid=pydicom.uid.generate_uid(),
    )
    option = "-xy" if "04" in name or "02" in name else "-xe"
    assert storescu(node.port, path, option=option).returncode == 0
    return pydicom.dcmread(path, stop_before_pixels=True).StudyInstanceUID


def reports_received(pacs: ReceivingPacs, study_uid: str) -> int:
    with pacs.lock:
        return sum(1 for s, kind, _ in pacs.received if s == study_uid and "SR" in kind)


def test_pacs_down_during_export_then_up_is_delivered_once(make_node, tmp_path):
    pacs_port = free_port()
    node = make_node(worker=FAST_RETRIES, destinations=destination(pacs_port))
    study = send_study(node, tmp_path)
    assert wait_for(
        lambda: (
            status(node)["exports"].get("pending") == 1
            and "association not established" in node.log_text()
        ),
        timeout=60,
    )
    (tmp_path / "pacs").mkdir()
    pacs = ReceivingPacs(tmp_path / "pacs", port=pacs_port)
    try:
        assert wait_for(lambda: status(node)["exports"].get("sent") == 1, timeout=60)
        index = Index(node_url(node))
        with index.session() as s:
            (exp,) = s.query(Export).all()
            assert exp.attempts >= 2  # failed while the PACS was down, then succeeded
        index.close()
        assert reports_received(pacs, study) == 1
    finally:
        pacs.stop()


def test_dead_workers_job_is_taken_over_and_finishes_once(make_node, tmp_path):
    (tmp_path / "pacs").mkdir()
    pacs = ReceivingPacs(tmp_path / "pacs")
    node = make_node(destinations=destination(pacs.port))  # worker disabled in the SCP process
    study = send_study(node, tmp_path)
    assert wait_for(lambda: status(node)["jobs"].get("queued") == 1)
    index = Index(node_url(node))
    dead = index.claim_next_job("worker-that-died", lease_s=2)  # claimed, then never renewed
    assert dead is not None
    worker_config = tmp_path / "worker.yaml"
    config = yaml.safe_load(node.config.read_text())
    config["worker"] = FAST_RETRIES
    worker_config.write_text(yaml.safe_dump(config))
    log = (tmp_path / "worker.log").open("w")
    worker = subprocess.Popen(
        [sys.executable, "-m", "dicom_node.app.cli", "worker", "--config", str(worker_config)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        assert wait_for(lambda: status(node)["exports"].get("sent") == 1, timeout=120), (
            tmp_path / "worker.log"
        ).read_text()
        assert "lease of worker-that-died expired" in (tmp_path / "worker.log").read_text()
        # The dead worker wakes up and reports: its lease is gone, nothing is recorded twice.
        assert index.finish_job_scored(dead, "worker-that-died", [], "routine", []) is False
        assert status(node)["jobs"] == {"done": 1}
        assert reports_received(pacs, study) == 1
    finally:
        worker.terminate()
        worker.wait(timeout=60)
        index.close()
        pacs.stop()


def test_undecodable_image_ends_not_scored_and_the_node_keeps_working(make_node, tmp_path):
    (tmp_path / "pacs").mkdir()
    pacs = ReceivingPacs(tmp_path / "pacs")
    node = make_node(worker=FAST_RETRIES, destinations=destination(pacs.port))
    try:
        ds = pydicom.dcmread(SAMPLES_DIR / "zhanglab_04_pneumonia.dcm")
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
        ds.StudyInstanceUID = pydicom.uid.generate_uid()
        fragments = pydicom.encaps.generate_fragments(ds.PixelData)
        ds.PixelData = pydicom.encaps.encapsulate([next(fragments)[:300] + b"\xff\xd9"])
        broken = tmp_path / "broken.dcm"
        ds.save_as(broken)
        assert storescu(node.port, broken, option="-xy").returncode == 0
        assert wait_for(lambda: status(node)["studies"].get("not_scored") == 1, timeout=60)
        index = Index(node_url(node))
        (study,) = index.studies()
        index.close()
        assert "cannot decode pixel data" in study.reason
        assert status(node)["jobs"] == {"dead": 1}
        assert not status(node)["exports"]
        good = send_study(node, tmp_path)
        assert wait_for(lambda: reports_received(pacs, good) == 1, timeout=60)
        assert reports_received(pacs, ds.StudyInstanceUID) == 0
    finally:
        pacs.stop()


class RefusingPacs(ReceivingPacs):
    """Answers 0x0122 (SOP class not supported) to structured reports."""

    def _store(self, event) -> int:
        if event.request.AffectedSOPClassUID == SR_CLASS:
            return 0x0122
        return super()._store(event)


def test_destination_refusing_the_sop_class_is_dead_lettered_with_its_status(make_node, tmp_path):
    (tmp_path / "pacs").mkdir()
    pacs = RefusingPacs(tmp_path / "pacs")
    node = make_node(worker=FAST_RETRIES, destinations=destination(pacs.port))
    try:
        send_study(node, tmp_path)
        assert wait_for(lambda: status(node)["exports"].get("dead") == 1, timeout=60)
        (letter,) = status(node)["dead_letters"]
        assert "answered 0x0122" in letter and letter.startswith("pacs:")
    finally:
        pacs.stop()
