"""The worker: claims scoring jobs, scores every image of the study version, writes the SR and
the Secondary Captures, records scores and priority, and delivers results to destinations.

A job's final state is decided in one place (`run_job`) and always written: scored, retried
with backoff, or dead-lettered with the reason (the study then reads "not scored: reason").
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import socket
import threading
import uuid
from pathlib import Path

import pydicom
import torch

from dicom_node.anomaly_model import AnomalyModel, load_model
from dicom_node.config import Settings
from dicom_node.db import ClaimedJob, ImageResult, Index, Instance, utcnow
from dicom_node.errors import ImageDecodeError
from dicom_node.export import ExportError, send_objects
from dicom_node.imaging import to_model_input, unit_image_from_dataset
from dicom_node.results import (
    Algorithm,
    render_difference_overlay,
    write_anomaly_report,
    write_difference_map,
)
from dicom_node.routing import is_scored_image
from dicom_node.spool import Spool

log = logging.getLogger(__name__)


class Worker:
    def __init__(self, settings: Settings, index: Index, model: AnomalyModel | None = None) -> None:
        self.settings = settings
        self.index = index
        self.spool = Spool(settings.storage.data_dir / "spool")
        self.results_dir = settings.storage.data_dir / "results"
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        device = settings.worker.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.model = model or load_model(settings.model.path, device)
        recipe = self.model.recipe
        self.algorithm = Algorithm(
            name=self.model.name,
            version=str(self.model.info.get("version", "1")),
            parameters={
                "arch": recipe.arch.value,
                "image_size": str(recipe.image_size),
                "members": str(len(self.model.members)),
                "threshold": f"{self.model.calibration.threshold:.4f}",
            },
        )
        self.stop = threading.Event()

    # -- loop -----------------------------------------------------------------------------
    def run_forever(self) -> None:
        log.info("worker %s: model %s on %s", self.owner, self.model.name, self.model.device)
        while not self.stop.is_set():
            busy = self.run_one_job() | self.deliver_due_exports()
            if not busy:
                self.stop.wait(self.settings.worker.poll_s)

    def run_one_job(self) -> bool:
        job = self.index.claim_next_job(self.owner, self.settings.worker.lease_s)
        if job is None:
            return False
        heartbeat = _Heartbeat(self.index, job.id, self.owner, self.settings.worker.lease_s)
        heartbeat.start()
        try:
            self.run_job(job)
        finally:
            heartbeat.stop()
        return True

    def run_job(self, job: ClaimedJob) -> None:
        try:
            results, priority, exports = self.score_study(job)
        except ImageDecodeError as exc:  # the same bytes will not decode next time either
            log.warning("job #%d: study %s not scored: %s", job.id, job.study_uid, exc)
            self.index.fail_job(job, self.owner, str(exc), retry_at=None)
            return
        except Exception as exc:
            delay = self.settings.worker.scoring.delay_after(job.attempts)
            reason = f"{type(exc).__name__}: {exc}"
            log.exception("job #%d failed (attempt %d): %s", job.id, job.attempts, reason)
            retry_at = None if delay is None else utcnow() + dt.timedelta(seconds=delay)
            self.index.fail_job(job, self.owner, reason, retry_at)
            return
        if self.index.finish_job_scored(job, self.owner, results, priority, exports):
            log.info(
                "study %s v%d scored: %s, max score %.2f",
                job.study_uid,
                job.study_version,
                priority,
                max(r.score for r in results),
            )

    # -- scoring --------------------------------------------------------------------------
    def _is_scored_image(self, inst: Instance) -> bool:
        return is_scored_image(inst, self.settings.studies.accept)

    def score_study(self, job: ClaimedJob):
        instances = self.index.study_images(job.study_id, self._is_scored_image)
        if not instances:
            raise ImageDecodeError(f"study {job.study_uid}: no chest image left to score")
        sources, units = [], []
        for inst in instances:
            path = self.spool.path_of(inst.file)
            try:
                ds = pydicom.dcmread(path)
            except Exception as exc:
                raise ImageDecodeError(f"{inst.sop_instance_uid}: unreadable file ({exc})") from exc
            units.append(unit_image_from_dataset(ds, source=f"instance {inst.sop_instance_uid}"))
            sources.append(ds)
        size, batch = self.model.image_size, self.settings.worker.batch_size
        x = torch.cat([to_model_input(u, size) for u in units])
        scores = [s for i in range(0, len(x), batch) for s in self.model.score(x[i : i + batch])]

        out = self.results_dir / job.study_uid / f"v{job.study_version}"
        previous = [
            pydicom.dcmread(p)
            for p in sorted(out.parent.glob("v*/sr.dcm"))
            if p.parent.name != out.name
        ]
        report = write_anomaly_report(sources, scores, self.algorithm, job.study_version, previous)
        files = [_save_atomically(report, out / "sr.dcm")]
        threshold = self.model.calibration.threshold
        for n, (ds, unit, score) in enumerate(zip(sources, units, scores), start=1):
            rgb = render_difference_overlay(unit, score, threshold)
            sc = write_difference_map(ds, rgb, job.study_version, n)
            files.append(_save_atomically(sc, out / f"sc_{n:03d}.dcm"))
        relative = [str(f.relative_to(self.settings.storage.data_dir)) for f in files]

        results = [
            ImageResult(
                instance_id=inst.id,
                study_id=job.study_id,
                study_version=job.study_version,
                score=s.score,
                percentile=s.percentile,
                abnormal=s.abnormal,
                statistics=json.dumps(s.statistics),
                model=self.model.name,
            )
            for inst, s in zip(instances, scores)
        ]
        urgent_at = self.settings.worker.urgent_percentile
        urgent = any(s.abnormal if urgent_at is None else s.percentile >= urgent_at for s in scores)
        exports = [(d.name, relative) for d in self.settings.destinations]
        return results, "urgent" if urgent else "routine", exports

    # -- export ---------------------------------------------------------------------------
    def deliver_due_exports(self) -> bool:
        export = self.index.claim_due_export(self.settings.worker.lease_s)
        if export is None:
            return False
        destinations = {d.name: d for d in self.settings.destinations}
        destination = destinations.get(export.destination)
        try:
            if destination is None:
                raise ExportError(
                    f"destination {export.destination!r} is no longer configured", permanent=True
                )
            datasets = [
                pydicom.dcmread(self.settings.storage.data_dir / f)
                for f in json.loads(export.files)
            ]
            send_objects(destination, datasets, self.settings.node.ae_title)
        except ExportError as exc:
            delay = (
                None if exc.permanent else self.settings.worker.export.delay_after(export.attempts)
            )
            log.warning(
                "export #%d to %s (attempt %d): %s%s",
                export.id,
                export.destination,
                export.attempts,
                exc,
                "; giving up" if delay is None else "",
            )
            retry_at = None if delay is None else utcnow() + dt.timedelta(seconds=delay)
            self.index.export_failed(export.id, str(exc), retry_at)
            return True
        self.index.export_sent(export.id)
        return True


def _save_atomically(ds, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_suffix(".part")
    ds.save_as(temp, enforce_file_format=True)
    os.replace(temp, path)
    return path


class _Heartbeat:
    """Renews a job's lease while it runs, so a live worker's job is never taken over."""

    def __init__(self, index: Index, job_id: int, owner: str, lease_s: float) -> None:
        self._args = (job_id, owner, lease_s)
        self._index = index
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"lease-{job_id}")

    def _run(self) -> None:
        while not self._stop.wait(self._args[2] / 3):
            if not self._index.renew_lease(*self._args):
                return

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
