"""Several SCP processes behind one port: the first process alone listens; it accepts each
connection and hands it, round-robin, to itself or to one of its sibling processes over a
Unix socket pair (SCM_RIGHTS), before a byte is read.

Unlike SO_REUSEPORT, whose hash can give every connection to one process, the turns are even;
and no other program can bind the node's port beside it and take half its associations.
A sibling that has gone is dropped from the turns and its connections are served here.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time

from dicom_node.ingest.connections import NodeServer

log = logging.getLogger(__name__)

MAX_ADDRESS_BYTES = 256
HAND_OVER_S = 5.0  # a sibling that does not take a connection this long: served here
SIBLING_START_S = 120.0
READY = b"ready"


class HandedOver(OSError):
    """Raised by `get_request` after handing a connection over: socketserver treats an
    OSError there as "no request" and returns to its loop."""


def sibling_channels(count: int) -> list[tuple[socket.socket, socket.socket]]:
    """One (listener end, sibling end) Unix socket pair per sibling process."""
    pairs = [socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET) for _ in range(count)]
    for ours, _ in pairs:
        ours.settimeout(HAND_OVER_S)
    return pairs


class DispatchingServer(NodeServer):
    """The listening server: serves every n-th connection itself, hands the others over."""

    siblings: list[socket.socket]  # listener ends of the channels

    def __init__(self, *args, **kwargs) -> None:
        self.siblings = []
        self._turn = 0
        super().__init__(*args, **kwargs)

    def add_sibling_when_ready(self, channel: socket.socket) -> None:
        """Give `channel`'s process its turns once it says it is serving (a process takes a
        second or two to start; until then the connections are served here)."""
        threading.Thread(
            target=self._wait_for_ready, args=(channel,), name="scp-sibling", daemon=True
        ).start()

    def _wait_for_ready(self, channel: socket.socket) -> None:
        deadline = time.monotonic() + SIBLING_START_S
        while time.monotonic() < deadline:
            try:
                said = channel.recv(16)
            except TimeoutError:
                continue
            except OSError:
                said = b""
            if said == READY:
                self.siblings.append(channel)
                log.info("an SCP process is serving: %d take turns", len(self.siblings) + 1)
                return
            break
        log.error("an SCP process did not start: its connections are served here")

    def get_request(self):
        sock, address = self.socket.accept()
        self._turn = (self._turn + 1) % (len(self.siblings) + 1)
        if self._turn and self._hand_over(self.siblings[self._turn - 1], sock, address):
            raise HandedOver  # socketserver goes back to its loop: nothing to serve here
        return self.prepared(sock, address)

    def _hand_over(self, channel: socket.socket, sock: socket.socket, address) -> bool:
        try:
            socket.send_fds(channel, [json.dumps(list(address[:2])).encode()], [sock.fileno()])
        except TimeoutError:
            log.warning("an SCP process did not take a connection within %g s", HAND_OVER_S)
            return False
        except OSError as exc:
            log.error("an SCP process is gone (%s): its connections are served here", exc)
            self.siblings.remove(channel)
            return False
        sock.close()  # the sibling holds its own descriptor of the connection now
        return True


class HandedServer(NodeServer):
    """A sibling process's server: it never listens; it serves the connections the listening
    process hands it, read from its channel by `receive`."""

    def __init__(self, *args, channel: socket.socket, listening: tuple, **kwargs) -> None:
        self.channel = channel
        self.listening = listening
        super().__init__(*args, **kwargs)
        self.server_address = listening
        self._receiver = threading.Thread(target=self.receive, name="scp-handed", daemon=True)
        self.served = 0
        self.ended = threading.Event()  # the channel closed: nothing more will be handed over

    def server_bind(self) -> None:
        pass  # the listening process holds the port

    def server_activate(self) -> None:
        pass

    def serve_forever(self, poll_interval: float = 0.5) -> None:
        try:
            self.channel.sendall(READY)  # EPIPE: the listening process died while we started
            self._receiver.start()
            self._receiver.join()
        except OSError as exc:
            log.warning("the listening process cannot be reached: %s", exc)
        finally:
            self.ended.set()

    def receive(self) -> None:
        while True:
            try:
                data, fds, _flags, _ = socket.recv_fds(self.channel, MAX_ADDRESS_BYTES, 1)
            except OSError:
                return  # the channel was closed: stopping
            if not fds:
                return  # the listening process has gone
            sock = socket.socket(fileno=fds[0])
            try:
                host, port = json.loads(data)
                request, address = self.prepared(sock, (host, port))
            except (OSError, ValueError) as exc:
                log.warning("a handed connection could not be served: %s", exc)
                sock.close()
                continue
            if self.verify_request(request, address):
                self.served += 1
                self.process_request(request, address)
            else:
                self.shutdown_request(request)

    def shutdown(self) -> None:
        log.info("served %d connection(s) handed over by the listening process", self.served)
        if self.watch is not None:
            self.watch.stop()
        try:
            self.channel.shutdown(socket.SHUT_RDWR)  # wakes `receive`
        except OSError:
            pass
        self.channel.close()
        self.server_close()  # the TCP socket socketserver made, never bound
