"""The job queue on SQLite and PostgreSQL: concurrent workers never take the same job, an
expired lease is taken over, retries wait for their backoff."""

from __future__ import annotations

import datetime as dt
import threading
import time

import pytest

from dicom_node.db import Index, ReceivedInstance, utcnow

pytestmark = pytest.mark.integration


@pytest.fixture
def index(database_url, tmp_path):
    idx = Index(database_url or f"sqlite:///{tmp_path / 'q.sqlite3'}")
    yield idx
    idx.close()


def queue_studies(index: Index, n: int) -> None:
    for i in range(n):
        index.record_instance(
            ReceivedInstance(
                patient_id=f"P{i}",
                study_uid=f"1.2.3.{i}",
                series_uid=f"1.2.3.{i}.1",
                sop_instance_uid=f"1.2.3.{i}.1.1",
                sop_class_uid="1.2.840.10008.5.1.4.1.1.1.1",
                transfer_syntax_uid="1.2.840.10008.1.2.1",
                modality="DX",
                body_part="CHEST",
                accession_number=f"A{i}",
                study_date="20260101",
                size=1,
                sha256="0" * 64,
                calling_ae="T",
                peer_host="127.0.0.1",
            ),
            1,
            f"f{i}",
        )
    later = utcnow() + dt.timedelta(seconds=1)
    for study in index.studies():
        assert index.complete_study(study.id, later, lambda rows: (True, "chest")) is not None


def test_concurrent_workers_never_take_the_same_job(index):
    queue_studies(index, 30)
    claimed: list[tuple[str, int]] = []
    lock = threading.Lock()

    def worker(name: str) -> None:
        while (job := index.claim_next_job(name, lease_s=300)) is not None:
            with lock:
                claimed.append((name, job.id))

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
    first = index.claim_next_job("dies", lease_s=0.5)
    assert index.claim_next_job("other", lease_s=60) is None  # lease still valid
    time.sleep(0.7)
    second = index.claim_next_job("other", lease_s=60)
    assert second is not None and second.id == first.id and second.attempts == 2
    assert index.renew_lease(first.id, "dies", 60) is False
    assert index.finish_job_scored(first, "dies", [], "routine", []) is False


def test_failed_job_waits_for_its_backoff_then_dies(index):
    queue_studies(index, 1)
    job = index.claim_next_job("w", lease_s=60)
    index.fail_job(job, "w", "GPU out of memory", retry_at=utcnow() + dt.timedelta(seconds=0.5))
    assert index.claim_next_job("w", lease_s=60) is None
    time.sleep(0.6)
    again = index.claim_next_job("w", lease_s=60)
    index.fail_job(again, "w", "GPU out of memory", retry_at=None)
    counts = index.counts()
    assert counts["jobs"] == {"dead": 1} and counts["studies"] == {"not_scored": 1}
    assert counts["dead_letters"] == [f"job #{job.id}: GPU out of memory"]
