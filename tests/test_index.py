"""The index on SQLite and PostgreSQL: the study lifecycle, reading order, loop heartbeats, and
the schema: created by Alembic, and an index made by release 0.1.0 upgraded in place."""

from __future__ import annotations

import datetime as dt
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from dicom_node.errors import IndexSchemaError
from dicom_node.index import Index
from dicom_node.index.database import HEAD_REVISION, Database, utcnow
from dicom_node.index.records import LoopHealth
from dicom_node.index.schema import Base, Priority, StudyState
from tests.test_queue import received, scored

pytestmark = pytest.mark.integration

# Made by release 0.1.0 (commit 2062cd3) with its own `Index`: three studies (scored and
# urgent with two exports, sent and pending; queued; skipped), no alembic_version table.
RELEASE_0_1_0 = Path(__file__).parent / "data" / "index_release_0.1.0.sqlite3"


@pytest.fixture
def index(index_url):
    idx = Index(index_url)
    yield idx
    idx.close()


def test_late_image_reopens_a_complete_study_as_its_next_version(index):
    index.catalog.keep_instance(received(1, study=7), "a")
    later = utcnow() + dt.timedelta(seconds=1)
    (study,) = index.views.studies()
    assert index.catalog.complete_study(study.id, later, True, "chest") is StudyState.QUEUED
    index.catalog.keep_instance(received(2, study=7), "b")
    (study,) = index.views.studies()
    assert study.version == 2 and study.state is StudyState.RECEIVING
    assert "reopened: new image after queued of version 1" in study.reason
    assert [i.study_version for i in index.catalog.study_contents(study.id)] == [1, 2]


def test_a_study_that_changed_after_the_sweep_looked_is_not_completed(index):
    index.catalog.keep_instance(received(1), "a")
    (study,) = index.views.studies()
    before = utcnow() - dt.timedelta(seconds=5)  # the image arrived after this "quiet since"
    assert index.catalog.complete_study(study.id, before, True, "chest") is None
    assert index.views.studies()[0].state is StudyState.RECEIVING


def test_newest_version_of_each_instance_is_what_the_study_holds(index):
    assert index.catalog.keep_instance(received(1), "a") == 1
    assert index.catalog.keep_instance(received(1), "a") is None  # the same bytes again
    assert index.catalog.keep_instance(replace(received(1), sha256="f" * 64), "b") == 2
    (only,) = index.catalog.study_contents(index.views.studies()[0].id)
    assert only.version == 2 and only.file == "b"


def test_worklist_reads_urgent_first_then_by_score_then_by_waiting_time(index):
    for i in range(4):
        index.catalog.keep_instance(received(i), f"f{i}")
    later = utcnow() + dt.timedelta(seconds=1)
    for study in index.views.studies():  # completed in id order: 0 waits longest
        index.catalog.complete_study(study.id, later, True, "chest")
    plan = {
        0: (1.0, Priority.ROUTINE),
        1: (0.5, Priority.URGENT),
        2: (3.0, Priority.ROUTINE),
        3: (0.5, Priority.URGENT),
    }
    while (job := index.queue.claim_next_job("w", 60)) is not None:
        score, priority = plan[int(job.study_uid.rsplit(".", 1)[1])]
        index.queue.finish_scored(job, "w", scored(index, job, score, priority))
    order = [r.study_uid.rsplit(".", 1)[1] for r in index.views.worklist()]
    assert order == ["1", "3", "2", "0"]  # urgent (ties: longest waiting), then by score


def test_loop_heartbeats_are_reported_and_forgotten(index):
    now = utcnow()
    index.heartbeats.beat(LoopHealth("scoring", "host:1:a", 60, now, 0, ""))
    index.heartbeats.beat(
        LoopHealth("delivery", "host:1:a", 60, now - dt.timedelta(seconds=90), 0, "")
    )
    index.heartbeats.beat(
        LoopHealth("completion", "host:1:a", 60, now, 3, "OperationalError: gone")
    )
    problems = {h.loop: h.problem(now) for h in index.views.status().loops}
    assert problems["scoring"] is None
    assert "no completed cycle for 90 s" in problems["delivery"]
    assert "failing (3 cycle(s) in a row): OperationalError" in problems["completion"]
    index.heartbeats.forget("scoring", "host:1:a")
    assert [h.loop for h in index.views.status().loops] == ["completion", "delivery"]
    index.heartbeats.forget_owner("host:1:a")
    assert index.views.status().loops == []


def schema_drift(index: Index) -> list:
    """Differences between the tables in the database and those `schema.py` declares."""
    with index.db.engine.connect() as conn:
        return compare_metadata(MigrationContext.configure(conn), Base.metadata)


def test_migrations_build_exactly_the_schema_the_code_declares(index):
    assert schema_drift(index) == []


def test_readers_do_not_create_or_upgrade_an_index(tmp_path):
    url = f"sqlite:///{tmp_path / 'none.sqlite3'}"
    with pytest.raises(IndexSchemaError, match="`dicom-node serve` creates it"):
        Index(url, upgrade=False)
    old = tmp_path / "old.sqlite3"
    shutil.copy(RELEASE_0_1_0, old)
    with pytest.raises(IndexSchemaError, match="at schema revision 0001"):
        Index(f"sqlite:///{old}", upgrade=False)


def _load_release_0_1_0(url: str) -> None:
    """The 0.1.0 index in the database at `url`: on SQLite the file itself; on PostgreSQL its
    schema (revision 0001) with the same rows copied in."""
    if url.startswith("sqlite"):
        shutil.copy(RELEASE_0_1_0, sa.engine.make_url(url).database)
        return
    from alembic import command
    from alembic.config import Config

    from dicom_node.index.database import MIGRATIONS

    db = Database(url)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    source = sa.create_engine(f"sqlite:///{RELEASE_0_1_0}")
    with db.engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0001")
        conn.exec_driver_sql("DROP TABLE alembic_version")  # 0.1.0 had none
        tables = sa.MetaData()
        tables.reflect(conn)
        with source.connect() as old:
            for table in tables.sorted_tables:
                rows = [dict(r._mapping) for r in old.execute(sa.select(table))]
                if rows:
                    conn.execute(table.insert(), rows)
                    if "id" in table.c:
                        conn.exec_driver_sql(
                            f"SELECT setval(pg_get_serial_sequence('{table.name}', 'id'), "
                            f"(SELECT max(id) FROM {table.name}))"
                        )
    source.dispose()
    db.close()


def test_index_of_release_0_1_0_is_upgraded_in_place_and_keeps_working(index_url):
    _load_release_0_1_0(index_url)
    assert Database(index_url).schema_revision() == "0001"
    index = Index(index_url)
    try:
        assert index.db.schema_revision() == HEAD_REVISION
        status = index.views.status()
        assert status.instances == 3
        assert {k.value: v for k, v in status.studies.items()} == {
            "queued": 1,
            "scored": 1,
            "skipped": 1,
        }
        (row,) = index.views.worklist()
        assert row.priority is Priority.URGENT and row.deliveries == {
            "pacs": "sent",
            "archive": "pending",
        }
        assert {s.priority for s in index.views.studies() if s.state is not StudyState.SCORED} == {
            None
        }
        # The pending export still sends its objects, now found through result-object rows.
        due = index.outbox.claim_due_export(lease_s=60)
        files = tuple(f for _, f in due.objects)
        assert due.destination == "archive" and files == (
            f"results/{row.study_uid}/v1/sr.dcm",
            f"results/{row.study_uid}/v1/sc_001.dcm",
        )
        assert index.outbox.earlier_reports(1, before_version=2) == [(files[0], "")]
        # The queued study of 0.1.0 is scored by this release.
        job = index.queue.claim_next_job("w", 60)
        assert index.queue.finish_scored(job, "w", scored(index, job, 0.1, Priority.ROUTINE))
        assert len(index.views.worklist()) == 2
    finally:
        index.close()
    again = Index(index_url)  # a second start: nothing to do
    try:
        assert again.db.schema_revision() == HEAD_REVISION
        assert schema_drift(again) == []  # upgraded: the same schema as a new index
    finally:
        again.close()


def test_sqlite_transactions_wait_their_turn_behind_another_process(tmp_path):
    """Another process holding the index's writer turn (its lock file) makes a transaction
    wait until it lets go, instead of failing or busy-sleeping on SQLite's lock."""
    import subprocess
    import sys
    import time

    lock = tmp_path / "index.sqlite3.lock"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys, time\n"
            f"fd = os.open({str(lock)!r}, os.O_RDWR | os.O_CREAT)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX)\n"
            "print('held', flush=True)\n"
            "time.sleep(1.0)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "held"
    db = Database(f"sqlite:///{tmp_path / 'index.sqlite3'}")
    try:
        start = time.monotonic()
        with db.session() as s:
            s.execute(sa.text("SELECT 1"))
        assert time.monotonic() - start > 0.5  # it waited for the holder's turn to end
    finally:
        db.close()
        holder.wait()


def test_first_images_of_one_study_indexed_at_once_by_two_processes_both_go_in(index_url):
    """Two node processes (two connections here) index the first images of a new patient,
    study and series at the same moment: both are kept, none refused."""
    import threading

    first, second = Index(index_url), Index(index_url)
    try:
        for round_ in range(20):
            start = threading.Barrier(2)
            errors: list[BaseException] = []

            def keep(index: Index, n: int, round_=round_, start=start, errors=errors) -> None:
                rec = replace(
                    received(1000 + round_),
                    sop_instance_uid=f"1.2.{round_}.{n}",
                    sha256=f"{round_:032d}{n:032d}",
                )
                start.wait()
                try:
                    index.catalog.keep_instance(rec, f"f{round_}.{n}")
                except BaseException as exc:
                    errors.append(exc)

            threads = [
                threading.Thread(target=keep, args=(ix, n)) for n, ix in enumerate((first, second))
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert errors == []
        assert first.views.status().instances == 40
        assert len(first.views.studies()) == 20
    finally:
        first.close()
        second.close()
