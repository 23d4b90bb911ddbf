"""Readiness (`/readyz`) and the metrics the index keeps (studies by state, queue depth,
oldest queued job, dead letters), read at each scrape."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy.exc import SQLAlchemyError

from dicom_node.config import Settings
from dicom_node.index import Index
from dicom_node.index.database import utcnow
from dicom_node.index.records import LoopHealth
from dicom_node.index.schema import JobState
from dicom_node.ingest.store import free_bytes


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str

    def to_json(self) -> dict:
        return {"name": self.name, "ok": self.ok, "detail": self.detail}


def readiness(
    settings: Settings,
    index: Index,
    loops: Callable[[], list[LoopHealth]],
    model_loaded: bool | None,
) -> list[Check]:
    """Every check `/readyz` reports; `model_loaded` None where this process scores nothing."""
    checks = [_index(index), _data_dir(settings)]
    if model_loaded is not None:
        checks.append(Check("model", model_loaded, "loaded" if model_loaded else "not loaded"))
    now = utcnow()
    for h in loops():
        problem = h.problem(now)
        checks.append(Check(f"loop {h.loop}", problem is None, problem or "completed a cycle"))
    return checks


def _index(index: Index) -> Check:
    try:
        index.views.status()
    except SQLAlchemyError as exc:
        text = str(getattr(exc, "orig", None) or exc).strip().splitlines()
        return Check("index", False, f"unreachable: {text[0] if text else type(exc).__name__}")
    return Check("index", True, "reachable")


def _data_dir(settings: Settings) -> Check:
    data_dir = settings.storage.data_dir
    if not os.access(data_dir, os.W_OK):
        return Check("data_dir", False, f"{data_dir} not writable")
    free, needed = free_bytes(data_dir), settings.storage.min_free_bytes
    if free < needed:
        return Check("data_dir", False, f"{free} bytes free, below min_free_bytes ({needed})")
    return Check("data_dir", True, f"{free} bytes free")


class IndexCollector(Collector):
    """Gauges from the index at scrape time: they cover every process of the node."""

    def __init__(self, index: Index, model: dict[str, str] | None) -> None:
        self.index = index
        self.model = model

    def collect(self) -> Iterator:
        if self.model:
            info = InfoMetricFamily("dicom_node_model", "The model this process scores with")
            info.add_metric([], self.model)
            yield info
        try:
            status = self.index.views.status()
            oldest = self.index.views.oldest_queued_at()
        except SQLAlchemyError:
            up = GaugeMetricFamily("dicom_node_index_up", "1 when the index answered the scrape")
            up.add_metric([], 0)
            yield up
            return
        up = GaugeMetricFamily("dicom_node_index_up", "1 when the index answered the scrape")
        up.add_metric([], 1)
        yield up
        instances = GaugeMetricFamily("dicom_node_instances", "Instances in the index")
        instances.add_metric([], status.instances)
        yield instances
        for name, what, counts in (
            ("studies", "Studies", status.studies),
            ("jobs", "Scoring jobs", status.jobs),
            ("exports", "DICOM exports", status.exports),
            ("hl7_messages", "HL7 messages", status.hl7),
        ):
            family = GaugeMetricFamily(
                f"dicom_node_{name}", f"{what} in the index, by state", labels=["state"]
            )
            for state, count in counts.items():
                family.add_metric([getattr(state, "value", str(state))], count)
            yield family
        depth = GaugeMetricFamily("dicom_node_queue_depth", "Scoring jobs queued")
        depth.add_metric([], status.jobs.get(JobState.QUEUED, 0))
        yield depth
        age = GaugeMetricFamily(
            "dicom_node_oldest_queued_seconds", "Age of the oldest queued scoring job (0: none)"
        )
        age.add_metric([], (utcnow() - oldest).total_seconds() if oldest else 0.0)
        yield age
        dead = GaugeMetricFamily("dicom_node_dead_letters", "Jobs and exports given up on")
        dead.add_metric([], len(status.dead_letters))
        yield dead
