"""One exception base for the node; narrow subclasses say what went wrong and what to do next."""

from __future__ import annotations


class DicomNodeError(Exception):
    """Base of every error the node raises on purpose."""


class ConfigError(DicomNodeError):
    """The YAML configuration is missing, malformed or holds an impossible value."""


class ImageDecodeError(DicomNodeError):
    """A DICOM image's pixels cannot be turned into model input; the message says why."""


class ModelFileError(DicomNodeError):
    """A model directory is missing, truncated or incompatible with this code."""
