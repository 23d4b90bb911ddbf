"""Pure decisions: routing, retries, how a destination's answer is read, and priority."""

from __future__ import annotations

import dataclasses
import datetime as dt

import numpy as np
import pytest

from dicom_node.config import AcceptRules, ExportRetry, RetryPolicy
from dicom_node.index.records import InstanceRecord, LoopHealth
from dicom_node.index.schema import Priority
from dicom_node.model.scores import ImageScore
from dicom_node.pipeline.analysis import study_priority
from dicom_node.pipeline.delivery import is_permanent_refusal
from dicom_node.pipeline.retry import backoff_s, is_infrastructure_failure, retry_decision
from dicom_node.pipeline.routing import is_scored_image, route_study

DX = "1.2.840.10008.5.1.4.1.1.1.1"
NOW = dt.datetime(2026, 1, 1, 12, 0, 0)


def instance(modality="DX", body_part="CHEST", sop_class=DX) -> InstanceRecord:
    return InstanceRecord(
        1,
        "1.2",
        1,
        1,
        1,
        sop_class,
        "1.2.840.10008.1.2.1",
        modality,
        body_part,
        1,
        "0" * 64,
        "PACS",
        "127.0.0.1",
        "f",
    )


def test_a_chest_image_of_an_accepted_modality_is_scored():
    rules = AcceptRules()
    assert is_scored_image(instance(), rules)
    assert is_scored_image(instance("CR", "THORAX"), rules)
    assert not is_scored_image(instance("CT"), rules)
    assert not is_scored_image(instance(body_part="HAND"), rules)
    assert not is_scored_image(instance(sop_class="1.2.840.10008.5.1.4.1.1.88.11"), rules)


def test_routing_accepts_a_study_with_one_chest_image_and_says_why_it_skips_others():
    decision = route_study([instance(), instance("CR", "HAND")], AcceptRules())
    assert decision.accepted and decision.reason.startswith("1 of 2 instance(s)")
    skipped = route_study([instance("CR", "HAND"), instance("CT", "")], AcceptRules())
    assert not skipped.accepted
    assert "study has: CR HAND, CT no body part" in skipped.reason


def test_retries_back_off_exponentially_up_to_the_cap_then_give_up():
    policy = RetryPolicy(max_attempts=4, backoff_s=2, max_backoff_s=5)
    assert [backoff_s(policy, n) for n in (1, 2, 3, 4)] == [2, 4, 5, 5]
    first = retry_decision(policy, 1, "boom", NOW)
    assert not first.gives_up and first.retry_at == NOW + dt.timedelta(seconds=2)
    last = retry_decision(policy, 4, "boom", NOW)
    assert last.gives_up and last.reason == "boom (gave up after 4 attempt(s))"


def test_infrastructure_failures_are_retried_for_as_long_as_they_last():
    policy = RetryPolicy(max_attempts=2, backoff_s=1, max_backoff_s=8)
    decision = retry_decision(policy, 50, "disk full", NOW, infrastructure=True)
    assert not decision.gives_up and decision.retry_at == NOW + dt.timedelta(seconds=8)
    assert is_infrastructure_failure(OSError(28, "No space left on device"))
    assert not is_infrastructure_failure(ValueError("bad value"))


@pytest.mark.parametrize(
    "status,permanent",
    [
        (0x0000, False),
        (0xB000, False),
        (0xA700, False),
        (0xA7FF, False),
        (0x0122, True),
        (0xA900, True),
        (0xC210, True),
        (0x0211, True),
    ],
)
def test_only_out_of_resources_is_a_transient_refusal(status, permanent):
    assert is_permanent_refusal(status) is permanent


def test_export_retry_defaults_are_a_valid_policy():
    assert ExportRetry().check() is None
    assert RetryPolicy(max_attempts=0).check() is not None


def score(value: float, percentile: float, abnormal: bool) -> ImageScore:
    return ImageScore({"disc": value}, value, percentile, abnormal, np.zeros((2, 2), np.float32))


def test_priority_follows_the_operating_point_or_the_urgent_percentile():
    below, above = score(0.1, 60.0, False), score(2.0, 97.0, True)
    assert study_priority([below], None) is Priority.ROUTINE
    assert study_priority([below, above], None) is Priority.URGENT
    assert study_priority([below, above], 99.0) is Priority.ROUTINE  # stricter than the model
    assert study_priority([below], 50.0) is Priority.URGENT  # looser than the model


def test_a_loop_is_unhealthy_when_failing_or_late():
    health = LoopHealth("scoring", "h:1:a", 60, NOW, 0, "")
    assert health.problem(NOW + dt.timedelta(seconds=59)) is None
    assert "no completed cycle for 61 s" in health.problem(NOW + dt.timedelta(seconds=61))
    failing = dataclasses.replace(health, failures=2, last_error="OSError: disk full")
    assert failing.problem(NOW) == "failing (2 cycle(s) in a row): OSError: disk full"
    never = dataclasses.replace(health, last_cycle_at=None)
    assert never.problem(NOW) == "has not completed a cycle yet"
