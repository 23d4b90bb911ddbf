"""DICOM vocabulary and pure checks of datasets: no I/O, no database."""
