"""Slow peers through real sockets: a peer that trickles its A-ASSOCIATE-RQ or a P-DATA PDU
one byte at a time is disconnected within the configured deadline, while a well-behaved peer
keeps being served."""

from __future__ import annotations

import socket
import struct
import threading
import time

import pytest

from dicom_node.testing.peers import echoscu
from tests.scu import associate_rq_bytes

pytestmark = pytest.mark.integration

DEADLINES = {"acse_timeout_s": 1.5, "network_timeout_s": 2.0}


def trickle(sock: socket.socket, data: bytes, every: float, closed: threading.Event) -> None:
    for byte in data:
        try:
            sock.send(bytes([byte]))
        except OSError:
            closed.set()
            return
        time.sleep(every)


def seconds_until_closed(sock: socket.socket, data: bytes, timeout: float = 20) -> float:
    """Trickle `data` a byte every 0.3 s; the seconds until the node closes the connection."""
    closed = threading.Event()
    start = time.monotonic()
    sender = threading.Thread(target=trickle, args=(sock, data, 0.3, closed), daemon=True)
    sender.start()
    sock.settimeout(timeout)
    try:
        while sock.recv(4096):
            pass
    except TimeoutError:
        return float("inf")
    except OSError:
        pass  # reset: closed too
    return time.monotonic() - start


def test_a_trickled_association_request_is_closed_by_its_deadline(make_node):
    node = make_node(node=DEADLINES)
    sock = socket.create_connection(("127.0.0.1", node.port))
    result: list[float] = []
    watcher = threading.Thread(
        target=lambda: result.append(seconds_until_closed(sock, associate_rq_bytes(node.port)))
    )
    watcher.start()
    time.sleep(0.5)
    assert echoscu(node.port).returncode == 0  # others are served meanwhile
    watcher.join()
    sock.close()
    assert result[0] < 4, result
    assert "no whole A-ASSOCIATE-RQ within 1.5 s" in node.log_text()


def test_a_trickled_pdata_pdu_is_closed_by_its_deadline(make_node):
    node = make_node(node=DEADLINES)
    sock = socket.create_connection(("127.0.0.1", node.port))
    sock.sendall(associate_rq_bytes(node.port))
    accepted = sock.recv(6)
    assert accepted[0] == 0x02  # A-ASSOCIATE-AC
    pdata = struct.pack(">BBI", 0x04, 0, 1000) + b"\x00" * 1000  # P-DATA-TF, 1000 bytes
    seconds = seconds_until_closed(sock, pdata)
    sock.close()
    assert seconds < 4, seconds
    assert "no whole PDU within 2 s of the last" in node.log_text()
    assert echoscu(node.port).returncode == 0


def test_a_pdu_declaring_more_than_the_node_offered_is_closed_at_once(make_node):
    """A P-DATA-TF header declaring 2 GB: nothing is read or allocated for it, the connection
    is closed at once (not after the PDU deadline), and others are served."""
    node = make_node()  # default deadlines: 60 s per PDU
    sock = socket.create_connection(("127.0.0.1", node.port))
    sock.sendall(associate_rq_bytes(node.port))
    assert sock.recv(6)[0] == 0x02  # A-ASSOCIATE-AC
    sock.recv(65536)  # the rest of it
    start = time.monotonic()
    sock.sendall(struct.pack(">BBI", 0x04, 0, 0x7FFFFFFF) + b"\x00" * 100)
    sock.settimeout(10)
    try:
        while sock.recv(4096):
            pass
    except OSError:
        pass  # reset: closed too
    sock.close()
    assert time.monotonic() - start < 2
    assert "a PDU declares 2147483647 bytes, more than the" in node.log_text()
    assert echoscu(node.port).returncode == 0
