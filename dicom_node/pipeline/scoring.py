"""The scoring loop's step: claim the next job (and, when the queue is long, a few more) under
leases, keep the leases alive while the studies are analysed, and write each job's final
state in `finally`, whatever happened:

- scored: scores, result objects, priority and exports in one commit;
- bad input (an image that cannot be decoded, a patient outside the model's population): dead
  at once, the study "not scored: reason";
- anything else: retried with backoff per `worker.scoring`; infrastructure failures are
  retried for as long as they last and re-raised, so the loop reports itself unhealthy.

If even the final state cannot be written (the index is down), the lease runs out and the job
is taken over once the index is back.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from dicom_node.config import Settings
from dicom_node.errors import NotScorable
from dicom_node.index import Index
from dicom_node.index.database import utcnow
from dicom_node.index.records import ClaimedJob, ScoredStudy
from dicom_node.metrics import SCORING_SECONDS
from dicom_node.pipeline.analysis import LoadedStudy, StudyAnalyser
from dicom_node.pipeline.retry import RetryDecision, is_infrastructure_failure, retry_decision
from dicom_node.pipeline.routing import is_scored_image

log = logging.getLogger(__name__)
T = TypeVar("T")


class ScoringStep:
    def __init__(
        self, settings: Settings, index: Index, analyser: StudyAnalyser, owner: str
    ) -> None:
        self.settings = settings
        self.index = index
        self.analyser = analyser
        self.owner = owner

    def __call__(self) -> bool:
        """Score the next due studies; False when there was none.

        One study when one is due. When the queue is longer, further studies are claimed and
        decoded while fewer than `worker.batch_size` images are loaded, and all their images
        go through the model together; each study keeps its own outcome."""
        lease_s = self.settings.worker.lease_s
        job = self.index.queue.claim_next_job(self.owner, lease_s)
        if job is None:
            return False
        with LeaseKeeper(self.index, self.owner, lease_s) as leases:
            leases.add(job.id)
            self.run_jobs(job, leases)
        return True

    def run_jobs(self, first: ClaimedJob, leases: LeaseKeeper) -> None:
        batch = _Batch(self.settings)
        started = time.monotonic()
        try:
            loaded = self._load_more(first, batch, leases)
            scores = batch.attempt_all(loaded, lambda: self.analyser.score(loaded))
            for study, study_scores in zip(loaded, scores or []):
                scored = batch.attempt(study.job, self._results, study, study_scores)
                batch.scored[study.job.id] = scored
        finally:
            took = time.monotonic() - started  # the studies of one batch share its time
            for job in batch.jobs:
                self._record(job, batch.scored.get(job.id), batch.failures.get(job.id))
                SCORING_SECONDS.observe(took)
        if batch.infrastructure is not None:
            raise batch.infrastructure  # the loop backs off and reports itself unhealthy

    def _load_more(
        self, job: ClaimedJob | None, batch: _Batch, leases: LeaseKeeper
    ) -> list[LoadedStudy]:
        """Decode `job`'s study, then claim and decode further due studies while fewer than
        `worker.batch_size` images are loaded."""
        loaded: list[LoadedStudy] = []
        images = 0
        while job is not None:
            batch.jobs.append(job)
            study = batch.attempt(job, self._load, job)
            if study is not None:
                loaded.append(study)
                images += study.image_count
            if images >= self.settings.worker.batch_size or batch.infrastructure is not None:
                break
            job = self.index.queue.claim_next_job(self.owner, self.settings.worker.lease_s)
            if job is not None:
                leases.add(job.id)
        return loaded

    def _load(self, job: ClaimedJob) -> LoadedStudy:
        accept = self.settings.studies.accept
        contents = self.index.catalog.study_contents(job.study_id)
        return self.analyser.load(job, [i for i in contents if is_scored_image(i, accept)])

    def _results(self, study: LoadedStudy, scores: list) -> ScoredStudy:
        job = study.job
        earlier = self.index.outbox.earlier_reports(job.study_id, job.study_version)
        return self.analyser.results(
            study, scores, [key for key, _ in earlier], [uid for _, uid in earlier if uid]
        )

    def _record(
        self, job: ClaimedJob, scored: ScoredStudy | None, failure: RetryDecision | None
    ) -> None:
        if scored is not None:
            if self.index.queue.finish_scored(job, self.owner, scored):
                log.info(
                    "study %r (accession %r) v%d scored: %s, max score %.2f",
                    job.study_uid,
                    job.accession_number,
                    job.study_version,
                    scored.priority.value,
                    max(i.score for i in scored.images),
                )
            return
        if failure is None:  # interrupted before a decision (KeyboardInterrupt, SystemExit)
            failure = RetryDecision("interrupted", utcnow())
        self.index.queue.finish_failed(job, self.owner, failure.reason, failure.retry_at)
        if failure.gives_up:
            log.warning(
                "job #%d: study %r (accession %r) not scored: %s",
                job.id,
                job.study_uid,
                job.accession_number,
                failure.reason,
            )
        else:
            log.warning(
                "job #%d (accession %r, attempt %d) will be retried at %s: %s",
                job.id,
                job.accession_number,
                job.attempts,
                failure.retry_at.isoformat(timespec="seconds"),
                failure.reason,
            )


class _Batch:
    """The jobs of one scoring cycle and what became of each: scored, or the failure that
    decides its retry. Bad input fails its own study only; an infrastructure failure is
    kept to be re-raised once every job's state is written."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.jobs: list[ClaimedJob] = []
        self.scored: dict[int, ScoredStudy | None] = {}
        self.failures: dict[int, RetryDecision] = {}
        self.infrastructure: BaseException | None = None

    def attempt(self, job: ClaimedJob, step: Callable[..., T], *args) -> T | None:
        try:
            return step(*args)
        except NotScorable as exc:  # the same bytes will not do next time either
            self.failures[job.id] = RetryDecision(str(exc), None)
        except Exception as exc:
            self._failed(job, exc)
            if not is_infrastructure_failure(exc):
                log.exception("job #%d (study %r) failed", job.id, job.study_uid)
        return None

    def attempt_all(self, studies: list[LoadedStudy], step: Callable[[], T]) -> T | None:
        """A step for several studies at once (the model): its failure is each one's."""
        if not studies:
            return None
        try:
            return step()
        except Exception as exc:
            if not is_infrastructure_failure(exc):
                log.exception("scoring %d studies failed", len(studies))
            for study in studies:
                self._failed(study.job, exc)
        return None

    def _failed(self, job: ClaimedJob, exc: Exception) -> None:
        infra = is_infrastructure_failure(exc)
        self.failures[job.id] = retry_decision(
            self.settings.worker.scoring,
            job.attempts,
            f"{type(exc).__name__}: {exc}",
            utcnow(),
            infrastructure=infra,
        )
        if infra:
            self.infrastructure = exc


class LeaseKeeper:
    """Renews the leases of the jobs a cycle runs, so a live worker's jobs are never taken
    over."""

    def __init__(self, index: Index, owner: str, lease_s: float) -> None:
        self._renew = lambda job_id: index.queue.renew_lease(job_id, owner, lease_s)
        self._every = lease_s / 3
        self._jobs: set[int] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="job-leases")

    def add(self, job_id: int) -> None:
        self._jobs.add(job_id)

    def _run(self) -> None:
        while not self._stop.wait(self._every):
            for job_id in list(self._jobs):
                try:
                    if not self._renew(job_id):
                        self._jobs.discard(job_id)  # taken over or finished
                except Exception as exc:  # the index is down: the next renewal may get through
                    log.warning("cannot renew the lease of job #%d: %s", job_id, exc)

    def __enter__(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
