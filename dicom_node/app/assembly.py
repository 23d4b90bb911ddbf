"""How a role is put together from its settings: the worker's loops (the model loaded only
where scoring runs), each supervised, and the process's web face."""

from __future__ import annotations

import logging

from dicom_node.config import Settings
from dicom_node.index import Index
from dicom_node.index.objects import open_storage
from dicom_node.pipeline.loops import SupervisedLoop

log = logging.getLogger(__name__)


def worker_loops(
    settings: Settings, index: Index, owner: str
) -> tuple[list[SupervisedLoop], dict[str, str] | None]:
    """The configured worker loops, and the name and version of the model they score with
    (None: no scoring here). The model is loaded only when scoring runs here."""
    worker = settings.worker
    loops, model_info = [], None
    if "scoring" in worker.loops:
        from dicom_node.pipeline.analysis import StudyAnalyser
        from dicom_node.pipeline.scoring import ScoringStep

        storage = open_storage(settings.storage, index.db)
        model = load_configured_model(settings)
        analyser = StudyAnalyser(settings, model, storage)
        model_info = {"name": model.name, "version": analyser.algorithm.version}
        step = ScoringStep(settings, index, analyser, owner)
        loops.append(supervised("scoring", step, worker.poll_s, settings, index, owner))
    if "delivery" in worker.loops:
        from dicom_node.pipeline.delivery import DeliveryStep

        step = DeliveryStep(settings, index)
        loops.append(supervised("delivery", step, worker.poll_s, settings, index, owner))
        if settings.hl7.destinations:
            from dicom_node.pipeline.hl7_delivery import Hl7Step

            step = Hl7Step(settings, index)
            loops.append(supervised("hl7", step, worker.poll_s, settings, index, owner))
    return loops, model_info


def start_web(settings: Settings, index: Index, role, model: dict | None, port: int | None):
    """The web face of this process, or None when http is off or no port is set."""
    if not settings.http.enabled or port is None:
        return None
    from dicom_node.web.pages import WebContext
    from dicom_node.web.server import WebServer

    storage = open_storage(settings.storage, index.db)
    ctx = WebContext(settings, index, storage, role.health, model)
    return WebServer(ctx, settings.http.host, port)


def load_configured_model(settings: Settings):
    from dicom_node.model.ensemble import load_model, pick_device

    model = load_model(settings.model.path, pick_device(settings.worker.device))
    log.info("model %s on %s", model.name, model.device)
    return model


def supervised(name, step, idle_s: float, settings: Settings, index: Index, owner: str):
    return SupervisedLoop(
        name,
        step,
        idle_s=idle_s,
        deadline_s=settings.worker.loop_deadline_s + idle_s,  # a cycle is due every idle_s
        heartbeats=index.heartbeats,
        owner=owner,
    )
