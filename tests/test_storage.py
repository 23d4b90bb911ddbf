"""The two storage backends keep the same promises: staged bytes appear only once placed in
the index's transaction, a write replaces whole, a missing key is FileNotFoundError, delete
forgets, and keys cannot leave the store."""

from __future__ import annotations

import pytest

from dicom_node.index import Index
from dicom_node.index.objects import DatabaseObjects
from dicom_node.storage import instance_key
from dicom_node.storage.files import FileObjects


@pytest.fixture(params=["files", "sqlite", "postgresql"])
def objects(request, tmp_path):
    if request.param == "files":
        index = Index(f"sqlite:///{tmp_path / 'index.sqlite3'}")
        yield FileObjects(tmp_path / "objects"), index
    else:
        url = (
            request.getfixturevalue("postgres_url")
            if request.param == "postgresql"
            else f"sqlite:///{tmp_path / 'index.sqlite3'}"
        )
        index = Index(url)
        yield DatabaseObjects(index.db, "spool/"), index
    index.close()


def test_staged_bytes_are_kept_once_placed_in_the_transaction(objects):
    store, index = objects
    staged = store.stage([b"DICM", b"-bytes"])
    assert staged.size == 10
    key = instance_key(staged.sha256)
    with pytest.raises(FileNotFoundError):
        store.read(key)
    with index.db.session() as session:
        store.place(staged, key, session)
    store.discard(staged)
    assert store.read(key) == b"DICM-bytes"
    again = store.stage([b"DICM-bytes"])  # the same content placed twice: one object
    with index.db.session() as session:
        store.place(again, key, session)
    store.discard(again)
    assert store.read(key) == b"DICM-bytes"


def test_a_failed_transaction_keeps_nothing_in_the_database(objects):
    store, index = objects
    if isinstance(store, FileObjects):
        pytest.skip("files are renamed into place before the index commits (a harmless orphan)")
    staged = store.stage([b"lost"])
    with pytest.raises(RuntimeError), index.db.session() as session:
        store.place(staged, "k", session)
        raise RuntimeError("the index row could not be written")
    with pytest.raises(FileNotFoundError):
        store.read("k")


def test_write_replaces_and_delete_forgets(objects):
    store, _ = objects
    store.write("results/study-1/v1/sr.dcm", b"first")
    store.write("results/study-1/v1/sr.dcm", b"second")
    assert store.read("results/study-1/v1/sr.dcm") == b"second"
    store.delete(["results/study-1/v1/sr.dcm", "never-there"])
    with pytest.raises(FileNotFoundError):
        store.read("results/study-1/v1/sr.dcm")


def test_a_file_key_cannot_leave_its_folder(tmp_path):
    with pytest.raises(ValueError, match="leads outside"):
        FileObjects(tmp_path / "objects").read("../../etc/passwd")
