"""The Modality Performed Procedure Step SCP (PS3.4 Annex F): a modality says N-CREATE when
it starts a step (IN PROGRESS) and N-SET when it ends it (COMPLETED or DISCONTINUED), listing
the instances it made. Completion uses a COMPLETED step to finish a study at once when every
instance it lists has arrived (`dicom_node.pipeline.completion`). The handlers never raise:
every failure is a status and a log line."""

from __future__ import annotations

import logging

from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from sqlalchemy.exc import SQLAlchemyError

from dicom_node.dicom.checks import uid_problem
from dicom_node.dicom.terms import StepRequestStatus
from dicom_node.index.performed_steps import NoSuchStep, PerformedSteps, StepExists, StepIsFinal
from dicom_node.index.schema import StepStatus

log = logging.getLogger(__name__)

MAX_REFERENCED = 10_000  # instances one step may list


class BadStep(Exception):
    """The attribute list says something the node cannot use; the message says what."""


def handle_create(event, steps: PerformedSteps, watch) -> tuple[int, Dataset | None]:
    """EVT_N_CREATE: record a new step; it must be IN PROGRESS (PS3.4 F.7.2.1)."""
    watch.request_complete(event.assoc.dul.socket.socket)
    calling = event.assoc.requestor.ae_title.strip()
    uid = event.request.AffectedSOPInstanceUID or generate_uid()

    def create() -> Dataset:
        attributes = event.attribute_list
        status = _status(attributes)
        if status is not StepStatus.IN_PROGRESS:
            raise BadStep(f"a new step must be IN PROGRESS, not {status.value}")
        steps.created(str(uid), _study_uid(attributes), status, calling, _referenced(attributes))
        reply = Dataset()
        reply.AffectedSOPInstanceUID = uid  # pynetdicom moves it to the response's parameter
        return reply

    return _answer("N-CREATE", str(uid), calling, create)


def handle_set(event, steps: PerformedSteps, watch) -> tuple[int, Dataset | None]:
    """EVT_N_SET: a new status and/or the instances made; a final step may not change."""
    watch.request_complete(event.assoc.dul.socket.socket)
    calling = event.assoc.requestor.ae_title.strip()
    uid = str(event.request.RequestedSOPInstanceUID)

    def update() -> Dataset:
        changes = event.modification_list
        status = _status(changes) if "PerformedProcedureStepStatus" in changes else None
        referenced = _referenced(changes) if "PerformedSeriesSequence" in changes else None
        step = steps.updated(uid, status, referenced, _study_uid(changes) or None)
        if step.status is not StepStatus.IN_PROGRESS:
            log.info(
                "MPPS %r from %r: %s, %d instance(s) listed",
                uid,
                calling,
                step.status.value,
                len(step.referenced),
            )
        return Dataset()

    return _answer("N-SET", uid, calling, update)


def _answer(operation: str, uid: str, calling: str, act) -> tuple[int, Dataset | None]:
    try:
        if problem := uid_problem(uid):
            raise BadStep(f"SOP Instance UID {problem}")
        return StepRequestStatus.SUCCESS, act()
    except StepExists as exc:
        status, reason = StepRequestStatus.DUPLICATE_INSTANCE, str(exc)
    except NoSuchStep as exc:
        status, reason = StepRequestStatus.NO_SUCH_INSTANCE, str(exc)
    except StepIsFinal as exc:
        status, reason = StepRequestStatus.PROCESSING_FAILURE, str(exc)
    except BadStep as exc:
        status, reason = StepRequestStatus.INVALID_ATTRIBUTE_VALUE, str(exc)
    except SQLAlchemyError as exc:
        status, reason = StepRequestStatus.RESOURCE_LIMITATION, f"index unavailable: {exc}"
    except Exception as exc:  # an attribute list pydicom cannot decode, or a bug
        log.debug("%s %r from %r", operation, uid, calling, exc_info=True)
        status, reason = StepRequestStatus.PROCESSING_FAILURE, f"{type(exc).__name__}: {exc}"
    log.warning(
        "%s of MPPS %r from %r refused (0x%04X): %s", operation, uid, calling, status, reason
    )
    return status, None


def _status(attributes: Dataset) -> StepStatus:
    value = str(attributes.get("PerformedProcedureStepStatus", "") or "")
    try:
        return StepStatus(value)
    except ValueError:
        raise BadStep(f"Performed Procedure Step Status {value[:20]!r} is not valid") from None


def _study_uid(attributes: Dataset) -> str:
    """The Study Instance UID of the step's first scheduled step ("" when none is given)."""
    for item in attributes.get("ScheduledStepAttributesSequence", []) or []:
        uid = str(item.get("StudyInstanceUID", "") or "")
        if uid:
            if problem := uid_problem(uid):
                raise BadStep(f"Study Instance UID {problem}")
            return uid
    return ""


def _referenced(attributes: Dataset) -> tuple[str, ...]:
    """The SOP Instance UIDs of every image and non-image instance the step lists."""
    found: list[str] = []
    for series in attributes.get("PerformedSeriesSequence", []) or []:
        for name in ("ReferencedImageSequence", "ReferencedNonImageCompositeSOPInstanceSequence"):
            for ref in series.get(name, []) or []:
                uid = str(ref.get("ReferencedSOPInstanceUID", "") or "")
                if problem := uid_problem(uid):
                    raise BadStep(f"Referenced SOP Instance UID {problem}")
                found.append(uid)
                if len(found) > MAX_REFERENCED:
                    raise BadStep(f"more than {MAX_REFERENCED} instances listed")
    return tuple(dict.fromkeys(found))
