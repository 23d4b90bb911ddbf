"""The scoring loop's step: claim the next job under a lease, keep the lease alive while the
study is analysed, and write the job's final state in `finally`, whatever happened:

- scored: scores, result objects, priority and exports in one commit;
- bad input (an image that cannot be decoded): dead at once, the study "not scored: reason";
- anything else: retried with backoff per `worker.scoring`; infrastructure failures are
  retried for as long as they last and re-raised, so the loop reports itself unhealthy.

If even the final state cannot be written (the index is down), the lease runs out and the job
is taken over once the index is back.
"""

from __future__ import annotations

import logging
import threading

from dicom_node.config import Settings
from dicom_node.errors import ImageDecodeError
from dicom_node.index import Index
from dicom_node.index.database import utcnow
from dicom_node.index.records import ClaimedJob, ScoredStudy
from dicom_node.pipeline.analysis import StudyAnalyser
from dicom_node.pipeline.retry import RetryDecision, is_infrastructure_failure, retry_decision
from dicom_node.pipeline.routing import is_scored_image

log = logging.getLogger(__name__)


class ScoringStep:
    def __init__(
        self, settings: Settings, index: Index, analyser: StudyAnalyser, owner: str
    ) -> None:
        self.settings = settings
        self.index = index
        self.analyser = analyser
        self.owner = owner

    def __call__(self) -> bool:
        """Score the next due study; False when there was none."""
        lease_s = self.settings.worker.lease_s
        job = self.index.queue.claim_next_job(self.owner, lease_s)
        if job is None:
            return False
        with LeaseKeeper(self.index, job.id, self.owner, lease_s):
            self.run_job(job)
        return True

    def run_job(self, job: ClaimedJob) -> None:
        scored: ScoredStudy | None = None
        failure: RetryDecision | None = None
        infrastructure: BaseException | None = None
        try:
            scored = self._analyse(job)
        except ImageDecodeError as exc:  # the same bytes will not decode next time either
            failure = RetryDecision(str(exc), None)
        except Exception as exc:
            infra = is_infrastructure_failure(exc)
            failure = retry_decision(
                self.settings.worker.scoring,
                job.attempts,
                f"{type(exc).__name__}: {exc}",
                utcnow(),
                infrastructure=infra,
            )
            if infra:
                infrastructure = exc
            else:
                log.exception("job #%d (study %r) failed", job.id, job.study_uid)
        finally:
            self._record(job, scored, failure)
        if infrastructure is not None:
            raise infrastructure  # the loop backs off and reports itself unhealthy

    def _analyse(self, job: ClaimedJob) -> ScoredStudy:
        accept = self.settings.studies.accept
        images = [
            i for i in self.index.catalog.study_contents(job.study_id) if is_scored_image(i, accept)
        ]
        earlier = self.index.outbox.earlier_reports(job.study_id, job.study_version)
        return self.analyser.analyse(job, images, earlier)

    def _record(
        self, job: ClaimedJob, scored: ScoredStudy | None, failure: RetryDecision | None
    ) -> None:
        if scored is not None:
            if self.index.queue.finish_scored(job, self.owner, scored):
                log.info(
                    "study %r v%d scored: %s, max score %.2f",
                    job.study_uid,
                    job.study_version,
                    scored.priority.value,
                    max(i.score for i in scored.images),
                )
            return
        if failure is None:  # interrupted before a decision (KeyboardInterrupt, SystemExit)
            failure = RetryDecision("interrupted", utcnow())
        self.index.queue.finish_failed(job, self.owner, failure.reason, failure.retry_at)
        if failure.gives_up:
            log.warning("job #%d: study %r not scored: %s", job.id, job.study_uid, failure.reason)
        else:
            log.warning(
                "job #%d (attempt %d) will be retried at %s: %s",
                job.id,
                job.attempts,
                failure.retry_at.isoformat(timespec="seconds"),
                failure.reason,
            )


class LeaseKeeper:
    """Renews a job's lease while it runs, so a live worker's job is never taken over."""

    def __init__(self, index: Index, job_id: int, owner: str, lease_s: float) -> None:
        self._renew = lambda: index.queue.renew_lease(job_id, owner, lease_s)
        self._every = lease_s / 3
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"lease-{job_id}")

    def _run(self) -> None:
        while not self._stop.wait(self._every):
            try:
                if not self._renew():
                    return
            except Exception as exc:  # the index is down: the next renewal may get through
                log.warning("cannot renew a job lease: %s", exc)

    def __enter__(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
