"""dicom-node: a DICOM node that triages chest X-rays with an Alpha-GAN trained on normals."""

from __future__ import annotations

__version__ = "0.2.0"
