"""Routing rules: which complete studies this node scores, and why the others are skipped."""

from __future__ import annotations

from collections.abc import Sequence

from dicom_node.config import AcceptRules
from dicom_node.db import Instance
from dicom_node.dicom_terms import is_image_sop_class


def is_scored_image(instance: Instance, rules: AcceptRules) -> bool:
    """An image of an accepted modality and body part: what the worker scores."""
    return (
        is_image_sop_class(instance.sop_class_uid)
        and instance.modality in rules.modalities
        and instance.body_part in rules.body_parts
    )


def route_study(instances: Sequence[Instance], rules: AcceptRules) -> tuple[bool, str]:
    """(accepted, reason): accepted when at least one image matches modality and body part."""
    matching = [i for i in instances if is_scored_image(i, rules)]
    if matching:
        return (
            True,
            f"{len(matching)} of {len(instances)} instance(s) are "
            f"{'/'.join(rules.modalities)} chest images",
        )
    seen = sorted({f"{i.modality or '?'} {i.body_part or 'no body part'}" for i in instances})
    return False, (
        f"no {'/'.join(rules.modalities)} image of {'/'.join(rules.body_parts)}; "
        f"study has: {', '.join(seen)}"
    )
