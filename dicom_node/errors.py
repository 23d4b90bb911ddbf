"""One exception base for the node; narrow subclasses say what went wrong and what to do next."""

from __future__ import annotations


class DicomNodeError(Exception):
    """Base of every error the node raises on purpose."""


class ConfigError(DicomNodeError):
    """The YAML configuration is missing, malformed or holds an impossible value."""


class NotScorable(DicomNodeError):
    """This model cannot score the study, now or ever: it ends `not_scored` with the message,
    at the first attempt."""


class ImageDecodeError(NotScorable):
    """A DICOM image's pixels cannot be turned into model input; the message says why."""


class OutsidePopulation(NotScorable):
    """No image of the study is from the population the model declares it was trained on, or
    like its training data (the domain check)."""


class ModelFileError(DicomNodeError):
    """A model cannot be loaded: its directory is missing, truncated or incompatible with this
    code, or the device asked for is not there."""


class TrainingError(DicomNodeError):
    """Training, calibration or evaluation cannot run with the data or options given."""


class IndexSchemaError(DicomNodeError):
    """The index is missing, unreachable or at another release's schema revision."""


class InfrastructureError(DicomNodeError):
    """The node's own footing failed (a spool file gone, a disk full): retried, never blamed on
    the study, and shown as an unhealthy loop until it passes."""
