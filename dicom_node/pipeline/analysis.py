"""Scoring study versions: read each study's images from the spool (`load`), score the images
of one or several studies with the model together (`score`), then per study write its SR and
one SC per image to the results folder and decide its worklist priority (`results`)."""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pydicom
import torch
from pydicom.dataset import Dataset

from dicom_node.config import Settings
from dicom_node.errors import ImageDecodeError, InfrastructureError, OutsidePopulation
from dicom_node.index.records import (
    ClaimedJob,
    ImageScoreRecord,
    InstanceRecord,
    ResultObjectRecord,
    ScoredStudy,
)
from dicom_node.index.schema import Priority, ResultKind
from dicom_node.model.ensemble import AnomalyModel
from dicom_node.model.inputs import to_model_input
from dicom_node.model.pixels import unit_image_from_dataset
from dicom_node.model.population import age_of
from dicom_node.model.scores import ImageScore
from dicom_node.pipeline.result_facts import result_facts
from dicom_node.results.anomaly_map import (
    fit_for_display,
    render_anomaly_overlay,
    write_anomaly_map,
)
from dicom_node.results.key_objects import write_key_objects
from dicom_node.results.report import Algorithm, write_anomaly_report
from dicom_node.results.sources import header_for_results
from dicom_node.storage import Storage

log = logging.getLogger(__name__)


def study_priority(scores: Sequence[ImageScore], urgent_percentile: float | None) -> Priority:
    """Urgent when any image reaches the urgent percentile among normals (None: the model's
    operating point); routine otherwise."""
    if urgent_percentile is None:
        urgent = any(s.abnormal for s in scores)
    else:
        urgent = any(s.percentile >= urgent_percentile for s in scores)
    return Priority.URGENT if urgent else Priority.ROUTINE


def algorithm_of(model: AnomalyModel) -> Algorithm:
    recipe = model.recipe
    return Algorithm(
        name=model.name,
        version=str(model.info.get("version", "1")),
        parameters={
            "arch": recipe.arch.value,
            "image_size": str(recipe.image_size),
            "members": str(len(model.members)),
            "threshold": f"{model.calibration.threshold:.4f}",
        },
    )


@dataclass(frozen=True)
class LoadedStudy:
    """A claimed study's images, decoded: what scoring and the result objects need."""

    job: ClaimedJob
    images: tuple[InstanceRecord, ...]
    headers: tuple[Dataset, ...]  # each source's attributes for the results, no pixels
    units: tuple[np.ndarray, ...]  # each image for display and for the model
    note: str = ""  # what the result must carry: age unknown, images left out

    @property
    def image_count(self) -> int:
        return len(self.units)


class StudyAnalyser:
    def __init__(self, settings: Settings, model: AnomalyModel, storage: Storage) -> None:
        self.settings = settings
        self.model = model
        self.algorithm = algorithm_of(model)
        self.storage = storage

    def load(self, job: ClaimedJob, images: Sequence[InstanceRecord]) -> LoadedStudy:
        """Read and decode `images` (the study's chest images), each source file once; those
        outside the model's declared population, or unlike its training data (the domain
        check), are left out, with the reason.

        NotScorable (ImageDecodeError, OutsidePopulation): the study cannot be scored, now or
        ever. InfrastructureError or OSError: the spool failed; a later attempt may succeed.
        """
        if not images:
            raise ImageDecodeError(f"study {job.study_uid}: no chest image left to score")
        kept, units, headers, outside, unlike, notes = [], [], [], [], [], []
        age_unknown = False
        for inst in images:  # one source in memory at a time; only its picture is kept
            ds = self._read_source(inst)
            if problem := self._outside_population(ds):
                outside.append(problem)
                continue
            age_unknown = age_unknown or age_of(ds) is None
            unit = unit_image_from_dataset(ds, source=f"instance {inst.sop_instance_uid}")
            if problem := self._unlike_training(unit):
                unlike.append(problem)
                continue
            units.append(fit_for_display(unit))  # a 4000 px source costs what a 2048 px one does
            headers.append(header_for_results(ds))
            kept.append(inst)
        reasons = []
        if outside:
            reasons.append(f"outside the model's population: {'; '.join(sorted(set(outside)))}")
        reasons += sorted(set(unlike))
        if not kept:
            raise OutsidePopulation("; ".join(reasons))
        population = self.model.population
        if population and age_unknown:
            notes.append(f"age unknown (model: {population.ages})")
        if outside or unlike:
            notes.append(f"{len(outside) + len(unlike)} image(s) left out: {'; '.join(reasons)}")
        return LoadedStudy(job, tuple(kept), tuple(headers), tuple(units), "; ".join(notes))

    def _unlike_training(self, unit) -> str | None:
        """The domain check on the image itself (the model's typicality), when it has one."""
        return self.model.unlike_training(to_model_input(unit, self.model.image_size))

    def _outside_population(self, ds: Dataset) -> str | None:
        population = self.model.population
        if population is None:
            return None
        if problem := population.problem(ds):
            return problem
        if self.settings.worker.unknown_age == "refuse" and age_of(ds) is None:
            return f"age unknown (model: {population.ages}; worker.unknown_age is refuse)"
        return None

    def score(self, studies: Sequence[LoadedStudy]) -> list[list[ImageScore]]:
        """Every image of several studies through the model together, `worker.batch_size`
        images per forward pass; the scores per study."""
        size, batch = self.model.image_size, self.settings.worker.batch_size
        x = torch.cat([to_model_input(u, size) for study in studies for u in study.units])
        flat = [s for i in range(0, len(x), batch) for s in self.model.score(x[i : i + batch])]
        scores, start = [], 0
        for study in studies:
            scores.append(flat[start : start + len(study.units)])
            start += len(study.units)
        return scores

    def results(
        self,
        study: LoadedStudy,
        scores: list[ImageScore],
        earlier_reports: Sequence[str],
        replaces: Sequence[str] = (),
    ) -> ScoredStudy:
        """Write the study's result objects (OSError: the results folder failed);
        `replaces`: the earlier versions' report UIDs, which an HL7 correction names."""
        priority = study_priority(scores, self.settings.worker.urgent_percentile)
        objects = self._write_results(
            study.job, list(study.headers), list(study.units), scores, earlier_reports, priority
        )
        facts = result_facts(
            study.headers[0],
            scores,
            priority,
            objects,
            replaces,
            self.model.name,
            self.algorithm.version,
            self.model.calibration.threshold,
            study.job.study_version,
        )
        return ScoredStudy(
            images=tuple(
                ImageScoreRecord(inst.id, s.score, s.percentile, s.abnormal, s.statistics)
                for inst, s in zip(study.images, scores)
            ),
            priority=priority,
            model=self.model.name,
            objects=objects,
            destinations=tuple(d.name for d in self.settings.destinations),
            note=study.note,
            facts=facts,
            hl7_destinations=tuple(d.name for d in self.settings.hl7.destinations),
        )

    def _read_source(self, inst: InstanceRecord) -> Dataset:
        try:
            data = self.storage.instances.read(inst.file)
        except FileNotFoundError as exc:
            raise InfrastructureError(
                f"spool file {inst.file} of instance {inst.sop_instance_uid!r} is missing"
            ) from exc
        try:
            return pydicom.dcmread(io.BytesIO(data))
        except OSError:
            raise
        except Exception as exc:
            raise ImageDecodeError(
                f"{inst.sop_instance_uid}: unreadable file ({type(exc).__name__}: {exc})"
            ) from exc

    def _write_results(
        self,
        job: ClaimedJob,
        headers: list[Dataset],
        units: list,
        scores: list[ImageScore],
        earlier_reports: Sequence[str],
        priority: Priority,
    ) -> tuple[ResultObjectRecord, ...]:
        # Named by the index's study id: a peer's UID never becomes part of a key.
        out = f"results/study-{job.study_id}/v{job.study_version}"
        previous = [self._read_earlier_report(key) for key in earlier_reports]
        report = write_anomaly_report(
            headers,
            scores,
            self.algorithm,
            job.study_version,
            [p for p in previous if p],
            urgent=priority is Priority.URGENT,
        )
        objects = [(ResultKind.REPORT, report, self._save(report, f"{out}/sr.dcm"))]
        threshold = self.model.calibration.threshold
        for n, (ds, unit, score) in enumerate(zip(headers, units, scores), start=1):
            rgb = render_anomaly_overlay(unit, score, threshold)
            sc = write_anomaly_map(ds, rgb, job.study_version, n)
            objects.append((ResultKind.ANOMALY_MAP, sc, self._save(sc, f"{out}/sc_{n:03d}.dcm")))
        flagged = [h for h, score in zip(headers, scores) if score.abnormal]
        if self.settings.worker.key_objects and flagged:
            ko = write_key_objects(flagged, job.study_version, self.model.name)
            objects.append((ResultKind.KEY_OBJECTS, ko, self._save(ko, f"{out}/ko.dcm")))
        return tuple(
            ResultObjectRecord(kind, ds.SOPInstanceUID, ds.SeriesInstanceUID, key)
            for kind, ds, key in objects
        )

    def _save(self, ds: Dataset, key: str) -> str:
        """Write a result object whole (a full disk leaves nothing half-written)."""
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        self.storage.results.write(key, buffer.getvalue())
        return key

    def _read_earlier_report(self, key: str) -> Dataset | None:
        try:
            return pydicom.dcmread(io.BytesIO(self.storage.results.read(key)))
        except (OSError, pydicom.errors.InvalidDicomError) as exc:
            log.warning("earlier report %s unreadable (%s): not listed as predecessor", key, exc)
            return None
