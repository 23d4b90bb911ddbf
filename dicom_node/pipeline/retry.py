"""Retry decisions: a failed attempt is tried again after an exponential backoff, or given up.

Infrastructure failures (the disk, the spool, the index) say nothing about the study: they are
retried for as long as they last, never dead-lettered; the loop reports itself unhealthy
meanwhile. Other failures count against the policy's attempts.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from sqlalchemy.exc import SQLAlchemyError

from dicom_node.config import RetryPolicy
from dicom_node.errors import InfrastructureError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetryDecision:
    reason: str
    retry_at: dt.datetime | None  # None: give up

    @property
    def gives_up(self) -> bool:
        return self.retry_at is None


def is_infrastructure_failure(exc: BaseException) -> bool:
    """The node's own footing failed (disk, spool, database), not the input."""
    return isinstance(exc, InfrastructureError | OSError | SQLAlchemyError)


def backoff_s(policy: RetryPolicy, attempts: int) -> float:
    return min(policy.max_backoff_s, policy.backoff_s * 2 ** max(0, attempts - 1))


def retry_decision(
    policy: RetryPolicy, attempts: int, reason: str, now: dt.datetime, infrastructure: bool = False
) -> RetryDecision:
    """After `attempts` attempts (the failed one included): when to try again, or give up."""
    if attempts >= policy.max_attempts and not infrastructure:
        return RetryDecision(f"{reason} (gave up after {attempts} attempt(s))", None)
    return RetryDecision(reason, now + dt.timedelta(seconds=backoff_s(policy, attempts)))


def delivery_failure(
    policy: RetryPolicy,
    what: str,
    attempts: int,
    reason: str,
    now: dt.datetime,
    permanent: bool,
    infrastructure: bool = False,
) -> RetryDecision:
    """A delivery attempt failed (`what`: "export #3 to pacs"): given up at once when the
    peer's refusal is permanent, else `retry_decision`; logged as one warning line."""
    if permanent:
        decision = RetryDecision(reason, None)
    else:
        decision = retry_decision(policy, attempts, reason, now, infrastructure)
    log.warning(
        "%s (attempt %d): %s%s",
        what,
        attempts,
        decision.reason,
        "; giving up" if decision.gives_up else "",
    )
    return decision
