"""Routing rules: which complete studies this node scores, and why the others are skipped."""

from __future__ import annotations

from collections.abc import Sequence

from dicom_node.config import AcceptRules
from dicom_node.db import Instance
from dicom_node.dicom_terms import is_image_sop_class


def route_study(instances: Sequence[Instance], rules: AcceptRules) -> tuple[bool, str]:
    """(accepted, reason): accepted when at least one image matches modality and body part."""
    matching = [
        i
        for i in instances
        if is_image_sop_class(i.sop_class_uid)
        and i.modality in rules.modalities
        and i.body_part in rules.body_parts
    ]
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
