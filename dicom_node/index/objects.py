"""The database backend of `dicom_node.storage`: bytes in the index's own `stored_object`
table. An instance's bytes are inserted in the same transaction as its row, so the two are
durable together (PostgreSQL: `bytea`, TOASTed and compressed as it sees fit)."""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from dicom_node.index.database import Database, utcnow
from dicom_node.index.schema import StoredObject
from dicom_node.storage import Staged, Storage, digest_of
from dicom_node.storage.files import FileObjects


def open_storage(settings, db: Database) -> Storage:
    """The backend `settings` (the StorageSettings) name: the index's database (`db`) or the
    data folder."""
    if settings.objects == "database":
        return Storage(DatabaseObjects(db, "spool/"), DatabaseObjects(db, "data/"))
    return Storage(FileObjects(settings.spool_dir), FileObjects(settings.data_dir))


class DatabaseObjects:
    """Objects as rows of the index; keys get `prefix` (one table, two namespaces)."""

    def __init__(self, db: Database, prefix: str) -> None:
        self.db = db
        self.prefix = prefix

    def stage(self, chunks: list[bytes]) -> Staged:
        data = b"".join(chunks)
        return Staged(len(data), digest_of([data]), data=data)

    def place(self, staged: Staged, key: str, session: Session) -> None:
        _insert(session, self.prefix + key, staged.data, replace=False)

    def discard(self, staged: Staged) -> None:
        pass  # nothing was written outside the transaction

    def write(self, key: str, data: bytes) -> None:
        with self.db.session() as s:
            _insert(s, self.prefix + key, data, replace=True)

    def read(self, key: str) -> bytes:
        with self.db.session() as s:
            content = s.scalar(
                select(StoredObject.content).where(StoredObject.key == self.prefix + key)
            )
        if content is None:
            raise FileNotFoundError(f"{self.prefix + key}: not in the index's stored objects")
        return bytes(content)

    def delete(self, keys: list[str]) -> None:
        if keys:
            with self.db.session() as s:
                s.execute(
                    delete(StoredObject).where(
                        StoredObject.key.in_([self.prefix + k for k in keys])
                    )
                )

    def clean_leftovers(self) -> int:
        return 0  # an interrupted transaction leaves nothing


def _insert(s: Session, key: str, data: bytes, replace: bool) -> None:
    """INSERT; identical content under a content-named key is already there (ON CONFLICT DO
    NOTHING), a result written again replaces the earlier attempt's (DO UPDATE)."""
    insert = postgresql.insert if s.get_bind().dialect.name == "postgresql" else sqlite.insert
    values = {"key": key, "content": data, "size": len(data), "stored_at": utcnow()}
    statement = insert(StoredObject).values(**values)
    if replace:
        statement = statement.on_conflict_do_update(
            index_elements=["key"], set_={k: v for k, v in values.items() if k != "key"}
        )
    else:
        statement = statement.on_conflict_do_nothing(index_elements=["key"])
    s.execute(statement)
