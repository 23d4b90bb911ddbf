"""Supervised loops: completion, scoring and delivery each run as a `SupervisedLoop`.

A loop's step does one unit of work and says whether it found any. A cycle runs steps until
the work runs out (or a time budget is spent); the loop then waits `idle_s`. An exception
ends the cycle, not the loop: it is logged, counted, and the next cycle waits an exponential
backoff. Cycles are timed by one APScheduler per process, each loop rescheduling itself, so
a loop is never run twice at once. The health (last completed cycle, consecutive failures,
last error) is kept here for the process and written, throttled, to the index for `status`.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable

from apscheduler.schedulers.background import BackgroundScheduler

from dicom_node.index.database import utcnow
from dicom_node.index.heartbeats import Heartbeats
from dicom_node.index.records import LoopHealth

log = logging.getLogger(__name__)

MAX_BACKOFF_S = 30.0


class SupervisedLoop:
    def __init__(
        self,
        name: str,
        step: Callable[[], bool],
        *,
        idle_s: float,
        deadline_s: float,
        heartbeats: Heartbeats,
        owner: str,
    ) -> None:
        self.name = name
        self.step = step
        self.idle_s = idle_s
        self.deadline_s = deadline_s
        self.heartbeats = heartbeats
        self.owner = owner
        self.last_cycle_at: dt.datetime | None = None
        self.failures = 0
        self.last_error = ""
        self._reported_at = 0.0
        self._reported_failures = -1

    def run_cycle(self) -> float:
        """Work until none is left; returns the seconds to wait before the next cycle."""
        budget_end = time.monotonic() + self.deadline_s / 4
        try:
            while self.step() and time.monotonic() < budget_end:
                pass
        except Exception as exc:
            self.failures += 1
            self.last_error = f"{type(exc).__name__}: {exc}"[:500]
            wait = min(MAX_BACKOFF_S, self.idle_s * 2**self.failures)
            if self.failures == 1:
                log.exception("%s loop: cycle failed; retrying in %.1f s", self.name, wait)
            else:
                log.warning(
                    "%s loop: cycle failed again (%d in a row; retrying in %.1f s): %s",
                    self.name,
                    self.failures,
                    wait,
                    self.last_error,
                )
        else:
            if self.failures:
                log.warning("%s loop: recovered after %d failed cycle(s)", self.name, self.failures)
            self.failures, self.last_error = 0, ""
            self.last_cycle_at = utcnow()
            wait = self.idle_s
        self._report()
        return wait

    def health(self) -> LoopHealth:
        return LoopHealth(
            self.name,
            self.owner,
            self.deadline_s,
            self.last_cycle_at,
            self.failures,
            self.last_error,
        )

    def _report(self) -> None:
        """Write the health to the index: every failed cycle (they are backed off, so rare),
        the recovery, and otherwise every third of the deadline."""
        recovered = self.failures == 0 and self._reported_failures != 0
        due = time.monotonic() - self._reported_at >= self.deadline_s / 3
        if not (self.failures or recovered or due):
            return
        try:
            self.heartbeats.beat(self.health())
        except Exception as exc:  # the index itself may be what is failing
            log.debug("%s loop: cannot write its heartbeat: %s", self.name, exc)
            return
        self._reported_at, self._reported_failures = time.monotonic(), self.failures


class LoopRunner:
    """Runs supervised loops on one APScheduler; `stop` lets running cycles finish."""

    def __init__(self, loops: list[SupervisedLoop]) -> None:
        self.loops = loops
        self._stopping = threading.Event()
        # A cycle reschedules itself while `stop` may be shutting the scheduler down, which
        # holds APScheduler's job store lock while it waits for running cycles: a cycle that
        # then called add_job would wait for ever. Scheduling and stopping take turns here.
        self._turn = threading.Lock()
        self._scheduler = BackgroundScheduler(
            timezone="UTC", executors={"default": {"type": "threadpool", "max_workers": 4}}
        )
        self._scheduler.start()
        for loop in loops:
            self._schedule(loop, 0.0)

    def _schedule(self, loop: SupervisedLoop, delay_s: float) -> None:
        with self._turn:
            if self._stopping.is_set():
                return
            self._scheduler.add_job(
                self._run,
                "date",
                run_date=dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=delay_s),
                args=(loop,),
                name=f"{loop.name} loop",
                misfire_grace_time=None,
            )

    def _run(self, loop: SupervisedLoop) -> None:
        self._schedule(loop, loop.run_cycle())

    def health(self) -> list[LoopHealth]:
        return [loop.health() for loop in self.loops]

    def stop(self) -> None:
        with self._turn:  # after this, no cycle schedules another
            self._stopping.set()
        self._scheduler.shutdown(wait=True)
        for loop in self.loops:
            try:
                loop.heartbeats.forget(loop.name, loop.owner)
            except Exception as exc:
                log.warning("%s loop: cannot remove its heartbeat: %s", loop.name, exc)
