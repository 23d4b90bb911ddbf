"""End-to-end benchmark: time from "the study is complete" to its SR stored at Orthanc.

(a) One study at a time on an idle node: a one-image study (73 KB JPEG DX) sent by a pynetdicom
    SCU, then either its MPPS (N-CREATE, N-SET COMPLETED listing the image; latency from the
    N-SET response) or nothing (the shipped CR/DX rule, 5 s quiet; latency from the C-STORE
    response, with and without the quiet period). p50 and p95.
(b) A burst of one-image studies, each with its MPPS COMPLETED: studies/min from the first
    image to the last SR, and p50/p95 latency, with 1 and 2 worker processes (the `serve`
    process's own worker, plus a `dicom-node worker` process for 2).

Run on purpose (not in CI):

    .venv/bin/python benchmarks/end_to_end.py [--sequential 20] [--burst 200]
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

from dicom_node.samples import SAMPLES_DIR
from dicom_node.testing.orthanc import Orthanc
from dicom_node.testing.peers import free_port, wait_for_echo

SR_CLASS = "1.2.840.10008.5.1.4.1.1.88.34"
MPPS_CLASS = "1.2.840.10008.3.1.2.3.3"
SAMPLE = SAMPLES_DIR / "zhanglab_04_pneumonia.dcm"


class SrWatch:
    """When each study's SR was stored at Orthanc, from Orthanc's change log (polled 20/s)."""

    def __init__(self, http_port: int) -> None:
        self.base = f"http://127.0.0.1:{http_port}"
        self.seen: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _get(self, path: str):
        with urllib.request.urlopen(self.base + path) as r:
            return json.loads(r.read())

    def _poll(self) -> None:
        since = 0
        while not self._stop.is_set():
            changes = self._get(f"/changes?since={since}&limit=1000")
            now = time.monotonic()
            for c in changes["Changes"]:
                if c["ChangeType"] == "NewInstance":
                    tags = self._get(f"/instances/{c['ID']}/simplified-tags")
                    if tags.get("SOPClassUID") == SR_CLASS:
                        self.seen.setdefault(tags["StudyInstanceUID"], now)
            since = changes["Last"]
            self._stop.wait(0.05)

    def wait(self, studies: set[str], timeout: float) -> dict[str, float]:
        deadline = time.monotonic() + timeout
        while not studies <= set(self.seen) and time.monotonic() < deadline:
            time.sleep(0.05)
        return {s: self.seen[s] for s in studies if s in self.seen}

    def stop(self) -> None:
        self._stop.set()


@contextlib.contextmanager
def node_with_orthanc(work: Path, workers: int):
    with Orthanc(work / "orthanc", DicomCheckCalledAet=False) as pacs:
        port = free_port()
        config = work / "node.yaml"
        config.write_text(
            json.dumps(
                {
                    "node": {"host": "127.0.0.1", "port": port},
                    "storage": {"data_dir": str(work / "node")},
                    "studies": {"stable_after_s": 300},  # the shipped CR/DX rule: 5 s quiet
                    "worker": {"poll_s": 0.1},
                    "destinations": [
                        {
                            "name": "pacs",
                            "ae_title": "ORTHANC",
                            "host": "127.0.0.1",
                            "port": pacs.dicom_port,
                        }
                    ],
                }
            )
        )
        cli = [sys.executable, "-m", "dicom_node.app.cli"]
        log = (work / "node.log").open("w")
        procs = [
            subprocess.Popen(
                [*cli, "serve", "--config", str(config)], stdout=log, stderr=subprocess.STDOUT
            )
        ]
        try:
            wait_for_echo(port, "DICOM_NODE", procs[0])
            procs += [
                subprocess.Popen(
                    [*cli, "worker", "--config", str(config)], stdout=log, stderr=subprocess.STDOUT
                )
                for _ in range(workers - 1)
            ]
            watch = SrWatch(pacs.http_port)
            try:
                yield port, watch
            finally:
                watch.stop()
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                p.wait(timeout=120)


class Modality:
    """A pynetdicom SCU sending one-image studies and, optionally, their MPPS."""

    def __init__(self, port: int) -> None:
        self.ds = pydicom.dcmread(SAMPLE)
        ae = AE(ae_title="MODALITY")
        ae.add_requested_context(self.ds.SOPClassUID, self.ds.file_meta.TransferSyntaxUID)
        ae.add_requested_context(MPPS_CLASS)
        self.assoc = ae.associate("127.0.0.1", port, ae_title="DICOM_NODE")
        assert self.assoc.is_established

    def study(self, mpps: bool) -> tuple[str, float]:
        """Send one study; returns its UID and when it was complete as far as the sender
        knows (the N-SET response, or the C-STORE response without MPPS)."""
        ds = self.ds
        ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        if mpps:
            step = generate_uid()
            created = pydicom.Dataset()
            created.PerformedProcedureStepStatus = "IN PROGRESS"
            scheduled = pydicom.Dataset()
            scheduled.StudyInstanceUID = ds.StudyInstanceUID
            created.ScheduledStepAttributesSequence = [scheduled]
            assert self.assoc.send_n_create(created, MPPS_CLASS, step)[0].Status == 0
        assert self.assoc.send_c_store(ds).Status == 0
        done = time.monotonic()
        if mpps:
            ref = pydicom.Dataset()
            ref.ReferencedSOPClassUID, ref.ReferencedSOPInstanceUID = (
                ds.SOPClassUID,
                ds.SOPInstanceUID,
            )
            series = pydicom.Dataset()
            series.SeriesInstanceUID = ds.SeriesInstanceUID
            series.ReferencedImageSequence = [ref]
            completed = pydicom.Dataset()
            completed.PerformedProcedureStepStatus = "COMPLETED"
            completed.PerformedSeriesSequence = [series]
            assert self.assoc.send_n_set(completed, MPPS_CLASS, step)[0].Status == 0
            done = time.monotonic()
        return ds.StudyInstanceUID, done

    def close(self) -> None:
        self.assoc.release()


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, round(0.95 * len(ordered)) - 1)]


def sequential(root: Path, n: int, mpps: bool) -> list[float]:
    work = Path(tempfile.mkdtemp(dir=root))
    with node_with_orthanc(work, 1) as (port, watch):
        modality = Modality(port)
        latencies = []
        for _ in range(n):
            study, done = modality.study(mpps)
            got = watch.wait({study}, timeout=120)
            if study in got:
                latencies.append(got[study] - done)
        modality.close()
    return latencies


def burst(root: Path, n: int, workers: int) -> tuple[list[float], float]:
    work = Path(tempfile.mkdtemp(dir=root))
    with node_with_orthanc(work, workers) as (port, watch):
        time.sleep(3)  # the worker processes load their model
        modality = Modality(port)
        start = time.monotonic()
        done = dict(modality.study(mpps=True) for _ in range(n))
        modality.close()
        got = watch.wait(set(done), timeout=1800)
    latencies = [got[s] - done[s] for s in got]
    span = max(got.values()) - start if got else float("nan")
    return latencies, 60 * len(got) / span


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sequential", type=int, default=20)
    parser.add_argument("--burst", type=int, default=200)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="dicom-node-e2e-"))
    try:
        print(f"(a) {args.sequential} one-image studies (73 KB JPEG DX), one at a time, idle node")
        print(f"{'completion':<34}{'delivered':>10}{'p50 s':>8}{'p95 s':>8}")
        lat = sequential(root, args.sequential, mpps=True)
        print(
            f"{'MPPS COMPLETED -> SR at Orthanc':<34}{len(lat):>10}"
            f"{statistics.median(lat):>8.2f}{p95(lat):>8.2f}",
            flush=True,
        )
        lat = sequential(root, args.sequential, mpps=False)
        after = [x - 5 for x in lat]
        print(
            f"{'last image -> SR (5 s quiet)':<34}{len(lat):>10}"
            f"{statistics.median(lat):>8.2f}{p95(lat):>8.2f}"
        )
        print(
            f"{'  the same, after the quiet period':<34}{len(lat):>10}"
            f"{statistics.median(after):>8.2f}{p95(after):>8.2f}",
            flush=True,
        )
        print(f"\n(b) burst of {args.burst} one-image studies with MPPS COMPLETED")
        print(f"{'workers':<10}{'delivered':>10}{'studies/min':>13}{'p50 s':>8}{'p95 s':>8}")
        for workers in (1, 2):
            lat, rate = burst(root, args.burst, workers)
            print(
                f"{workers:<10}{len(lat):>10}{rate:>13.1f}"
                f"{statistics.median(lat):>8.2f}{p95(lat):>8.2f}",
                flush=True,
            )
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
