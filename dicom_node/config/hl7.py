"""HL7 v2 to the RIS (results, priority updates) and the aging cap of routine studies."""

from __future__ import annotations

from dataclasses import dataclass, field

MESSAGES = ("ORU^R01", "OMG^O19", "ORM^O01")


@dataclass(frozen=True)
class Hl7Destination:
    name: str
    host: str
    port: int
    message: str = "ORU^R01"  # results; OMG^O19 or ORM^O01: priority updates of the order
    receiving_application: str = "RIS"
    receiving_facility: str = ""
    connect_timeout_s: float = 10.0
    ack_timeout_s: float = 30.0

    def check(self) -> str | None:
        if self.message not in MESSAGES:
            return f"message must be one of {', '.join(MESSAGES)}, got {self.message!r}"
        if not 0 < self.port < 65536:
            return f"port {self.port} outside 1..65535"
        if self.connect_timeout_s <= 0 or self.ack_timeout_s <= 0:
            return "connect_timeout_s and ack_timeout_s must be positive"
        return None


@dataclass(frozen=True)
class Hl7Settings:
    sending_application: str = "DICOM_NODE"
    sending_facility: str = "RADIOLOGY"
    universal_service: str = "CXR-AI^Chest X-ray AI triage^99DCMNODE"  # OBR-4, as CWE
    # Site differences: a field set from a template, e.g. {"OBR-4": "36643-5^XR Chest^LN",
    # "PID-3": "{patient_id}^^^HOSP^MR"}; values in braces come from the study (README).
    fields: dict = field(default_factory=dict)
    destinations: tuple[Hl7Destination, ...] = ()
    listen_port: int | None = None  # MLLP listener for "read" updates from the RIS; null: none
    listen_host: str = "0.0.0.0"

    def check(self) -> str | None:
        if not isinstance(self.fields, dict):
            return f"fields must be a mapping of field name to template, got {self.fields!r}"
        for key in self.fields:
            segment, _, number = str(key).partition("-")
            if len(segment) != 3 or not number.isdigit():
                return f"fields: {key!r} is not a field name like OBR-4"
        return None


@dataclass(frozen=True)
class TriageSettings:
    max_wait_routine_min: float | None = 60.0  # escalate a routine study unread this long
    check_s: float = 30.0  # how often the cap is looked at

    def check(self) -> str | None:
        if self.max_wait_routine_min is not None and self.max_wait_routine_min <= 0:
            return "max_wait_routine_min must be positive or null"
        if self.check_s <= 0:
            return "check_s must be positive"
        return None
