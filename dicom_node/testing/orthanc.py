"""Orthanc as a real PACS: started with its own configuration on free ports, driven over REST."""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request
from pathlib import Path

from dicom_node.testing.peers import free_port, require_tool


class Orthanc:
    """`Orthanc(workdir, modalities)`; `options` are merged into its configuration."""

    def __init__(
        self,
        workdir: Path,
        modalities: dict[str, tuple[str, str, int]] | None = None,
        **options,
    ) -> None:
        self.dicom_port, self.http_port = free_port(), free_port()
        workdir.mkdir(parents=True, exist_ok=True)
        self.config = {
            "Name": "test-pacs",
            "StorageDirectory": str(workdir / "db"),
            "IndexDirectory": str(workdir / "db"),
            "DicomAet": "ORTHANC",
            "DicomPort": self.dicom_port,
            "HttpPort": self.http_port,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "DicomModalities": {k: list(v) for k, v in (modalities or {}).items()},
            "Plugins": [],
            **options,
        }
        config = workdir / "orthanc.json"
        config.write_text(json.dumps(self.config, indent=1))
        self.log_path = workdir / "orthanc.log"
        self._log = self.log_path.open("w")
        self.proc = subprocess.Popen(
            [require_tool("Orthanc"), str(config)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "TCP_NODELAY": "1"},  # dcmtk's network layer, as for every peer
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                self.get("/system")
                return
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"Orthanc exited: see {self.log_path}") from None
                time.sleep(0.2)
        self.stop()
        raise RuntimeError("Orthanc did not start")

    def _request(self, method: str, path: str, body: bytes | None = None):
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.http_port}{path}", data=body, method=method
        )
        with urllib.request.urlopen(req, timeout=120) as rsp:
            data = rsp.read()
        return json.loads(data) if rsp.headers.get_content_type() == "application/json" else data

    def get(self, path: str):
        return self._request("GET", path)

    def post(self, path: str, body) -> object:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        return self._request("POST", path, raw)

    def upload(self, path: Path) -> dict:
        return self.post("/instances", path.read_bytes())

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=60)
        self._log.close()

    def __enter__(self) -> Orthanc:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
