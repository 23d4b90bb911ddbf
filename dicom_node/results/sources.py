"""The source images' headers as the result writers need them, whatever the sources carry.

Many converted or older files leave out Type 2 attributes (absent rather than empty), and
valid character sets such as ``\\ISO 2022 IR 87`` (an empty first value, code extensions)
are not accepted by highdicom as they are. The copy made here has every Type 2 attribute the
results copy (empty when the source has none) and its text decoded and re-encoded as
UTF-8 (ISO_IR 192), which represents every character of every DICOM character set. Pixel Data
is left out: the writers never need it.
"""

from __future__ import annotations

import copy

from pydicom.dataset import Dataset
from pydicom.valuerep import PersonName

UTF8 = "ISO_IR 192"

# Type 2 attributes of the Patient, General Study and General Series modules that the SR and
# SC copy from their source (PS3.3 C.7.1.1, C.7.2.1, C.7.3.1).
TYPE_2_COPIED = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
    "StudyID",
    "AccessionNumber",
)
LEFT_OUT = {0x7FE00010, 0x7FE00008, 0x7FE00009}  # Pixel Data, Float and Double Float Pixel Data


def header_for_results(source: Dataset) -> Dataset:
    """A header-only copy of `source` that the SR and SC writers accept."""
    source.decode()  # every text value to str, with the source's own character set
    header = Dataset()
    for element in source:
        if element.tag not in LEFT_OUT:
            header.add(copy.copy(element))
    header.file_meta = getattr(source, "file_meta", Dataset())
    header.SpecificCharacterSet = UTF8
    for keyword in TYPE_2_COPIED:
        if keyword not in header or header[keyword].value is None:
            setattr(header, keyword, "")
        elif isinstance(header[keyword].value, PersonName):
            header[keyword].value = str(header[keyword].value)
    return header
