"""A real SCU for tests that must send what well-behaved tools refuse to: datasets without a
SOP Instance UID, empty datasets, and transfers cut off half way; and a modality's MPPS."""

from __future__ import annotations

import time
from io import BytesIO

from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from pynetdicom import AE
from pynetdicom.dimse_messages import C_STORE_RQ
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.pdu import P_DATA_TF

DX_FOR_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.1"


def associate(port: int, sop_class: str = DX_FOR_PRESENTATION, calling: str = "TESTSCU"):
    ae = AE(ae_title=calling)
    ae.add_requested_context(sop_class, ExplicitVRLittleEndian)
    assoc = ae.associate("127.0.0.1", port, ae_title="DICOM_NODE")
    assert assoc.is_established, "the node refused the association"
    return assoc


def _store_request(sop_class: str, sop_instance: str, dataset_bytes: bytes) -> C_STORE:
    req = C_STORE()
    req.MessageID = 1
    req.AffectedSOPClassUID = sop_class
    req.AffectedSOPInstanceUID = sop_instance
    req.Priority = 2
    req.DataSet = BytesIO(dataset_bytes)
    return req


def send_raw_store(
    port: int, sop_instance: str, dataset_bytes: bytes, sop_class: str = DX_FOR_PRESENTATION
) -> int:
    """C-STORE of already-encoded (explicit VR little endian) dataset bytes; returns the status."""
    assoc = associate(port, sop_class)
    try:
        cx = assoc.accepted_contexts[0]
        # Pause the association's reactor as pynetdicom's own send_c_store does, so that the
        # response comes to us.
        assoc._reactor_checkpoint.clear()
        while not assoc._is_paused:
            time.sleep(0.001)
        try:
            assoc.dimse.send_msg(
                _store_request(sop_class, sop_instance, dataset_bytes), cx.context_id
            )
            _, rsp = assoc.dimse.get_msg(block=True)
        finally:
            assoc._reactor_checkpoint.set()
        return int(rsp.Status)
    finally:
        assoc.release()


def drop_mid_transfer(
    port: int, sop_instance: str, dataset_bytes: bytes, fragments: int = 3
) -> None:
    """Send the C-STORE command and the first fragments of the dataset, then close the socket."""
    assoc = associate(port)
    cx = assoc.accepted_contexts[0]
    msg = C_STORE_RQ()
    msg.primitive_to_message(_store_request(DX_FOR_PRESENTATION, sop_instance, dataset_bytes))
    sock = assoc.dul.socket
    for i, pdata in enumerate(msg.encode_msg(cx.context_id, 16384)):
        if i > fragments:
            break
        tf = P_DATA_TF()
        tf.from_primitive(pdata)
        sock.send(tf.encode())
    sock.socket.close()  # no release, no abort: the peer just vanishes
    assoc.kill()


def associate_rq_bytes(port: int, calling: str = "SLOWPEER") -> bytes:
    """An encoded A-ASSOCIATE-RQ proposing Verification, for peers written by hand."""
    from pynetdicom.pdu import A_ASSOCIATE_RQ
    from pynetdicom.pdu_primitives import A_ASSOCIATE, MaximumLengthNotification
    from pynetdicom.presentation import build_context
    from pynetdicom.sop_class import Verification
    from pynetdicom.transport import AddressInformation

    primitive = A_ASSOCIATE()
    primitive.application_context_name = "1.2.840.10008.3.1.1.1"
    primitive.calling_ae_title = calling
    primitive.called_ae_title = "DICOM_NODE"
    primitive.calling_presentation_address = AddressInformation("127.0.0.1", 0)
    primitive.called_presentation_address = AddressInformation("127.0.0.1", port)
    context = build_context(Verification)
    context.context_id = 1
    primitive.presentation_context_definition_list = [context]
    length = MaximumLengthNotification()
    length.maximum_length_received = 16382
    primitive.user_information = [length]
    pdu = A_ASSOCIATE_RQ()
    pdu.from_primitive(primitive)
    return pdu.encode()


MPPS_CONTEXT = "1.2.840.10008.3.1.2.3.3"  # Modality Performed Procedure Step


def performed_step(
    status: str, study_uid: str | None = None, images: tuple[str, ...] = ()
) -> Dataset:
    """An MPPS attribute list: its status, the study it belongs to, the images it made."""
    ds = Dataset()
    ds.PerformedProcedureStepStatus = status
    if study_uid is not None:
        scheduled = Dataset()
        scheduled.StudyInstanceUID = study_uid
        ds.ScheduledStepAttributesSequence = [scheduled]
    if images:
        series = Dataset()
        series.SeriesInstanceUID = generate_uid()
        refs = []
        for uid in images:
            ref = Dataset()
            ref.ReferencedSOPClassUID = DX_FOR_PRESENTATION
            ref.ReferencedSOPInstanceUID = uid
            refs.append(ref)
        series.ReferencedImageSequence = refs
        ds.PerformedSeriesSequence = [series]
    return ds


def mpps_association(port: int, calling: str = "MODALITY"):
    ae = AE(ae_title=calling)
    ae.add_requested_context(MPPS_CONTEXT, ExplicitVRLittleEndian)
    assoc = ae.associate("127.0.0.1", port, ae_title="DICOM_NODE")
    assert assoc.is_established, "the node refused the MPPS association"
    return assoc
