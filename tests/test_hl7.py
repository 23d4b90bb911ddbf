"""HL7 to the RIS, against an MLLP listener that is not the node's code (hl7apy's MLLPServer)
and parsed by hl7apy and python-hl7: one ORU^R01 per scored study with its priority, exactly
once through a RIS outage, AE retried and AR dead-lettered, a corrected ORU for a late image,
names in UTF-8 and ISO 2022 intact, OMG^O19 priority updates, the aging cap and "read"."""

from __future__ import annotations

import threading

import hl7
import pydicom
import pytest
from hl7apy.core import Message
from hl7apy.mllp import AbstractHandler, MLLPServer
from hl7apy.parser import parse_message
from pydicom.uid import generate_uid

from dicom_node.app.cli import main
from dicom_node.hl7.mllp import send
from dicom_node.samples import SAMPLES_DIR, sample_files
from dicom_node.testing.peers import free_port, storescu
from tests.nodes import FAST_WORKER, wait_for

pytestmark = pytest.mark.integration


class Ris:
    """hl7apy's MLLP server answering each message with `answers` in turn (then AA)."""

    def __init__(self, port: int = 0, answers: tuple[str, ...] = ()) -> None:
        self.received: list[str] = []
        self.answers = list(answers)
        ris = self

        class Handler(AbstractHandler):
            def reply(self) -> str:
                text = self.incoming_message
                ris.received.append(text)
                parsed = parse_message(text, find_groups=False)
                code = ris.answers.pop(0) if ris.answers else "AA"
                ack = Message("ACK", version="2.5.1")
                ack.msh.msh_9 = "ACK"
                ack.msa.msa_1 = code
                ack.msa.msa_2 = parsed.msh.msh_10.value
                if code != "AA":
                    ack.msa.msa_3 = "order unknown here" if code == "AR" else "busy, try again"
                return ack.to_mllp()

        kinds = ("ORU^R01^ORU_R01", "OMG^O19^OMG_O19", "ORM^O01^ORM_O01")  # MSH-9 whole
        handlers = {kind: (Handler,) for kind in kinds}
        self.server = MLLPServer("127.0.0.1", port, handlers)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def messages(self) -> list[hl7.Message]:
        return [hl7.parse(text) for text in self.received]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def ris():
    server = Ris()
    yield server
    server.stop()


def hl7_node(make_node, ris_port: int, message: str = "ORU^R01", hl7=None, **sections):
    destination = {
        "name": "ris",
        "host": "127.0.0.1",
        "port": ris_port,
        "message": message,
        "ack_timeout_s": 5,
    }
    return make_node(
        worker={**FAST_WORKER, "export": {"max_attempts": 5, "backoff_s": 0.2}},
        hl7={"destinations": [destination], **(hl7 or {})},
        **sections,
    )


def send_file(node, tmp_path, sample: str, **changes) -> pydicom.Dataset:
    """A sample as a new study (or the given study), with header changes; sent by storescu."""
    ds = pydicom.dcmread(SAMPLES_DIR / sample)
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = changes.pop("StudyInstanceUID", generate_uid())
    ds.SeriesInstanceUID = generate_uid()
    for keyword, value in changes.items():
        setattr(ds, keyword, value)
    path = tmp_path / f"{ds.SOPInstanceUID}.dcm"
    ds.save_as(path, enforce_file_format=True)
    option = "-xy" if "04" in sample or "02" in sample else "-xe"
    assert storescu(node.port, path, option=option).returncode == 0
    return ds


def obr(message: hl7.Message):
    return message.segment("OBR")


def obx_values(message: hl7.Message) -> dict[str, str]:
    return {str(s[3][0][0]): str(s[5]) for s in message.segments("OBX")}


def test_each_scored_sample_gets_one_oru_with_its_priority(make_node, ris, capsys):
    node = hl7_node(make_node, ris.port)
    from dicom_node.app.demo import send_samples

    assert send_samples(node.port) == len(sample_files())
    assert wait_for(lambda: len(ris.received) == 5, timeout=240), node.log_text()[-3000:]
    by_accession = {r.accession_number: r for r in node.index.views.worklist()}
    assert len(by_accession) == 5
    for text, message in zip(ris.received, ris.messages()):
        parse_message(text, find_groups=False)  # hl7apy reads it as v2.5.1
        assert str(message.segment("MSH")[9]) == "ORU^R01^ORU_R01"
        assert str(message.segment("MSH")[18]) == "UNICODE UTF-8"
        row = by_accession[str(obr(message)[3])]
        assert str(obr(message)[5]) == {"urgent": "S", "routine": "R"}[row.priority.value]
        assert str(obr(message)[25]) == "P"
        values = obx_values(message)
        assert float(values["ANOMALY_SCORE"]) == pytest.approx(row.score, abs=1e-3)
        assert values["TRIAGE_PRIORITY"].split("^")[0] == row.priority.value.upper()
        assert values["SR_STUDY_UID"] == row.study_uid
        assert "hl7 ris" in row.deliveries
    assert wait_for(
        lambda: all(r.deliveries["hl7 ris"] == "sent" for r in node.index.views.worklist())
    )
    capsys.readouterr()
    main(["status", "--config", str(node.config)])
    assert "hl7:       sent 5" in capsys.readouterr().out


def test_ris_down_then_up_gets_the_result_exactly_once(make_node, tmp_path):
    port = free_port()
    node = hl7_node(make_node, port)
    send_file(node, tmp_path, "zhanglab_03_pneumonia.dcm")
    assert wait_for(lambda: "hl7 message #1 to ris (attempt 1)" in node.log_text(), timeout=120)
    ris = Ris(port)
    try:
        assert wait_for(lambda: node.status().is_settled() and ris.received, timeout=60)
        assert wait_for(
            lambda: node.index.views.worklist()[0].deliveries["hl7 ris"] == "sent", timeout=30
        )
        assert len(ris.received) == 1
        assert str(ris.messages()[0].segment("MSH")[10]) == "DN1"
    finally:
        ris.stop()


def test_ae_is_retried_and_ar_is_a_dead_letter_with_the_ris_text(make_node, tmp_path):
    ris = Ris(answers=("AE", "AA", "AR"))
    try:
        node = hl7_node(make_node, ris.port)
        send_file(node, tmp_path, "zhanglab_03_pneumonia.dcm", AccessionNumber="AE1")
        assert wait_for(lambda: len(ris.received) == 2, timeout=120)
        send_file(node, tmp_path, "zhanglab_01_normal.dcm", AccessionNumber="AR1")
        assert wait_for(lambda: len(ris.received) == 3, timeout=120)

        def deliveries():
            return {
                r.accession_number: r.deliveries["hl7 ris"] for r in node.index.views.worklist()
            }

        assert wait_for(lambda: deliveries()["AR1"].startswith("dead"), timeout=30)
        assert deliveries()["AE1"] == "sent"
        assert "AR order unknown here" in deliveries()["AR1"]
        assert any("AR order unknown here" in d for d in node.status().dead_letters)
        ((message_id, *_),) = node.index.views.dead_hl7()
        assert "pending again" in node.index.admin.retry_hl7(message_id, "admin")
        assert wait_for(lambda: deliveries()["AR1"] == "sent", timeout=60)  # the RIS now says AA
        assert len(ris.received) == 4
    finally:
        ris.stop()


def test_a_late_image_sends_a_corrected_oru_naming_the_first(make_node, ris, tmp_path):
    node = hl7_node(make_node, ris.port)
    first = send_file(node, tmp_path, "zhanglab_01_normal.dcm", AccessionNumber="LATE1")
    assert wait_for(lambda: len(ris.received) == 1, timeout=120)
    send_file(
        node,
        tmp_path,
        "zhanglab_05_normal.dcm",
        AccessionNumber="LATE1",
        StudyInstanceUID=first.StudyInstanceUID,
    )
    assert wait_for(lambda: len(ris.received) == 2, timeout=120)
    original, corrected = ris.messages()
    assert str(obr(original)[25]) == "P" and str(obr(corrected)[25]) == "C"
    assert obx_values(corrected)["REPLACES_SR"] == obx_values(original)["SR_SOP_UID"]


def test_names_in_utf8_and_iso_2022_arrive_intact(make_node, ris, tmp_path):
    node = hl7_node(make_node, ris.port)
    send_file(
        node,
        tmp_path,
        "zhanglab_03_pneumonia.dcm",
        AccessionNumber="JP1",
        SpecificCharacterSet=["", "ISO 2022 IR 87"],
        PatientName="Yamada^Tarou=山田^太郎=やまだ^たろう",
    )
    send_file(
        node,
        tmp_path,
        "zhanglab_01_normal.dcm",
        AccessionNumber="DE1",
        SpecificCharacterSet="ISO_IR 192",
        PatientName="Müller^Zoë",
    )
    assert wait_for(lambda: len(ris.received) == 2, timeout=120)
    names = {str(obr(m)[3]): m.segment("PID")[5] for m in ris.messages()}
    japanese = [str(rep) for rep in names["JP1"]]
    assert japanese == ["Yamada^Tarou", "山田^太郎", "やまだ^たろう"]
    assert str(names["DE1"]) == "Müller^Zoë"


def test_omg_o19_carries_the_order_priority(make_node, ris, tmp_path):
    node = hl7_node(make_node, ris.port, message="OMG^O19")
    send_file(node, tmp_path, "zhanglab_03_pneumonia.dcm", AccessionNumber="OMG1")
    assert wait_for(lambda: len(ris.received) == 1, timeout=120)
    (message,) = ris.messages()
    parse_message(ris.received[0], find_groups=False)
    (row,) = node.index.views.worklist()
    priority = {"urgent": "S", "routine": "R"}[row.priority.value]
    assert str(message.segment("MSH")[9]) == "OMG^O19^OMG_O19"
    assert str(message.segment("ORC")[1]) == "XO" and str(message.segment("TQ1")[9]) == priority
    assert str(obr(message)[5]) == priority


def test_aging_cap_escalates_an_unread_routine_study_and_a_read_one_is_left(
    make_node, ris, tmp_path
):
    listen = free_port()
    node = hl7_node(
        make_node,
        ris.port,
        triage={"max_wait_routine_min": 0.15, "check_s": 0.2},  # 9 s: time for the read update
        hl7={"listen_port": listen},
    )
    send_file(node, tmp_path, "zhanglab_01_normal.dcm", AccessionNumber="UNREAD")
    send_file(node, tmp_path, "zhanglab_01_normal.dcm", AccessionNumber="READ", PatientID="OTHER")
    assert wait_for(lambda: len(ris.received) == 2, timeout=120)
    rows = {r.accession_number: r for r in node.index.views.worklist()}
    assert {r.priority.value for r in rows.values()} == {"routine"}, rows
    read = (
        "MSH|^~\\&|RIS|HOSP|DICOM_NODE|RADIOLOGY|20261126120000||ORM^O01|R1|P|2.5.1\r"
        "ORC|SC|READ|READ||CM\r"
    )
    ack = send("127.0.0.1", listen, read, 5, 5)
    assert "MSA|AA|R1" in ack
    assert wait_for(lambda: len(ris.received) == 3, timeout=30)  # one escalation only
    escalation = ris.messages()[2]
    assert str(obr(escalation)[3]) == "UNREAD" and str(obr(escalation)[5]) == "A"
    rows = {r.accession_number: r for r in node.index.views.worklist()}
    assert rows["UNREAD"].priority.value == "escalated" and rows["READ"].priority.value == "routine"
    assert [r.accession_number for r in node.index.views.worklist()][0] == "UNREAD"
    unknown = send("127.0.0.1", listen, read.replace("READ|READ", "NOPE|NOPE"), 5, 5)
    assert "MSA|AR|R1" in unknown


def test_hl7_preview_prints_the_message(make_node, ris, tmp_path, capsys):
    node = hl7_node(make_node, ris.port)
    send_file(node, tmp_path, "zhanglab_03_pneumonia.dcm", AccessionNumber="PREV1")
    assert wait_for(lambda: len(ris.received) == 1, timeout=120)
    capsys.readouterr()
    assert main(["hl7", "preview", "PREV1", "--config", str(node.config)]) == 0
    out = capsys.readouterr().out
    assert "# to ris (ORU^R01)" in out and "OBR|1|PREV1|PREV1|" in out
    assert main(["hl7", "preview", "NOSUCH", "--config", str(node.config)]) == 1
