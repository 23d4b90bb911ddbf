"""The conformance statement says what the code does: its generated tables are made anew from
the code's own lists and must match the document."""

from __future__ import annotations

from pathlib import Path

from dicom_node.app.conformance import SECTIONS, generated_names, regenerate

STATEMENT = Path(__file__).resolve().parent.parent / "docs" / "conformance.md"


def test_every_generated_table_is_in_the_statement_and_current():
    text = STATEMENT.read_text()
    assert generated_names(text) == set(SECTIONS)
    assert regenerate(text) == text, (
        "docs/conformance.md differs from the code: run "
        "`python -m dicom_node.app.conformance docs/conformance.md` and read the diff"
    )


def test_a_changed_table_is_noticed():
    text = STATEMENT.read_text()
    drifted = text.replace("| Computed Radiography Image Storage |", "| CR |", 1)
    assert drifted != text and regenerate(drifted) != drifted


def test_the_statement_follows_ps3_2s_structure():
    headings = [line for line in STATEMENT.read_text().splitlines() if line.startswith("## ")]
    assert [h.split(" ", 2)[2] for h in headings] == [
        "Overview",
        "Table of contents",
        "Introduction",
        "Networking",
        "Media interchange",
        "Support of character sets",
        "Security",
        "Annexes",
    ]
