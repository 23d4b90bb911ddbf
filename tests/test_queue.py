"""The index on SQLite and PostgreSQL: concurrent workers never take the same job, an expired
lease is taken over, retries wait for their backoff, results and exports are recorded once."""

from __future__ import annotations

import datetime as dt
import threading
import time

import pytest

from dicom_node.index import Index
from dicom_node.index.database import utcnow
from dicom_node.index.records import (
    ImageScoreRecord,
    ReceivedInstance,
    ResultObjectRecord,
    ScoredStudy,
)
from dicom_node.index.schema import Priority, ResultKind

pytestmark = pytest.mark.integration


@pytest.fixture
def index(index_url):
    idx = Index(index_url)
    yield idx
    idx.close()


def received(i: int, study: int | None = None, body_part: str = "CHEST") -> ReceivedInstance:
    s = i if study is None else study
    return ReceivedInstance(
        patient_id=f"P{s}",
        patient_name=f"Doe^Patient {s}",
        study_uid=f"1.2.3.{s}",
        series_uid=f"1.2.3.{s}.1",
        sop_instance_uid=f"1.2.3.{s}.1.{i}",
        sop_class_uid="1.2.840.10008.5.1.4.1.1.1.1",
        transfer_syntax_uid="1.2.840.10008.1.2.1",
        modality="DX",
        body_part=body_part,
        accession_number=f"A{s}",
        study_date="20260101",
        size=1,
        sha256=f"{i:064d}",
        calling_ae="T",
        peer_host="127.0.0.1",
    )


def queue_studies(index: Index, n: int) -> None:
    for i in range(n):
        index.catalog.keep_instance(received(i), f"f{i}")
    later = utcnow() + dt.timedelta(seconds=1)
    for study in index.views.studies():
        assert index.catalog.complete_study(study.id, later, True, "chest") is not None


def scored(index: Index, job, score: float, priority: Priority) -> ScoredStudy:
    (image,) = index.catalog.study_contents(job.study_id)
    return ScoredStudy(
        images=(ImageScoreRecord(image.id, score, 90.0, score > 1, {"disc": score}),),
        priority=priority,
        model="m",
        objects=(
            ResultObjectRecord(ResultKind.REPORT, f"{job.study_uid}.9", "9", f"r/{job.id}/sr.dcm"),
            ResultObjectRecord(ResultKind.ANOMALY_MAP, f"{job.study_uid}.8", "8", "sc.dcm"),
        ),
        destinations=("pacs", "archive"),
    )


def test_concurrent_workers_never_take_the_same_job(index):
    queue_studies(index, 30)
    claimed: list[tuple[str, int]] = []
    lock = threading.Lock()

    def worker(name: str) -> None:
        while (job := index.queue.claim_next_job(name, lease_s=300)) is not None:
            with lock:
                claimed.append((name, job.id))
            time.sleep(0.005)  # a little work, so that the others get their turn

    threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ids = [job_id for _, job_id in claimed]
    assert sorted(ids) == sorted(set(ids)) and len(ids) == 30
    assert len({name for name, _ in claimed}) > 1  # the work was actually shared


def test_expired_lease_is_taken_over_and_the_old_owner_cannot_finish(index):
    queue_studies(index, 1)
    first = index.queue.claim_next_job("dies", lease_s=0.5)
    assert index.queue.claim_next_job("other", lease_s=60) is None  # lease still valid
    time.sleep(0.7)
    second = index.queue.claim_next_job("other", lease_s=60)
    assert second is not None and second.id == first.id and second.attempts == 2
    assert index.queue.renew_lease(first.id, "dies", 60) is False
    assert (
        index.queue.finish_scored(first, "dies", scored(index, first, 1, Priority.URGENT)) is False
    )
    assert index.queue.finish_failed(first, "dies", "late", None) is False


def test_failed_job_waits_for_its_backoff_then_dies(index):
    queue_studies(index, 1)
    job = index.queue.claim_next_job("w", lease_s=60)
    retry_at = utcnow() + dt.timedelta(seconds=0.5)
    assert index.queue.finish_failed(job, "w", "GPU out of memory", retry_at)
    assert index.queue.claim_next_job("w", lease_s=60) is None
    time.sleep(0.6)
    again = index.queue.claim_next_job("w", lease_s=60)
    index.queue.finish_failed(again, "w", "GPU out of memory", None)
    status = index.views.status()
    assert {k.value: v for k, v in status.jobs.items()} == {"dead": 1}
    assert {k.value: v for k, v in status.studies.items()} == {"not_scored": 1}
    assert status.dead_letters == [f"job #{job.id}: GPU out of memory"]


def test_scored_job_records_results_objects_and_one_export_per_destination(index):
    queue_studies(index, 1)
    job = index.queue.claim_next_job("w", lease_s=60)
    assert index.queue.finish_scored(job, "w", scored(index, job, 2.0, Priority.URGENT))
    first = index.outbox.claim_due_export(lease_s=60)
    second = index.outbox.claim_due_export(lease_s=60)
    assert {first.destination, second.destination} == {"pacs", "archive"}
    assert [f for _, f in first.objects] == [f"r/{job.id}/sr.dcm", "sc.dcm"]  # the SR first
    assert index.outbox.claim_due_export(lease_s=60) is None  # both are out
    index.outbox.export_sent(first.id)
    index.outbox.export_failed(second.id, "refused", None)
    (row,) = index.views.worklist()
    assert row.priority is Priority.URGENT and row.score == 2.0
    assert row.deliveries == {first.destination: "sent", second.destination: "dead (refused)"}
    assert index.outbox.earlier_reports(job.study_id, before_version=2) == [
        (f"r/{job.id}/sr.dcm", f"{job.study_uid}.9")
    ]
    assert index.outbox.earlier_reports(job.study_id, before_version=1) == []


def test_a_retried_export_sends_only_the_objects_not_yet_acknowledged(index):
    queue_studies(index, 1)
    job = index.queue.claim_next_job("w", lease_s=60)
    index.queue.finish_scored(job, "w", scored(index, job, 2.0, Priority.URGENT))
    due = index.outbox.claim_due_export(lease_s=60)
    (report, _), (anomaly_map, sc_file) = due.objects
    index.outbox.object_delivered(due.id, report)  # the PACS stored the SR, then failed
    index.outbox.export_failed(due.id, "0xA700", retry_at=utcnow())
    again = list(iter(lambda: index.outbox.claim_due_export(60), None))  # every due export
    (retry,) = [e for e in again if e.id == due.id]
    assert retry.objects == ((anomaly_map, sc_file),)
