"""`dicom-node demo`: the whole path on the embedded default, with nothing else running.

Starts a receiving SCP standing in for the PACS, starts the node (SQLite in a temporary
folder, the shipped model) with that PACS as its destination, sends the shipped samples,
waits for scoring and delivery, and prints the worklist and where every result went.
"""

from __future__ import annotations

import dataclasses
import shutil
import socket
import tempfile
import time
from pathlib import Path

from pynetdicom import AE

from dicom_node.app.pacs import PACS_AE, ReceivingPacs
from dicom_node.app.roles import RunningNode
from dicom_node.config import Destination, Settings
from dicom_node.index.records import WorklistRow
from dicom_node.index.schema import StudyState
from dicom_node.samples import sample_files


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def send_samples(port: int, calling: str = "DEMO_MODALITY") -> int:
    import pydicom

    ae = AE(ae_title=calling)
    files = sample_files()
    datasets = [pydicom.dcmread(f) for f in files]
    for ds in datasets:
        ae.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
    assoc = ae.associate("127.0.0.1", port, ae_title="DICOM_NODE")
    if not assoc.is_established:
        raise RuntimeError("the node refused the demo association")
    sent = 0
    try:
        for f in files:
            status = assoc.send_c_store(f)
            sent += bool(status) and status.Status == 0
    finally:
        assoc.release()
    return sent


def run_demo(base: Settings, keep: bool = False, timeout_s: float = 300) -> int:
    """Run the demo in a temporary folder, removed at the end unless `keep`."""
    workdir = Path(tempfile.mkdtemp(prefix="dicom-node-demo-"))
    try:
        return _demo(base, workdir, timeout_s)
    finally:
        if keep:
            print(f"demo folder kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def _demo(base: Settings, workdir: Path, timeout_s: float) -> int:
    pacs = ReceivingPacs(workdir / "pacs")
    settings = dataclasses.replace(
        base,
        node=dataclasses.replace(
            base.node, host="127.0.0.1", port=_free_port(), accept_from=(), processes=1
        ),
        storage=dataclasses.replace(base.storage, data_dir=workdir / "node", database_url=None),
        studies=dataclasses.replace(base.studies, stable_after_s=2.0, completion=()),
        worker=dataclasses.replace(base.worker, enabled=True, poll_s=0.2),
        http=dataclasses.replace(base.http, enabled=False),  # a taken port 8080 must not matter
        destinations=(Destination("demo-pacs", PACS_AE, "127.0.0.1", pacs.port),),
    )
    print(f"demo folder: {workdir} (removed at the end; --keep keeps it)")
    node = RunningNode(settings)
    try:
        started = time.monotonic()
        print(
            f"sent {send_samples(settings.node.port)} of {len(sample_files())} sample images "
            f"to the node on port {settings.node.port}"
        )
        while time.monotonic() - started < timeout_s:
            if node.index.views.status().is_settled():
                break
            time.sleep(0.5)
        else:
            print(f"timed out after {timeout_s:.0f} s: {node.index.views.status()}")
            return 1
        elapsed = time.monotonic() - started
        print(
            f"\nall studies settled in {elapsed:.1f} s (including the "
            f"{settings.studies.stable_after_s:.0f} s quiet period)\n"
        )
        print_worklist(node.index.views.worklist())
        for study in node.index.views.studies():
            if study.state in (StudyState.SKIPPED, StudyState.NOT_SCORED):
                print(
                    f"{study.state.value}: study {study.study_uid} "
                    f"(accession {study.accession_number}): "
                    f"{study.reason.removeprefix('not scored: ')}"
                )
            elif study.state is StudyState.SCORED and "; " in study.reason:
                print(f"scored, accession {study.accession_number}: {study.reason}")
        print(f"\nreceived by {PACS_AE} (port {pacs.port}):")
        for study_uid, kind, path in sorted(pacs.received):
            print(f"  {kind:<32} study ...{study_uid[-12:]}  {path}")
        return 0
    finally:
        node.stop()
        pacs.stop()


def print_worklist(rows: list[WorklistRow]) -> None:
    print(
        f"{'priority':<9}{'score':>7}{'pctl':>6}  "
        f"{'accession':<12}{'patient':<26}{'date':<10}delivered to"
    )
    for r in rows:
        sent = ", ".join(f"{k}: {v}" for k, v in r.deliveries.items()) or "no destination"
        patient = f"{r.patient_name.replace('^', ' ')} ({r.patient_id})"
        print(
            f"{r.priority.value:<9}{r.score:>7.2f}{r.percentile:>6.0f}  "
            f"{r.accession_number:<12}{patient:<25.25} {r.study_date:<10}{sent}"
        )
