"""End-to-end benchmark: latency from the last image of a study received by the node to its SR
accepted by the PACS (the quiet period `stable_after_s` not counted), p50 and p95 over N
one-image studies sent in one burst, and studies per minute; once with a pynetdicom receiving
SCP as the PACS, once with Orthanc. Run on purpose (not in CI):

    .venv/bin/python benchmarks/end_to_end.py [--studies 50] [--stable-after 2]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import pydicom
from pydicom.uid import generate_uid
from pynetdicom import AE

from dicom_node.app.pacs import ReceivingPacs
from dicom_node.samples import SAMPLES_DIR
from dicom_node.testing.orthanc import Orthanc
from dicom_node.testing.peers import free_port, wait_for_echo

SR_CLASS = "1.2.840.10008.5.1.4.1.1.88.34"


class TimedPacs(ReceivingPacs):
    def __init__(self, folder: Path) -> None:
        self.sr_times: dict[str, float] = {}
        super().__init__(folder)

    def _store(self, event) -> int:
        status = super()._store(event)
        if event.request.AffectedSOPClassUID == SR_CLASS:
            self.sr_times[event.dataset.StudyInstanceUID] = time.monotonic()
        return status


@contextlib.contextmanager
def pynetdicom_pacs(work: Path):
    pacs = TimedPacs(work)
    try:
        yield "DEMO_PACS", pacs.port, lambda: dict(pacs.sr_times)
    finally:
        pacs.stop()


@contextlib.contextmanager
def orthanc_pacs(work: Path):
    seen: dict[str, float] = {}
    stop = threading.Event()

    def poll_changes() -> None:  # Orthanc's change log: when each SR instance was stored
        since = 0
        while not stop.is_set():
            with urllib.request.urlopen(
                f"http://127.0.0.1:{http}/changes?since={since}&limit=1000"
            ) as r:
                changes = json.loads(r.read())
            now = time.monotonic()
            for c in changes["Changes"]:
                if c["ChangeType"] == "NewInstance":
                    with urllib.request.urlopen(
                        f"http://127.0.0.1:{http}/instances/{c['ID']}/simplified-tags"
                    ) as r:
                        tags = json.loads(r.read())
                    if tags.get("SOPClassUID") == SR_CLASS:
                        seen.setdefault(tags["StudyInstanceUID"], now)
            since = changes["Last"]
            stop.wait(0.05)

    with Orthanc(work, DicomCheckCalledAet=False) as pacs:
        http = pacs.http_port
        thread = threading.Thread(target=poll_changes, daemon=True)
        thread.start()
        try:
            yield "ORTHANC", pacs.dicom_port, lambda: dict(seen)
        finally:
            stop.set()


def run(pacs_factory, studies: int, stable_after: float, root: Path) -> dict:
    work = Path(tempfile.mkdtemp(dir=root))
    with pacs_factory(work) as (aet, pacs_port, sr_times):
        node_port = free_port()
        config = work / "node.yaml"
        config.write_text(
            json.dumps(
                {
                    "node": {"host": "127.0.0.1", "port": node_port},
                    "storage": {"data_dir": str(work / "node")},
                    "studies": {"stable_after_s": stable_after},
                    "worker": {"poll_s": 0.1},
                    "destinations": [
                        {"name": "pacs", "ae_title": aet, "host": "127.0.0.1", "port": pacs_port}
                    ],
                }
            )
        )
        node = subprocess.Popen(
            [sys.executable, "-m", "dicom_node.app.cli", "serve", "--config", str(config)],
            stdout=(work / "node.log").open("w"),
            stderr=subprocess.STDOUT,
        )
        try:
            wait_for_echo(node_port, "DICOM_NODE", node)
            ds = pydicom.dcmread(SAMPLES_DIR / "zhanglab_04_pneumonia.dcm")
            ae = AE(ae_title="MODALITY")
            ae.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
            assoc = ae.associate("127.0.0.1", node_port, ae_title="DICOM_NODE")
            received: dict[str, float] = {}
            for _ in range(studies):
                ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
                ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
                assert assoc.send_c_store(ds).Status == 0
                received[ds.StudyInstanceUID] = time.monotonic()
            assoc.release()
            deadline = time.monotonic() + 600
            while len(sr_times()) < studies and time.monotonic() < deadline:
                time.sleep(0.2)
            done = sr_times()
        finally:
            node.terminate()
            node.wait(timeout=120)
    latencies = sorted(done[s] - received[s] - stable_after for s in received if s in done)
    span = max(done.values()) - min(received.values())
    return {
        "delivered": len(latencies),
        "p50_s": statistics.median(latencies),
        "p95_s": latencies[max(0, int(round(0.95 * len(latencies))) - 1)],
        "studies_per_min": 60 * len(latencies) / span,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=50)
    parser.add_argument("--stable-after", type=float, default=2.0)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="dicom-node-e2e-"))
    try:
        print(
            f"{args.studies} one-image studies (73 KB JPEG DX) in one burst; latency = SR at the "
            f"PACS - last image at the node - {args.stable_after:.0f} s quiet period"
        )
        print(f"{'PACS':<22}{'delivered':>10}{'p50 s':>8}{'p95 s':>8}{'studies/min':>13}")
        for name, factory in (("pynetdicom SCP", pynetdicom_pacs), ("Orthanc", orthanc_pacs)):
            r = run(factory, args.studies, args.stable_after, root)
            print(
                f"{name:<22}{r['delivered']:>10}{r['p50_s']:>8.2f}{r['p95_s']:>8.2f}"
                f"{r['studies_per_min']:>13.1f}",
                flush=True,
            )
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
