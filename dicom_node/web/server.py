"""The web face in a background thread of the node's process (uvicorn, one worker)."""

from __future__ import annotations

import logging
import socket
import threading
import time

import uvicorn

from dicom_node.errors import DicomNodeError
from dicom_node.web.app import create_app
from dicom_node.web.pages import WebContext

log = logging.getLogger(__name__)


class WebServer:
    def __init__(self, ctx: WebContext, host: str, port: int) -> None:
        """Serve at host:port (port 0: any free one; `port` says which); DicomNodeError when
        the port is taken."""
        self.socket = socket.socket(
            socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM
        )
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self.socket.bind((host, port))
        except OSError as exc:
            self.socket.close()
            raise DicomNodeError(
                f"http: cannot listen on {host}:{port}: {exc.strerror or exc} "
                "(set http.port, or http.enabled: false)"
            ) from exc
        self.socket.listen(64)
        self.port = self.socket.getsockname()[1]
        config = uvicorn.Config(
            create_app(ctx), log_level="warning", access_log=False, lifespan="off"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.socket]}, name="http", daemon=True
        )
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started and self.thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.02)
        log.info("http: serving on http://%s:%d/", host, self.port)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.socket.close()
