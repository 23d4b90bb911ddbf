"""The durable path every received instance takes, whatever protocol brought it: checks, the
spool write (temporary name, fsync, rename), the version decision and the index commit. Only
then may the protocol answer Success. `InstanceStore.store` never raises: it returns the
status to answer and the reason.
"""

from __future__ import annotations

import logging
import shutil
import threading
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from pydicom.dataset import Dataset
from pydicom.uid import UID
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from dicom_node.dicom.checks import RejectedInstance, check_dataset
from dicom_node.dicom.encoding import check_layout, decode_header, part10_header
from dicom_node.dicom.terms import StoreStatus, body_part_of
from dicom_node.index.catalog import Catalog
from dicom_node.index.records import ReceivedInstance
from dicom_node.storage import Objects, instance_key

log = logging.getLogger(__name__)
MAX_NAME = 200  # characters of a patient name kept in the index


class Outcome(str, Enum):
    STORED = "stored"
    DUPLICATE = "duplicate"  # identical bytes already indexed: nothing new
    NEW_VERSION = "new_version"  # same SOP Instance UID, different bytes: kept as a new version


@dataclass(frozen=True)
class Peer:
    ae_title: str
    host: str


@dataclass(frozen=True)
class StoreResult:
    status: StoreStatus
    reason: str  # why it was refused, or what was kept
    outcome: Outcome | None = None  # None when refused
    accession: str = ""  # of what was kept
    modality: str = ""
    patient_id: str = ""  # for the audit trail (ATNA lists the patient of stored instances)
    study_uid: str = ""

    @property
    def audit_fields(self) -> dict:
        return {"patient_id": self.patient_id or None, "study_uid": self.study_uid or None}


class InstanceStore:
    def __init__(
        self,
        catalog: Catalog,
        objects: Objects,
        free_space_of: Path,
        min_free_bytes: int = 0,
        max_instance_bytes: int | None = None,
    ) -> None:
        self.catalog = catalog
        self.objects = objects
        self.free_space_of = free_space_of  # the data folder: its free space gates C-STORE
        self.min_free_bytes = min_free_bytes
        self.max_instance_bytes = max_instance_bytes  # None: no limit
        self._versions = threading.Lock()  # one writer decides the version of a SOP Instance UID

    def store(
        self,
        encoded: bytes,
        transfer_syntax: str,
        peer: Peer,
        announced_uid: str | None = None,
    ) -> StoreResult:
        """Keep one dataset (`encoded` in `transfer_syntax`, without file meta) durably.

        `announced_uid`: the SOP Instance UID the request announced, when the protocol has one.
        """
        syntax = UID(transfer_syntax)
        if self.max_instance_bytes is not None and len(encoded) > self.max_instance_bytes:
            # The SCP cuts such a connection while it receives; bytes the kernel had already
            # buffered can still complete the dataset, and it is refused here.
            return StoreResult(
                StoreStatus.OUT_OF_RESOURCES,
                f"dataset of {len(encoded)} bytes is over max_instance_bytes "
                f"({self.max_instance_bytes})",
            )
        try:
            free = free_bytes(self.free_space_of)
            if free < self.min_free_bytes + len(encoded):
                return StoreResult(
                    StoreStatus.OUT_OF_RESOURCES,
                    f"disk nearly full: {free} bytes free, min_free_bytes is {self.min_free_bytes}",
                )
            ds = _checked_dataset(encoded, syntax, announced_uid)
            outcome, rec = self._keep(encoded, ds, syntax, peer)
        except RejectedInstance as exc:
            return StoreResult(exc.status, str(exc))
        except OSError as exc:
            return StoreResult(StoreStatus.OUT_OF_RESOURCES, f"cannot write the spool: {exc}")
        except SQLAlchemyError as exc:
            return StoreResult(StoreStatus.OUT_OF_RESOURCES, f"index unavailable: {exc}")
        except Exception as exc:  # a bug: the peer still gets a status, the log a traceback
            log.exception("storing an instance from %r@%s failed", peer.ae_title, peer.host)
            return StoreResult(StoreStatus.OUT_OF_RESOURCES, f"{type(exc).__name__}: {exc}")
        return StoreResult(
            StoreStatus.SUCCESS,
            outcome.value,
            outcome,
            rec.accession_number,
            rec.modality,
            rec.patient_id,
            rec.study_uid,
        )

    def _keep(
        self, encoded: bytes, ds: Dataset, syntax: UID, peer: Peer
    ) -> tuple[Outcome, ReceivedInstance]:
        header = part10_header(ds.SOPClassUID, ds.SOPInstanceUID, syntax)
        staged = self.objects.stage([header, encoded])
        rec = ReceivedInstance(
            patient_id=str(ds.get("PatientID", "") or ""),
            patient_name=str(ds.get("PatientName", "") or "")[:MAX_NAME],
            study_uid=ds.StudyInstanceUID,
            series_uid=ds.SeriesInstanceUID,
            sop_instance_uid=ds.SOPInstanceUID,
            sop_class_uid=ds.SOPClassUID,
            transfer_syntax_uid=str(syntax),
            modality=str(ds.get("Modality", "") or "").upper(),
            body_part=body_part_of(ds),
            accession_number=str(ds.get("AccessionNumber", "") or ""),
            study_date=str(ds.get("StudyDate", "") or ""),
            size=staged.size,
            sha256=staged.sha256,
            calling_ae=peer.ae_title,
            peer_host=peer.host,
            patient_sex=_short(ds, "PatientSex"),
            patient_age=_short(ds, "PatientAge"),
            patient_birth_date=_short(ds, "PatientBirthDate"),
        )
        key = instance_key(rec.sha256)
        try:
            with self._versions:
                version = self.catalog.keep_instance(
                    rec, key, lambda session: self.objects.place(staged, key, session)
                )
        except IntegrityError as exc:  # another node process indexed this version first
            raise RejectedInstance(
                StoreStatus.OUT_OF_RESOURCES, f"concurrent write: {exc}"
            ) from exc
        finally:
            self.objects.discard(staged)
        if version is None:
            return Outcome.DUPLICATE, rec  # identical to a version already kept
        if version > 1:
            log.info(
                "SOP Instance %r received again with different bytes: kept as version %d",
                rec.sop_instance_uid,
                version,
            )
            return Outcome.NEW_VERSION, rec
        return Outcome.STORED, rec


def _short(ds: Dataset, keyword: str) -> str:
    """A short header value as text (CS, AS, DA: at most 16 characters)."""
    return str(ds.get(keyword, "") or "")[:16]


def free_bytes(folder: Path) -> int:
    return shutil.disk_usage(folder).free


def _checked_dataset(encoded: bytes, syntax: UID, announced_uid: str | None) -> Dataset:
    """The dataset's header, once its structure and content pass the checks."""
    try:
        layout = check_layout(encoded, syntax)
        problem = layout.truncation
    except Exception as exc:  # the reader's own EOF, value and zlib errors
        layout, problem = None, str(exc)
    if problem:
        raise RejectedInstance(
            StoreStatus.CANNOT_UNDERSTAND, f"dataset cannot be parsed: {problem}"
        )
    try:
        ds = decode_header(encoded, syntax)
    except Exception as exc:
        raise RejectedInstance(
            StoreStatus.CANNOT_UNDERSTAND, f"dataset cannot be parsed: {exc}"
        ) from exc
    check_dataset(ds, announced_uid, str(syntax), layout.pixel_data_length)
    return ds
