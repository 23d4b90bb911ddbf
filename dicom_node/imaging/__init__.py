"""DICOM pixels to model input: the one path shared by training, scoring and the worker."""

from dicom_node.imaging.pixels import read_unit_image, unit_image_from_dataset
from dicom_node.imaging.resize import to_model_input

__all__ = ["read_unit_image", "to_model_input", "unit_image_from_dataset"]
