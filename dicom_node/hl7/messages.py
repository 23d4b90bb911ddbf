"""HL7 v2.5.1 messages made from a study's result facts (`pipeline.result_facts`), and the
ACKs that come back. Every value is escaped (PS: HL7 2.5.1 2.7), so nothing in a patient's
name or a UID can end a field or a segment; text goes as UTF-8 (MSH-18 "UNICODE UTF-8")."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from dicom_node.config.hl7 import Hl7Destination, Hl7Settings

SCHEME = "99DCMNODE"
# HL7 table 0027 (priority): S stat for urgent, A asap for an escalated routine study.
PRIORITY = {"urgent": "S", "escalated": "A", "routine": "R"}
_ESCAPES = (("\\", "\\E\\"), ("|", "\\F\\"), ("^", "\\S\\"), ("&", "\\T\\"), ("~", "\\R\\"))


def escape(text: str) -> str:
    for raw, escaped in _ESCAPES:
        text = text.replace(raw, escaped)
    return text.replace("\r", " ").replace("\n", " ")


@dataclass(frozen=True)
class Ack:
    code: str  # AA / AE / AR (or CA / CE / CR)
    control_id: str
    text: str

    @property
    def accepted(self) -> bool:
        return self.code in ("AA", "CA")

    @property
    def rejected(self) -> bool:
        """The receiver refuses the message itself: sending it again cannot help."""
        return self.code in ("AR", "CR")


def parse_ack(text: str) -> Ack:
    """The MSA of an ACK; ValueError when there is none."""
    for segment in text.replace("\n", "\r").split("\r"):
        if segment.startswith("MSA|"):
            fields = segment.split("|")
            details = [s for s in text.replace("\n", "\r").split("\r") if s.startswith("ERR|")]
            reason = fields[3] if len(fields) > 3 else ""
            if details and not reason:
                reason = details[0].split("|")[-1]
            return Ack(fields[1], fields[2] if len(fields) > 2 else "", reason)
    raise ValueError(f"not an ACK (no MSA segment): {text[:80]!r}")


def person_name(dicom_name: str) -> str:
    """XPN repetitions from a DICOM PN: each component group (alphabetic, ideographic,
    phonetic) one repetition; family^given^middle^suffix^prefix (DICOM has prefix before
    suffix)."""
    names = []
    for group in dicom_name.split("="):
        parts = (group.split("^") + [""] * 5)[:5]
        family, given, middle, prefix, suffix = parts
        names.append("^".join(escape(p) for p in (family, given, middle, suffix, prefix)))
    return "~".join(n.rstrip("^") for n in names if n.strip("^"))


def render(
    facts: dict,
    settings: Hl7Settings,
    destination: Hl7Destination,
    control_id: str,
    kind: str = "result",
    now: dt.datetime | None = None,
) -> str:
    """The message for `destination` (its `message` type): segments joined by CR."""
    now = now or dt.datetime.now(dt.timezone.utc)
    priority = "escalated" if kind == "escalation" else facts["priority"]
    message = destination.message
    structure = {"ORU^R01": "ORU_R01", "OMG^O19": "OMG_O19", "ORM^O01": "ORM_O01"}[message]
    segments = [
        [
            "MSH",
            "^~\\&",
            escape(settings.sending_application),
            escape(settings.sending_facility),
            escape(destination.receiving_application),
            escape(destination.receiving_facility),
            now.strftime("%Y%m%d%H%M%S"),
            "",
            f"{message}^{structure}",
            escape(control_id),
            "P",
            "2.5.1",
            "",
            "",
            "AL",
            "NE",
            "",
            "UNICODE UTF-8",
        ],
        [
            "PID",
            "1",
            "",
            f"{escape(facts['patient_id'])}^^^^PI",
            "",
            person_name(facts["patient_name"]),
            "",
            escape(facts["birth_date"]),
            escape(facts["sex"]),
        ],
    ]
    accession = escape(facts["accession"])
    if message == "ORU^R01":
        segments.append(_obr(facts, settings, accession, PRIORITY[priority], now, kind))
        segments += _observations(facts, kind)
    else:
        timing = f"^^^^^{PRIORITY[priority]}" if message == "ORM^O01" else ""
        segments.append(
            [
                "ORC",
                "XO",
                accession,
                accession,
                "",
                "",
                "",
                timing,
                "",
                now.strftime("%Y%m%d%H%M%S"),
            ]
        )
        if message == "OMG^O19":
            segments.append(["TQ1", "1", "", "", "", "", "", "", "", PRIORITY[priority]])
        segments.append(_obr(facts, settings, accession, PRIORITY[priority], now, kind))
    text = {tuple(k.split("-")): v for k, v in settings.fields.items()}
    for segment in segments:
        for (name, number), template in text.items():
            if segment[0] == name:
                index = int(number) if name != "MSH" else int(number) - 1
                segment.extend([""] * (index + 1 - len(segment)))
                segment[index] = _fill(str(template), facts)
    return "\r".join("|".join(s).rstrip("|") for s in segments) + "\r"


def _obr(facts: dict, settings: Hl7Settings, accession: str, priority: str, now, kind: str):
    status = "C" if facts["version"] > 1 or kind == "escalation" else "P"
    observed = escape(facts["study_date"] + facts["study_time"])
    obr = ["OBR", "1", accession, accession, settings.universal_service, priority, "", observed]
    obr += [""] * (22 - len(obr)) + [now.strftime("%Y%m%d%H%M%S"), "", "", status]
    return obr


def _observations(facts: dict, kind: str) -> list[list[str]]:
    status = "C" if facts["version"] > 1 or kind == "escalation" else "P"
    flag = "A" if facts["abnormal"] else "N"
    meaning = "Abnormal" if facts["abnormal"] else "Normal"
    priority = "escalated" if kind == "escalation" else facts["priority"]
    rows = [
        (
            "NM",
            "ANOMALY_SCORE^Anomaly score",
            str(facts["score"]),
            "{z-score}^z-score^UCUM",
            f"<{facts['threshold']}",
            flag,
        ),
        (
            "NM",
            "ANOMALY_PCTL^Anomaly score percentile among normals",
            str(facts["percentile"]),
            "%^percent^UCUM",
            "",
            "",
        ),
        (
            "CWE",
            "ANOMALY_FLAG^Anomaly at operating point",
            f"{flag}^{meaning}^HL70078",
            "",
            "",
            flag,
        ),
        (
            "CWE",
            "TRIAGE_PRIORITY^Triage priority",
            f"{priority.upper()}^{priority.capitalize()}^{SCHEME}",
            "",
            "",
            "",
        ),
        (
            "ST",
            "ALGORITHM^Algorithm name and version",
            escape(f"{facts['model']} {facts['model_version']}"),
            "",
            "",
            "",
        ),
        (
            "ST",
            "SR_STUDY_UID^Structured report study UID",
            escape(facts["sr"]["study"]),
            "",
            "",
            "",
        ),
        (
            "ST",
            "SR_SERIES_UID^Structured report series UID",
            escape(facts["sr"]["series"]),
            "",
            "",
            "",
        ),
        (
            "ST",
            "SR_SOP_UID^Structured report SOP instance UID",
            escape(facts["sr"]["sop"]),
            "",
            "",
            "",
        ),
    ]
    rows += [
        ("ST", "REPLACES_SR^Replaces the report", escape(uid), "", "", "")
        for uid in facts["replaces"]
    ]
    return [
        ["OBX", str(i), kind_, f"{code}^{SCHEME}", "", value, units, ref, abnormal, "", "", status]
        for i, (kind_, code, value, units, ref, abnormal) in enumerate(rows, start=1)
    ]


def _fill(template: str, facts: dict) -> str:
    """A configured field's template with the study's facts ({accession}, {patient_id}, ...),
    each escaped; the template's own separators stay."""
    flat = {k: escape(str(v)) for k, v in facts.items() if not isinstance(v, dict | list)}
    return template.format_map(_Missing(flat))


class _Missing(dict):
    def __missing__(self, key: str) -> str:
        return ""
