"""The audit trail's own promises: one escaped JSON line per event, RFC 5424 syslog when
configured, and a failure to write that does not stop the node; the rotated log file."""

from __future__ import annotations

import json
import logging
import socket

from dicom_node.app.logs import log_to_file
from dicom_node.audit import AuditTrail
from dicom_node.config_file import load_settings


def test_lines_are_json_with_the_atna_event_and_control_characters_escaped(tmp_path):
    trail = AuditTrail(tmp_path / "audit.log")
    trail.record("association_rejected", "failure", peer_ae="EVIL\nFORGED LINE", peer_host="h")
    trail.record("login", user="admin", client="127.0.0.1")
    lines = (tmp_path / "audit.log").read_text().splitlines()
    assert len(lines) == 2  # the newline a peer sent did not make a line of its own
    first = json.loads(lines[0])
    assert first["peer_ae"] == "EVIL\nFORGED LINE" and first["atna_event_id"] == "110113"
    assert json.loads(lines[1])["atna_type"] == "110122 Login"


def test_syslog_gets_rfc_5424_messages(tmp_path):
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    receiver.settimeout(5)
    trail = AuditTrail(None, ("127.0.0.1", receiver.getsockname()[1]))
    trail.record("login_failed", "failure", user="x", client="10.0.0.1")
    message = receiver.recv(65536).decode()
    receiver.close()
    head, _, body = message.partition(" - ")
    assert head.startswith("<84>1 ")  # authpriv (10) * 8 + warning (4); version 1
    assert " dicom-node " in head and json.loads(body)["event"] == "login_failed"


def test_a_trail_that_cannot_be_written_is_logged_not_raised(tmp_path, caplog):
    (tmp_path / "audit.log").mkdir()  # a folder where the file should be
    with caplog.at_level(logging.ERROR):
        AuditTrail(tmp_path / "audit.log").record("login", user="admin", client="c")
    assert "audit trail not written" in caplog.text


def test_log_file_rotates(tmp_path):
    config = tmp_path / "node.yaml"
    config.write_text(
        f"storage: {{data_dir: {tmp_path / 'data'}}}\n"
        "logging: {file: logs/node.log, max_bytes: 2048, backups: 2}\n"
    )
    root = logging.getLogger()
    before = list(root.handlers)
    log_to_file(load_settings(config))
    try:
        for i in range(200):
            logging.getLogger("dicom_node.test").warning("line %d of the rotation test", i)
    finally:
        for handler in set(root.handlers) - set(before):
            root.removeHandler(handler)
            handler.close()
    files = sorted(p.name for p in (tmp_path / "data" / "logs").iterdir())
    assert files == ["node.log", "node.log.1", "node.log.2"]
    assert "line 199 of the rotation test" in (tmp_path / "data" / "logs" / "node.log").read_text()
