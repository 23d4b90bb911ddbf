"""Supervised loops: an exception ends a cycle, never the loop; failures back off, are counted,
and reach the index's heartbeats; recovery is logged and clears them."""

from __future__ import annotations

import threading
import time

import pytest

from dicom_node.index import Index
from dicom_node.index.database import utcnow
from dicom_node.pipeline.loops import MAX_BACKOFF_S, LoopRunner, SupervisedLoop


@pytest.fixture
def index(tmp_path):
    idx = Index(f"sqlite:///{tmp_path / 'i.sqlite3'}")
    yield idx
    idx.close()


class FlakyStep:
    """Fails `failures` times, then does `work` units of work, then finds none."""

    def __init__(self, failures: int, work: int) -> None:
        self.failures, self.work, self.calls = failures, work, 0
        self.running = 0
        self.overlapped = False

    def __call__(self) -> bool:
        self.calls += 1
        self.running += 1
        self.overlapped |= self.running > 1
        try:
            if self.failures:
                self.failures -= 1
                raise ConnectionError("index unreachable")
            if self.work:
                self.work -= 1
                return True
            return False
        finally:
            self.running -= 1


def make_loop(index, step, idle_s=0.01) -> SupervisedLoop:
    return SupervisedLoop(
        "scoring", step, idle_s=idle_s, deadline_s=60, heartbeats=index.heartbeats, owner="h:1:a"
    )


def test_a_failing_cycle_backs_off_and_is_reported_then_recovers(index, caplog):
    loop = make_loop(index, FlakyStep(failures=3, work=2), idle_s=1)
    waits = [loop.run_cycle() for _ in range(3)]
    assert waits == [2, 4, 8]  # exponential backoff from idle_s
    assert loop.failures == 3 and loop.last_cycle_at is None
    (reported,) = index.views.status().loops
    assert reported.failures == 3 and "ConnectionError: index unreachable" in reported.last_error
    assert "cycle failed" in caplog.text  # the first with its traceback, then one line each
    assert loop.run_cycle() == 1  # the step works again: two units of work, then idle
    assert loop.failures == 0 and loop.last_cycle_at is not None
    assert "recovered after 3 failed cycle(s)" in caplog.text
    (reported,) = index.views.status().loops
    assert reported.failures == 0 and reported.problem(utcnow()) is None


def test_backoff_is_capped(index):
    loop = make_loop(index, FlakyStep(failures=20, work=0), idle_s=1)
    assert max(loop.run_cycle() for _ in range(20)) == MAX_BACKOFF_S


def test_a_runner_drains_the_work_never_runs_a_loop_twice_at_once_and_stops(index):
    step = FlakyStep(failures=2, work=50)
    runner = LoopRunner([make_loop(index, step)])
    deadline = time.monotonic() + 10
    while (step.work or step.failures) and time.monotonic() < deadline:
        time.sleep(0.02)
    runner.stop()
    assert step.work == 0 and not step.overlapped
    calls = step.calls
    time.sleep(0.1)
    assert step.calls == calls  # stopped: no more cycles
    assert index.views.status().loops == []  # a clean stop takes the loop off the report
    assert threading.active_count() < 50


def test_stopping_never_waits_for_ever_on_a_cycle_that_reschedules_itself(index):
    """A cycle that ends while `stop` shuts the scheduler down must not block it (APScheduler
    holds its job store lock while it waits for running cycles)."""
    for _ in range(40):
        loops = [make_loop(index, lambda: False, idle_s=0.0) for _ in range(3)]
        runner = LoopRunner(loops)
        time.sleep(0.02)  # cycles end and reschedule themselves all the time
        stopper = threading.Thread(target=runner.stop)
        stopper.start()
        stopper.join(timeout=20)
        assert not stopper.is_alive(), "stop() is stuck"
