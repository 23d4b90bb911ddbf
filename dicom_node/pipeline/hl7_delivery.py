"""The RIS side of a result: the hl7 loop sends each due HL7 message (ACK AA: sent; AE or
no answer: retried with backoff; AR: dead with the RIS's text); the escalation step applies
the aging cap; the read handler takes "study read" updates from the RIS."""

from __future__ import annotations

import datetime as dt
import logging

from dicom_node import audit
from dicom_node.config import Settings
from dicom_node.hl7.messages import PRIORITY, escape, parse_ack, render
from dicom_node.hl7.mllp import MllpError, send
from dicom_node.index import Index
from dicom_node.index.database import utcnow
from dicom_node.pipeline.retry import delivery_failure

log = logging.getLogger(__name__)


class Hl7Step:
    def __init__(self, settings: Settings, index: Index) -> None:
        self.settings = settings
        self.index = index

    def __call__(self) -> bool:
        """Send the next due HL7 message; False when there was none."""
        due = self.index.hl7.claim_due(self.settings.worker.lease_s)
        if due is None:
            return False
        destinations = {d.name: d for d in self.settings.hl7.destinations}
        destination = destinations.get(due.destination)
        if destination is None:
            self.index.hl7.failed(due.id, f"{due.destination!r} is no longer configured", None)
            return True
        message = render(due.facts, self.settings.hl7, destination, due.control_id, due.kind)
        try:
            ack = parse_ack(
                send(
                    destination.host,
                    destination.port,
                    message,
                    destination.connect_timeout_s,
                    destination.ack_timeout_s,
                )
            )
        except (MllpError, ValueError) as exc:
            self._failed(due, f"{destination.name}: {exc}", permanent=False)
            return True
        if ack.accepted:
            self.index.hl7.sent(due.id)
            log.info(
                "hl7 %s of study %r (accession %r) v%d to %s: %s (priority %s)",
                due.kind,
                due.facts["study_uid"],
                due.facts["accession"],
                due.study_version,
                destination.name,
                ack.code,
                PRIORITY["escalated" if due.kind == "escalation" else due.facts["priority"]],
            )
            audit.record(
                "result_exported",
                destination=destination.name,
                peer_host=destination.host,
                study_uid=due.facts["study_uid"],
                study_version=due.study_version,
                patient_id=due.facts["patient_id"] or None,
                hl7=f"{destination.message} {due.kind}",
            )
            return True
        reason = f"{destination.name}: {ack.code} {ack.text}".strip()
        self._failed(due, reason, permanent=ack.rejected)
        return True

    def _failed(self, due, reason: str, permanent: bool) -> None:
        decision = delivery_failure(
            self.settings.worker.export,
            f"hl7 message #{due.id} to {due.destination}",
            due.attempts,
            reason,
            utcnow(),
            permanent,
        )
        self.index.hl7.failed(due.id, decision.reason, decision.retry_at)


class EscalationStep:
    """The aging cap: a routine study unread `triage.max_wait_routine_min` after its result
    was delivered is escalated (worklist and an HL7 priority update)."""

    def __init__(self, settings: Settings, index: Index) -> None:
        self.settings = settings
        self.index = index

    def __call__(self) -> bool:
        cap = dt.timedelta(minutes=self.settings.triage.max_wait_routine_min)
        names = tuple(d.name for d in self.settings.hl7.destinations)
        for study_id in self.index.hl7.escalate_due(utcnow() - cap, names):
            log.warning("study #%d: routine and unread for %s: escalated", study_id, cap)
        return False


def read_update_handler(index: Index, settings: Settings):
    """`handle(message) -> ACK` for the read listener: an ORM/OMG with ORC-5 CM or an ORU
    with OBR-25 F marks the studies of its accession read (no escalation any more)."""

    def handle(text: str) -> str:
        segments = {s[:3]: s.split("|") for s in text.replace("\n", "\r").split("\r") if s}
        msh = segments.get("MSH", [])
        control = msh[9] if len(msh) > 9 else ""
        orc, obr = segments.get("ORC", []), segments.get("OBR", [])
        done = (len(orc) > 5 and orc[5] == "CM") or (len(obr) > 25 and obr[25] == "F")
        accession = next(
            (f.split("^")[0] for f in (_at(obr, 3), _at(obr, 2), _at(orc, 3), _at(orc, 2)) if f),
            "",
        )
        if not done:
            return _ack(settings, "AA", control, "noted: not a completed read")
        if not index.hl7.mark_read(accession):
            return _ack(settings, "AR", control, f"no study with accession {accession}")
        log.info("hl7: the RIS read accession %r: no escalation", accession)
        return _ack(settings, "AA", control, "read")

    return handle


def _at(fields: list[str], n: int) -> str:
    return fields[n] if len(fields) > n else ""


def _ack(settings: Settings, code: str, control: str, text: str) -> str:
    now = utcnow().strftime("%Y%m%d%H%M%S")
    return (
        f"MSH|^~\\&|{escape(settings.hl7.sending_application)}|"
        f"{escape(settings.hl7.sending_facility)}|||{now}||ACK|ACK{now}|P|2.5.1\r"
        f"MSA|{code}|{escape(control)}|{escape(text)}\r"
    )
