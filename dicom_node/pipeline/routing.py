"""Routing rules: which complete studies this node scores, and why the others are skipped.
Pure functions of the study's instance records."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from dicom_node.config import AcceptRules
from dicom_node.dicom.terms import is_image_sop_class
from dicom_node.index.records import InstanceRecord


@dataclass(frozen=True)
class RoutingDecision:
    accepted: bool
    reason: str


def is_scored_image(instance: InstanceRecord, rules: AcceptRules) -> bool:
    """An image of an accepted modality and body part: what the worker scores."""
    return (
        is_image_sop_class(instance.sop_class_uid)
        and instance.modality in rules.modalities
        and instance.body_part in rules.body_parts
    )


def route_study(instances: Sequence[InstanceRecord], rules: AcceptRules) -> RoutingDecision:
    """Accepted when at least one image matches modality and body part; the reason says why."""
    matching = [i for i in instances if is_scored_image(i, rules)]
    if matching:
        return RoutingDecision(
            True,
            f"{len(matching)} of {len(instances)} instance(s) are "
            f"{'/'.join(rules.modalities)} chest images",
        )
    seen = sorted({f"{i.modality or '?'} {i.body_part or 'no body part'}" for i in instances})
    return RoutingDecision(
        False,
        f"no {'/'.join(rules.modalities)} image of {'/'.join(rules.body_parts)}; "
        f"study has: {', '.join(seen)}",
    )
