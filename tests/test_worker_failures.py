"""The worker and delivery when things go wrong: PACS down, dead worker, undecodable image, a
destination that refuses the SOP class, a spool file that has gone."""

from __future__ import annotations

import pydicom
import pytest

from dicom_node.app.pacs import ReceivingPacs
from dicom_node.index.objects import open_storage
from dicom_node.samples import SAMPLES_DIR
from dicom_node.testing.peers import free_port, storescu
from tests.nodes import FAST_WORKER, destination, send_study, start_worker, wait_for

pytestmark = pytest.mark.integration

SR_CLASS = "1.2.840.10008.5.1.4.1.1.88.34"


def test_pacs_down_during_export_then_up_is_delivered_once(make_node, tmp_path):
    pacs_port = free_port()
    node = make_node(worker=FAST_WORKER, destinations=destination(pacs_port))
    study = send_study(node.port, tmp_path)
    assert wait_for(
        lambda: (
            node.counts("exports").get("pending") == 1
            and "association not established" in node.log_text()
        ),
        timeout=60,
    )
    pacs = ReceivingPacs(tmp_path / "pacs", port=pacs_port)
    try:
        assert wait_for(lambda: node.counts("exports").get("sent") == 1, timeout=60)
        (export,) = node.index.views.exports()
        assert export.attempts >= 2  # failed while the PACS was down, then succeeded
        assert pacs.reports_for(study) == 1
    finally:
        pacs.stop()


def test_dead_workers_job_is_taken_over_and_finishes_once(make_node, pacs, tmp_path):
    node = make_node(destinations=destination(pacs.port))  # no worker in the node
    study = send_study(node.port, tmp_path)
    assert wait_for(lambda: node.counts("jobs").get("queued") == 1)
    dead = node.index.queue.claim_next_job("worker-that-died", lease_s=1)  # never renewed
    assert dead is not None
    worker, log = start_worker(node.config, tmp_path)
    try:
        assert wait_for(lambda: node.counts("exports").get("sent") == 1, timeout=120), (
            log.read_text()
        )
        assert "lease of worker-that-died expired" in log.read_text()
        # The dead worker wakes up and reports: its lease is gone, nothing is recorded twice.
        assert node.index.queue.finish_failed(dead, "worker-that-died", "late", None) is False
        assert node.counts("jobs") == {"done": 1}
        assert pacs.reports_for(study) == 1
    finally:
        worker.terminate()
        worker.wait(timeout=60)


def test_undecodable_image_ends_not_scored_and_the_node_keeps_working(make_node, pacs, tmp_path):
    node = make_node(worker=FAST_WORKER, destinations=destination(pacs.port))
    broken = broken_jpeg(tmp_path / "broken.dcm")
    assert storescu(node.port, tmp_path / "broken.dcm", option="-xy").returncode == 0
    assert wait_for(lambda: node.counts("studies").get("not_scored") == 1, timeout=60)
    (study,) = node.index.views.studies()
    assert "cannot decode pixel data" in study.reason
    assert node.counts("jobs") == {"dead": 1}
    assert not node.counts("exports")
    good = send_study(node.port, tmp_path)
    assert wait_for(lambda: pacs.reports_for(good) == 1, timeout=60)
    assert pacs.reports_for(broken) == 0


class RefusingPacs(ReceivingPacs):
    """Answers 0x0122 (SOP class not supported) to structured reports."""

    def _store(self, event) -> int:
        if event.request.AffectedSOPClassUID == SR_CLASS:
            return 0x0122
        return super()._store(event)


def test_destination_refusing_the_sop_class_is_dead_lettered_with_its_status(make_node, tmp_path):
    pacs = RefusingPacs(tmp_path / "pacs")
    node = make_node(worker=FAST_WORKER, destinations=destination(pacs.port))
    try:
        send_study(node.port, tmp_path)
        assert wait_for(lambda: node.counts("exports").get("dead") == 1, timeout=60)
        (letter,) = node.status().dead_letters
        assert "answered 0x0122" in letter and letter.startswith("pacs:")
    finally:
        pacs.stop()


def test_missing_spool_file_is_retried_and_alarmed_not_blamed_on_the_study(
    make_node, pacs, tmp_path
):
    node = make_node(destinations=destination(pacs.port))  # completion only, no worker yet
    study = send_study(node.port, tmp_path)
    assert wait_for(lambda: node.counts("jobs").get("queued") == 1)
    (spooled,) = (node.data_dir / "spool").rglob("*.dcm")
    hidden = spooled.rename(tmp_path / "hidden.dcm")
    node.stop()
    node = make_node(
        node={"port": node.port}, worker=FAST_WORKER, destinations=destination(pacs.port)
    )
    assert wait_for(lambda: "is missing" in node.log_text(), timeout=30)
    scoring = next(h for h in node.running.health() if h.loop == "scoring")
    assert scoring.failures >= 1 and "is missing" in scoring.last_error
    assert node.counts("studies") == {"queued": 1}  # not "not scored": the study is fine
    hidden.rename(spooled)  # the file system is back
    assert wait_for(lambda: pacs.reports_for(study) == 1, timeout=60)
    assert node.counts("jobs") == {"done": 1}
    assert all(h.failures == 0 for h in node.running.health())


def test_layouts_the_model_cannot_judge_end_not_scored_at_once(make_node, pacs, tmp_path):
    from tests import dicom_fixtures as fx

    node = make_node(worker=FAST_WORKER, destinations=destination(pacs.port))
    sent = {
        "Bits Allocated 1": fx.one_bit(tmp_path / "1bit.dcm"),
        "2 frames": fx.two_frames(tmp_path / "2frames.dcm"),
    }
    for path in sent.values():
        assert storescu(node.port, path).returncode == 0
    zero = pydicom.dcmread(fx.zero_window(tmp_path / "w0.dcm")).StudyInstanceUID
    assert storescu(node.port, tmp_path / "w0.dcm").returncode == 0
    assert wait_for(lambda: node.counts("studies") == {"not_scored": 2, "scored": 1}, 60)
    reasons = " | ".join(s.reason for s in node.index.views.studies())
    assert "2 frames; the model judges single-frame radiographs only" in reasons
    assert "Bits Allocated 1; the model judges 8- and 16-bit radiographs" in reasons
    assert "retried" not in node.log_text()  # decided at the first attempt
    assert wait_for(lambda: pacs.reports_for(zero) == 1, timeout=30)  # width 0: window ignored


class BusyOnceForImagesPacs(ReceivingPacs):
    """Stores the SR, answers 0xA700 (out of resources) to the first Secondary Capture."""

    busy = True

    def _store(self, event) -> int:
        if event.request.AffectedSOPClassUID != SR_CLASS and self.busy:
            self.busy = False
            return 0xA700
        return super()._store(event)


def test_a_partial_export_does_not_resend_acknowledged_objects(make_node, tmp_path):
    pacs = BusyOnceForImagesPacs(tmp_path / "pacs")
    node = make_node(worker=FAST_WORKER, destinations=destination(pacs.port))
    try:
        study = send_study(node.port, tmp_path)
        assert wait_for(lambda: node.counts("exports").get("sent") == 1, timeout=60)
        kinds = sorted(kind for s, kind, _ in pacs.received if s == study)
        assert kinds == ["Comprehensive 3D SR Storage", "Secondary Capture Image Storage"]
        (export,) = node.index.views.exports()
        assert export.attempts == 2
    finally:
        pacs.stop()


def test_a_pacs_that_declines_jpeg_gets_the_anomaly_map_uncompressed(make_node, tmp_path):
    from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

    pacs = ReceivingPacs(
        tmp_path / "pacs", transfer_syntaxes=(ExplicitVRLittleEndian, ImplicitVRLittleEndian)
    )
    node = make_node(worker=FAST_WORKER, destinations=destination(pacs.port))
    try:
        study = send_study(node.port, tmp_path)
        assert wait_for(lambda: node.counts("exports").get("sent") == 1, timeout=60)
        (sc_path,) = [p for s, kind, p in pacs.received if s == study and "Secondary" in kind]
        sc = pydicom.dcmread(sc_path)
        assert sc.PhotometricInterpretation == "RGB" and sc.pixel_array.ndim == 3
        assert sc.LossyImageCompression == "01"  # it was JPEG once: the header says so
    finally:
        pacs.stop()


def broken_jpeg(out) -> str:
    """A one-image study whose JPEG stream is cut short: it cannot be decoded."""
    ds = pydicom.dcmread(SAMPLES_DIR / "zhanglab_04_pneumonia.dcm")
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    ds.StudyInstanceUID = pydicom.uid.generate_uid()
    fragments = pydicom.encaps.generate_fragments(ds.PixelData)
    ds.PixelData = pydicom.encaps.encapsulate([next(fragments)[:300] + b"\xff\xd9"])
    ds.save_as(out)
    return ds.StudyInstanceUID


def test_a_long_queue_is_scored_in_one_batch_and_a_bad_study_fails_alone(make_node, tmp_path):
    from dicom_node.app.assembly import load_configured_model
    from dicom_node.pipeline.analysis import StudyAnalyser
    from dicom_node.pipeline.scoring import ScoringStep

    node = make_node()  # no worker: the queue builds up
    good = [send_study(node.port, tmp_path) for i in range(2)]
    broken = broken_jpeg(tmp_path / "broken.dcm")
    assert storescu(node.port, tmp_path / "broken.dcm", option="-xy").returncode == 0
    assert wait_for(lambda: node.counts("jobs").get("queued") == 3, timeout=30)
    analyser = StudyAnalyser(
        node.settings,
        load_configured_model(node.settings),
        open_storage(node.settings.storage, node.index.db),
    )
    passes = []
    score = analyser.score
    analyser.score = lambda studies: passes.append(len(studies)) or score(studies)
    assert ScoringStep(node.settings, node.index, analyser, "batch-test")() is True
    assert passes == [2]  # one cycle: both good studies through the model together
    states = {s.study_uid: s.state.value for s in node.index.views.studies()}
    assert states == {good[0]: "scored", good[1]: "scored", broken: "not_scored"}
    assert node.counts("jobs") == {"done": 2, "dead": 1}
