"""Completion by MPPS (a pynetdicom SCU as the modality), by completion rules, and the MPPS
requests the node cannot apply."""

from __future__ import annotations

import datetime as dt
import time

import pydicom
import pytest
from pydicom.uid import generate_uid

from dicom_node.config import CompletionRule, StudySettings
from dicom_node.dicom.terms import StepRequestStatus
from dicom_node.index.performed_steps import StepRecord
from dicom_node.index.records import ReceivingStudy
from dicom_node.index.schema import StepStatus, StudyState
from dicom_node.pipeline.completion import completion_of
from dicom_node.testing.orthanc import Orthanc
from dicom_node.testing.peers import free_port, storescu
from tests import dicom_fixtures as fx
from tests.nodes import FAST_WORKER, wait_for
from tests.scu import MPPS_CONTEXT, mpps_association, performed_step

LONG_QUIET = {"stable_after_s": 300, "completion": []}  # only an MPPS completes in a test
SR_CLASS = "1.2.840.10008.5.1.4.1.1.88.34"


def send_images(port: int, tmp_path, study_uid: str, names: list[str]) -> list[str]:
    uids = []
    for i, name in enumerate(names):
        path = fx.with_new_uids(fx.SAMPLES_DIR / name, tmp_path / f"{i}.dcm", study_uid=study_uid)
        assert storescu(port, path).returncode == 0
        uids.append(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)
    return uids


def report_step(port: int, study_uid: str, images: tuple[str, ...], final: str = "COMPLETED"):
    """N-CREATE (IN PROGRESS) then N-SET (`final`, listing `images`); returns the step UID."""
    uid = generate_uid()
    assoc = mpps_association(port)
    try:
        status, _ = assoc.send_n_create(performed_step("IN PROGRESS", study_uid), MPPS_CONTEXT, uid)
        assert status.Status == 0x0000
        status, _ = assoc.send_n_set(performed_step(final, images=images), MPPS_CONTEXT, uid)
        assert status.Status == 0x0000
    finally:
        assoc.release()
    return uid


@pytest.mark.integration
def test_a_completed_mpps_brings_the_sr_to_orthanc_in_seconds(make_node, tmp_path):
    port = free_port()
    orthanc = Orthanc(tmp_path / "orthanc", {"node": ("DICOM_NODE", "127.0.0.1", port)})
    try:
        node = make_node(
            node={"port": port},
            studies=LONG_QUIET,
            worker=FAST_WORKER,
            destinations=[
                {
                    "name": "orthanc",
                    "ae_title": "ORTHANC",
                    "host": "127.0.0.1",
                    "port": orthanc.dicom_port,
                }
            ],
        )
        study_uid = generate_uid()
        images = send_images(
            port, tmp_path, study_uid, ["zhanglab_01_normal.dcm", "zhanglab_03_pneumonia.dcm"]
        )
        started = time.monotonic()
        report_step(port, study_uid, tuple(images))

        def sr_at_orthanc():
            found = orthanc.post(
                "/tools/find",
                {
                    "Level": "Instance",
                    "Query": {"StudyInstanceUID": study_uid, "SOPClassUID": SR_CLASS},
                },
            )
            return found or None

        assert wait_for(sr_at_orthanc, timeout=60, every=0.2), node.log_text()[-2000:]
        elapsed = time.monotonic() - started
        assert elapsed < 30, f"SR at Orthanc {elapsed:.1f} s after the MPPS (quiet period 300 s)"
        (study,) = node.index.views.studies()
        assert study.completed_by.startswith("MPPS ") and "all 2 instance(s)" in study.completed_by
    finally:
        orthanc.stop()


@pytest.mark.integration
def test_a_step_listing_an_image_not_yet_received_waits_for_it(make_node, tmp_path):
    node = make_node(studies=LONG_QUIET, worker={"enabled": False})
    study_uid = generate_uid()
    (first,) = send_images(node.port, tmp_path, study_uid, ["zhanglab_01_normal.dcm"])
    later = generate_uid()
    report_step(node.port, study_uid, (first, later))
    time.sleep(2)  # four sweeps of the completion loop
    assert node.index.views.studies()[0].state is StudyState.RECEIVING
    path = fx.with_new_uids(
        fx.SAMPLES_DIR / "zhanglab_01_normal.dcm", tmp_path / "late.dcm", study_uid=study_uid
    )
    ds = pydicom.dcmread(path)
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = later
    ds.save_as(path, enforce_file_format=True)
    assert storescu(node.port, path).returncode == 0
    study = wait_for(
        lambda: next((s for s in node.index.views.studies() if s.state is StudyState.QUEUED), None),
        timeout=10,
    )
    assert study and study.completed_by.startswith("MPPS"), node.index.views.studies()


@pytest.mark.integration
def test_a_discontinued_step_is_recorded_and_completes_nothing(make_node, tmp_path):
    node = make_node(studies=LONG_QUIET, worker={"enabled": False})
    study_uid = generate_uid()
    images = send_images(node.port, tmp_path, study_uid, ["zhanglab_01_normal.dcm"])
    uid = report_step(node.port, study_uid, tuple(images), final="DISCONTINUED")
    assert node.index.performed_steps.get(uid).status is StepStatus.DISCONTINUED
    time.sleep(1.5)
    assert node.index.views.studies()[0].state is StudyState.RECEIVING
    assert "MPPS" in node.log_text() and "DISCONTINUED" in node.log_text()


@pytest.mark.integration
def test_mpps_requests_that_cannot_be_applied_get_their_status(make_node):
    node = make_node(studies=LONG_QUIET, worker={"enabled": False})
    assoc = mpps_association(node.port)
    try:
        unknown = generate_uid()
        status, _ = assoc.send_n_set(performed_step("COMPLETED"), MPPS_CONTEXT, unknown)
        assert status.Status == StepRequestStatus.NO_SUCH_INSTANCE
        status, _ = assoc.send_n_create(performed_step("COMPLETED"), MPPS_CONTEXT, generate_uid())
        assert status.Status == StepRequestStatus.INVALID_ATTRIBUTE_VALUE
        uid = generate_uid()
        status, _ = assoc.send_n_create(performed_step("IN PROGRESS"), MPPS_CONTEXT, uid)
        assert status.Status == StepRequestStatus.SUCCESS
        status, _ = assoc.send_n_create(performed_step("IN PROGRESS"), MPPS_CONTEXT, uid)
        assert status.Status == StepRequestStatus.DUPLICATE_INSTANCE
        status, _ = assoc.send_n_set(performed_step("DONE"), MPPS_CONTEXT, uid)
        assert status.Status == StepRequestStatus.INVALID_ATTRIBUTE_VALUE
        bad_ref = performed_step("COMPLETED", images=("../../etc/passwd",))
        status, _ = assoc.send_n_set(bad_ref, MPPS_CONTEXT, uid)
        assert status.Status == StepRequestStatus.INVALID_ATTRIBUTE_VALUE
        status, _ = assoc.send_n_set(performed_step("COMPLETED"), MPPS_CONTEXT, uid)
        assert status.Status == StepRequestStatus.SUCCESS
        status, _ = assoc.send_n_set(performed_step("DISCONTINUED"), MPPS_CONTEXT, uid)
        assert status.Status == StepRequestStatus.PROCESSING_FAILURE  # final: no more changes
        assert node.index.performed_steps.get(uid).status is StepStatus.COMPLETED
    finally:
        assoc.release()
    assert "may no longer be updated" in node.log_text()


# -- the completion decision, without a node ------------------------------------------------
NOW = dt.datetime(2026, 11, 26, 12, 0, 0)


def receiving(seconds_quiet: float, modality: str = "DX", n: int = 1, ae: str = "PACS"):
    return ReceivingStudy(
        1,
        "1.2.3",
        NOW - dt.timedelta(seconds=seconds_quiet),
        frozenset({ae}),
        frozenset({modality}),
        frozenset(f"1.2.3.{i}" for i in range(n)),
    )


STUDIES = StudySettings(
    stable_after_s=60,
    completion=(
        CompletionRule(calling_ae="CT_SCANNER", stable_after_s=120),
        CompletionRule(modality="DX", stable_after_s=5),
        CompletionRule(modality="CR", expected_instances=2),
    ),
)


def test_the_first_matching_rule_sets_the_quiet_period():
    assert completion_of(receiving(4), [], STUDIES, NOW) is None
    assert completion_of(receiving(5), [], STUDIES, NOW) == "quiet for 5 s (rule modality DX)"
    assert completion_of(receiving(100, ae="CT_SCANNER"), [], STUDIES, NOW) is None
    assert completion_of(receiving(59, modality="MR"), [], STUDIES, NOW) is None
    assert (
        completion_of(receiving(60, modality="MR"), [], STUDIES, NOW) == "quiet for 60 s (default)"
    )


def test_an_expected_instance_count_completes_at_once_and_the_quiet_period_still_applies():
    assert completion_of(receiving(0, "CR", n=1), [], STUDIES, NOW) is None
    assert "2 of 2 expected" in completion_of(receiving(0, "CR", n=2), [], STUDIES, NOW)
    assert (
        completion_of(receiving(60, "CR", n=1), [], STUDIES, NOW)
        == "quiet for 60 s (rule modality CR)"
    )


def test_only_a_completed_step_whose_instances_all_arrived_completes_a_study():
    study = receiving(0, "MR", n=2)
    listed = StepRecord("9.9", "1.2.3", StepStatus.COMPLETED, "MOD", ("1.2.3.0", "1.2.3.1"))
    assert completion_of(study, [listed], STUDIES, NOW).startswith("MPPS 9.9 COMPLETED")
    missing = StepRecord("9.9", "1.2.3", StepStatus.COMPLETED, "MOD", ("1.2.3.0", "1.2.3.7"))
    assert completion_of(study, [missing], STUDIES, NOW) is None
    silent = StepRecord("9.9", "1.2.3", StepStatus.COMPLETED, "MOD", ())
    assert completion_of(study, [silent], STUDIES, NOW) is None  # lists nothing: proves nothing


def test_a_completion_rule_needs_something_to_decide_by():
    assert CompletionRule(modality="CR").check() is not None
    assert CompletionRule(modality="CR", expected_instances=0).check() is not None
    assert CompletionRule(calling_ae="X" * 17, stable_after_s=5).check() is not None
