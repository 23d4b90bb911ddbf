"""Typed, validated settings of the node (read from YAML by `dicom_node.config_file`).

Every key has a documented default (see config/node.yaml), so a three-line file is a valid
configuration. Each section's `check` says what is impossible about its values.
"""

from __future__ import annotations

import os
from collections.abc import Set
from dataclasses import dataclass, field
from pathlib import Path

from dicom_node.config.hl7 import Hl7Settings, TriageSettings
from dicom_node.config.operations import AuditSettings, HttpSettings, LoggingSettings
from dicom_node.config.peers import (
    Destination,
    DestinationTls,
    PeerRule,
    TlsSettings,
    check_ae_title,
)

__all__ = ["Destination", "DestinationTls", "PeerRule", "TlsSettings", "Settings"]

# Package data (in a checkout, links to models/ and config/): what a wheel installs.
SHIPPED = Path(__file__).resolve().parent.parent / "shipped"
SHIPPED_MODEL = SHIPPED / "alpha-gan-zhanglab"
SHIPPED_CONFIG = SHIPPED / "node.yaml"


def default_data_dir() -> Path:
    """Where a node keeps its data when no configuration says: $XDG_DATA_HOME/dicom-node."""
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "dicom-node"


@dataclass(frozen=True)
class NodeSettings:
    ae_title: str = "DICOM_NODE"
    host: str = "0.0.0.0"
    port: int = 11112
    accept_from: tuple[PeerRule, ...] = ()
    tls: TlsSettings = field(default_factory=TlsSettings)
    max_associations: int = 16
    max_associations_per_host: int = 8  # one host cannot take every slot; 0: no cap
    acse_timeout_s: float = 30.0  # the A-ASSOCIATE-RQ must arrive whole within this
    network_timeout_s: float = 60.0  # each later PDU within this of the one before
    processes: int = 1  # SCP processes sharing the port; more use more cores

    def check(self) -> str | None:
        if not 0 < self.port < 65536:
            return f"port {self.port} outside 1..65535"
        if not 1 <= self.processes <= 64:
            return f"processes must be 1..64, got {self.processes}"
        if self.max_associations < 1:
            return "max_associations must be at least 1"
        if self.max_associations_per_host < 0:
            return "max_associations_per_host must be 0 (no cap) or more"
        if self.acse_timeout_s <= 0 or self.network_timeout_s <= 0:
            return "acse_timeout_s and network_timeout_s must be positive"
        return check_ae_title(self.ae_title)


@dataclass(frozen=True)
class StorageSettings:
    data_dir: Path = field(default_factory=default_data_dir)
    database_url: str | None = None  # None = SQLite file in data_dir
    min_free_bytes: int = 1_000_000_000  # below this, C-STORE answers 0xA700 (retry later)
    max_instance_bytes: int = 1_000_000_000  # a larger dataset's connection is closed
    retention_days: float | None = 30.0  # files of studies delivered this long ago go; None: kept
    retention_check_s: float = 3600.0  # how often retention looks
    objects: str = "files"  # where instance and result bytes live: files | database

    def check(self) -> str | None:
        if self.objects not in ("files", "database"):
            return f"objects must be files or database, got {self.objects!r}"
        if self.min_free_bytes < 0 or self.max_instance_bytes < 1:
            return "min_free_bytes must be 0 or more, max_instance_bytes at least 1"
        if self.retention_days is not None and self.retention_days <= 0:
            return f"retention_days must be positive or null, got {self.retention_days}"
        if self.retention_check_s <= 0:
            return f"retention_check_s must be positive, got {self.retention_check_s}"
        return None

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'index.sqlite3'}"

    @property
    def spool_dir(self) -> Path:
        """Received files, as they came."""
        return self.data_dir / "spool"

    @property
    def results_dir(self) -> Path:
        """The SR and SC objects the node made, per study and version."""
        return self.data_dir / "results"


@dataclass(frozen=True)
class AcceptRules:
    modalities: tuple[str, ...] = ("CR", "DX")
    body_parts: tuple[str, ...] = ("CHEST", "THORAX")


@dataclass(frozen=True)
class CompletionRule:
    """When a study from some senders or of some modality is complete without an MPPS: after
    its own quiet period, or as soon as it holds the expected number of instances."""

    calling_ae: str | None = None  # the sender's AE title; None: any
    modality: str | None = None  # any instance of the study has it; None: any
    stable_after_s: float | None = None  # None: the studies' default quiet period
    expected_instances: int | None = None  # complete at once with this many; None: no count

    def check(self) -> str | None:
        if self.calling_ae is not None and (err := check_ae_title(self.calling_ae)):
            return err
        if self.stable_after_s is not None and self.stable_after_s <= 0:
            return f"stable_after_s must be positive, got {self.stable_after_s}"
        if self.expected_instances is not None and self.expected_instances < 1:
            return f"expected_instances must be at least 1, got {self.expected_instances}"
        if self.stable_after_s is None and self.expected_instances is None:
            return "a completion rule needs stable_after_s, expected_instances or both"
        return None

    def matches(self, calling_aes: Set[str], modalities: Set[str]) -> bool:
        return (self.calling_ae is None or self.calling_ae in calling_aes) and (
            self.modality is None or self.modality.upper() in modalities
        )


@dataclass(frozen=True)
class StudySettings:
    stable_after_s: float = 30.0  # quiet period when no MPPS and no rule completes a study
    completion: tuple[CompletionRule, ...] = (
        CompletionRule(modality="CR", stable_after_s=5.0),
        CompletionRule(modality="DX", stable_after_s=5.0),
    )
    accept: AcceptRules = field(default_factory=AcceptRules)

    def check(self) -> str | None:
        if self.stable_after_s <= 0:
            return f"stable_after_s must be positive, got {self.stable_after_s}"
        return None

    def rule_for(self, calling_aes: Set[str], modalities: Set[str]) -> CompletionRule:
        """The first completion rule matching a study; the default quiet period otherwise."""
        for rule in self.completion:
            if rule.matches(calling_aes, modalities):
                return rule
        return CompletionRule(stable_after_s=self.stable_after_s)

    def quiet_period_s(self, rule: CompletionRule) -> float:
        return rule.stable_after_s if rule.stable_after_s is not None else self.stable_after_s


@dataclass(frozen=True)
class ModelSettings:
    path: Path = SHIPPED_MODEL


@dataclass(frozen=True)
class RetryPolicy:
    """Attempts and exponential backoff (see `dicom_node.pipeline.retry` for the decision)."""

    max_attempts: int = 5
    backoff_s: float = 5.0
    max_backoff_s: float = 300.0

    def check(self) -> str | None:
        if self.max_attempts < 1 or self.backoff_s < 0 or self.max_backoff_s < self.backoff_s:
            return "needs max_attempts >= 1 and 0 <= backoff_s <= max_backoff_s"
        return None


@dataclass(frozen=True)
class ScoringRetry(RetryPolicy):
    max_attempts: int = 3
    backoff_s: float = 10.0
    max_backoff_s: float = 120.0


@dataclass(frozen=True)
class ExportRetry(RetryPolicy):
    max_attempts: int = 20
    backoff_s: float = 5.0
    max_backoff_s: float = 300.0


LOOPS = ("scoring", "delivery")


@dataclass(frozen=True)
class WorkerSettings:
    enabled: bool = True  # run the worker's loops inside `serve`
    loops: tuple[str, ...] = LOOPS  # delivery alone needs no model
    poll_s: float = 1.0
    lease_s: float = 60.0  # a job whose worker stops renewing this is taken over
    loop_deadline_s: float = 300.0  # a loop with no completed cycle for this long is unhealthy
    batch_size: int = 16
    device: str = "auto"  # auto | cpu | cuda
    urgent_percentile: float | None = None  # None: urgent = above the model's operating point
    unknown_age: str = "score"  # an image whose age the header does not give: score | refuse
    key_objects: bool = False  # also a Key Object Selection of the flagged images
    scoring: ScoringRetry = field(default_factory=ScoringRetry)
    export: ExportRetry = field(default_factory=ExportRetry)

    def check(self) -> str | None:
        if self.urgent_percentile is not None and not 0 < self.urgent_percentile < 100:
            return f"urgent_percentile must be between 0 and 100, got {self.urgent_percentile}"
        if self.device not in ("auto", "cpu", "cuda"):
            return f"device must be auto, cpu or cuda, got {self.device!r}"
        if self.unknown_age not in ("score", "refuse"):
            return f"unknown_age must be score or refuse, got {self.unknown_age!r}"
        if self.poll_s <= 0 or self.lease_s <= 0 or self.batch_size < 1:
            return "poll_s, lease_s and batch_size must be positive"
        if self.loop_deadline_s <= self.poll_s:
            return f"loop_deadline_s ({self.loop_deadline_s}) must be longer than poll_s"
        unknown = sorted(set(self.loops) - set(LOOPS))
        if unknown or not self.loops:
            return f"loops must be one or more of {', '.join(LOOPS)}, got {list(self.loops)}"
        return None


@dataclass(frozen=True)
class Settings:
    node: NodeSettings = field(default_factory=NodeSettings)
    storage: StorageSettings = field(default_factory=StorageSettings)
    studies: StudySettings = field(default_factory=StudySettings)
    model: ModelSettings = field(default_factory=ModelSettings)
    worker: WorkerSettings = field(default_factory=WorkerSettings)
    destinations: tuple[Destination, ...] = ()
    http: HttpSettings = field(default_factory=HttpSettings)
    audit: AuditSettings = field(default_factory=AuditSettings)
    logging: LoggingSettings = field(default_factory=LoggingSettings)
    hl7: Hl7Settings = field(default_factory=Hl7Settings)
    triage: TriageSettings = field(default_factory=TriageSettings)
    source: Path | None = None  # the file these settings came from
