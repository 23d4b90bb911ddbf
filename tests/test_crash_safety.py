"""Signals to a real `dicom-node serve` process: SIGTERM stops it cleanly; kill -9 in the middle
of a transfer loses no instance the node answered Success for (each survives with its row and
digest), and the unfinished temporary files are cleaned at start-up."""

from __future__ import annotations

import hashlib
import signal
import subprocess
import time

import pytest

from dicom_node.samples import SAMPLES_DIR
from dicom_node.testing.peers import acknowledged_files, echoscu, storescu
from tests.dicom_fixtures import SMALL_SAMPLE, with_new_uids

pytestmark = pytest.mark.integration

N_INSTANCES = 200
KILL_AFTER = 60


def test_sigterm_stops_cleanly(make_node_process, tmp_path):
    node = make_node_process()
    assert storescu(node.port, with_new_uids(SMALL_SAMPLE, tmp_path / "x.dcm")).returncode == 0
    assert node.stop() == 0
    assert "stopped" in node.log_text()
    assert not list((node.data_dir / "spool" / ".incoming").iterdir())


def test_kill_9_loses_no_acknowledged_instance(make_node_process, tmp_path):
    source = SAMPLES_DIR / "zhanglab_04_pneumonia.dcm"
    files = [with_new_uids(source, tmp_path / f"i{i:03d}.dcm") for i in range(N_INSTANCES)]
    node = make_node_process()
    log = tmp_path / "storescu.log"
    with log.open("w") as out:
        sender = subprocess.Popen(
            [
                "storescu",
                "-v",
                "-xy",
                "-aec",
                "DICOM_NODE",
                "127.0.0.1",
                str(node.port),
                *map(str, files),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={"TCP_NODELAY": "1"},
        )
        deadline = time.monotonic() + 120
        while log.read_text().count("(Success)") < KILL_AFTER and time.monotonic() < deadline:
            time.sleep(0.01)
        node.stop(signal.SIGKILL)
        sender.wait(timeout=60)
    acked = acknowledged_files(log.read_text())
    assert KILL_AFTER <= len(acked) < N_INSTANCES, "the kill did not land part way"

    incoming = node.data_dir / "spool" / ".incoming"
    (incoming / "interrupted.part").write_bytes(b"half a file")
    leftovers = len(list(incoming.glob("*.part")))
    node.start()
    assert not list(incoming.glob("*.part"))
    assert f"removed {leftovers} unfinished temporary file" in node.log_text()

    import pydicom

    rows = {r.sop_instance_uid: r for r in node.index.views.instances()}
    for path in acked:
        uid = pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID
        assert uid in rows, f"acknowledged {path} lost"
    for row in rows.values():
        stored = node.data_dir / "spool" / row.file
        assert hashlib.sha256(stored.read_bytes()).hexdigest() == row.sha256

    # The PACS resends everything: the acknowledged ones are duplicates, the rest arrive once.
    assert storescu(node.port, *files, option="-xy").returncode == 0
    assert node.status().instances == N_INSTANCES


def test_a_peer_cannot_forge_log_lines_or_fill_the_log_with_tracebacks(make_node_process):
    import socket

    from tests.scu import associate_rq_bytes

    node = make_node_process(node={"acse_timeout_s": 1})
    request = bytearray(associate_rq_bytes(node.port, calling="EVILAAAAAAAAAAAA"))
    at = request.index(b"EVILAAAAAAAAAAAA")
    request[at : at + 16] = b"EV\nFORGED LINE\x07A"  # a newline and a bell in the AE title
    with socket.create_connection(("127.0.0.1", node.port)) as sock:
        sock.sendall(bytes(request))
        sock.settimeout(10)
        assert sock.recv(1) == b"\x07"  # A-ABORT: the request cannot be decoded
    assert echoscu(node.port).returncode == 0
    log = node.log_text()
    assert "Traceback" not in log
    assert not any(line.startswith("FORGED LINE") for line in log.splitlines())
    assert "EV\\nFORGED LINE\\x07A" in log  # said once, escaped
