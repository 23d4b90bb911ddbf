"""Real DICOM samples shipped for the demo and the tests (see README.md here for sources)."""

from __future__ import annotations

from pathlib import Path

SAMPLES_DIR = Path(__file__).resolve().parent

# storescu option proposing each sample's own transfer syntax (dcmtk converts otherwise).
STORESCU_SYNTAX_OPTION = {
    "zhanglab_01_normal.dcm": "-xe",
    "zhanglab_02_normal.dcm": "-xy",
    "zhanglab_03_pneumonia.dcm": "-xe",
    "zhanglab_04_pneumonia.dcm": "-xy",
    "zhanglab_05_normal.dcm": "-xi",
    "cr_chest_pa_mono1_j2k.dcm": "-xw",
    "cr_extremity_mono1_j2k.dcm": "-xv",
}


def sample_files() -> list[Path]:
    return sorted(SAMPLES_DIR.glob("*.dcm"))
