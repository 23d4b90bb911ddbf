"""The node's result objects as a browser shows them: a Secondary Capture as a PNG, a
Structured Report as rows of a table."""

from __future__ import annotations

import io

import pydicom
from PIL import Image
from pydicom.dataset import Dataset

THUMBNAIL_PX = 160
MAX_ROWS = 500  # of an SR table: the node's reports have a few dozen


def png_of(data: bytes, thumbnail: bool) -> bytes:
    """The SC's picture (decompressed, in RGB), whole or as a thumbnail."""
    ds = pydicom.dcmread(io.BytesIO(data))
    image = Image.fromarray(ds.pixel_array)
    if thumbnail:
        image.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def report_rows(data: bytes) -> list[tuple[int, str, str]]:
    """(depth, concept, value) for each content item of an SR, in document order."""
    rows: list[tuple[int, str, str]] = []

    def walk(items, depth: int) -> None:
        for item in items:
            if len(rows) >= MAX_ROWS:
                return
            rows.append((depth, _concept(item), _value(item)))
            walk(item.get("ContentSequence", []), depth + 1)

    ds = pydicom.dcmread(io.BytesIO(data))
    walk(ds.get("ContentSequence", []), 0)
    return rows


def _concept(item: Dataset) -> str:
    names = item.get("ConceptNameCodeSequence")
    return str(names[0].CodeMeaning) if names else str(item.get("RelationshipType", ""))


def _value(item: Dataset) -> str:
    kind = item.get("ValueType", "")
    if kind == "NUM" and item.get("MeasuredValueSequence"):
        measured = item.MeasuredValueSequence[0]
        units = measured.MeasurementUnitsCodeSequence[0].CodeValue
        return f"{float(measured.NumericValue):.3f} {units}"
    if kind == "CODE" and item.get("ConceptCodeSequence"):
        return str(item.ConceptCodeSequence[0].CodeMeaning)
    if kind in ("TEXT", "UIDREF", "DATETIME", "DATE", "PNAME"):
        for keyword in ("TextValue", "UID", "DateTime", "Date", "PersonName"):
            if keyword in item:
                return str(item.get(keyword))
    if kind == "IMAGE" and item.get("ReferencedSOPSequence"):
        return f"image {item.ReferencedSOPSequence[0].ReferencedSOPInstanceUID}"
    return ""
