"""Ingest benchmark: dcmtk storescu sending 300 copies (distinct SOP Instance UIDs) of a 1.8 MB
uncompressed DX and of a 73 KB JPEG baseline DX to the node, to Orthanc and to dcmtk storescp
(each with the same favourable settings, printed first: see SETTINGS),
on one association and on 4 parallel associations, interleaved; prints images/s, MB/s and the
node's ratio to each peer. Run on purpose (not in CI):

    .venv/bin/python benchmarks/ingest.py [--copies 300] [--rounds 2] [--processes 1 2]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pydicom
from pydicom.uid import generate_uid

from dicom_node.samples import SAMPLES_DIR
from dicom_node.testing.orthanc import Orthanc
from dicom_node.testing.peers import free_port, wait_for_echo

FILES = {
    "1.8MB DX": ("zhanglab_01_normal.dcm", "-xe"),
    "73KB JPEG": ("zhanglab_04_pneumonia.dcm", "-xy"),
}


@contextlib.contextmanager
def node(workdir: Path, processes: int):
    port = free_port()
    config = workdir / "node.yaml"
    config.write_text(
        json.dumps(
            {
                "node": {
                    "ae_title": "DICOM_NODE",
                    "host": "127.0.0.1",
                    "port": port,
                    "processes": processes,
                },
                "storage": {"data_dir": str(workdir / "data")},
                "studies": {"stable_after_s": 3600},
            }
        )
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "dicom_node.app.cli", "serve", "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_echo(port, "DICOM_NODE", proc)
        yield "DICOM_NODE", port
    finally:
        proc.terminate()
        proc.wait(timeout=120)


# Every receiver gets the same favourable settings; the output prints them.
MAX_PDU = 131072  # dcmtk's largest; storescu sends PDUs no larger, whatever the node offers
SETTINGS = (
    f"all receivers: TCP_NODELAY=1, max PDU {MAX_PDU} (the node offers 4 MiB, storescu sends "
    f"at most {MAX_PDU}); fsync before Success: node yes, Orthanc yes (SyncStorageArea), "
    "storescp no (dcmtk has no such option); index: node SQLite (WAL, synchronous=FULL), "
    "Orthanc SQLite, storescp none"
)


@contextlib.contextmanager
def orthanc(workdir: Path):
    with Orthanc(
        workdir, DicomCheckCalledAet=False, SyncStorageArea=True, MaximumPduLength=MAX_PDU
    ) as pacs:
        yield "ORTHANC", pacs.dicom_port


@contextlib.contextmanager
def storescp(workdir: Path):
    port = free_port()
    out = workdir / "storescp"
    out.mkdir()
    proc = subprocess.Popen(
        [
            "storescp",
            "-aet",
            "STORESCP",
            "+xa",
            "--max-pdu",
            str(MAX_PDU),
            "-od",
            str(out),
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "TCP_NODELAY": "1"},
    )
    try:
        wait_for_echo(port, "STORESCP", proc)
        yield "STORESCP", port
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def make_copies(name: str, n: int, folder: Path) -> list[Path]:
    folder.mkdir(parents=True)
    ds = pydicom.dcmread(SAMPLES_DIR / name)
    paths = []
    for i in range(n):
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        path = folder / f"{i:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def send(aet: str, port: int, files: list[Path], option: str, associations: int) -> float:
    chunks = [files[i::associations] for i in range(associations)]
    env = {**os.environ, "TCP_NODELAY": "1"}
    start = time.perf_counter()
    procs = [
        subprocess.Popen(
            ["storescu", option, "-aec", aet, "127.0.0.1", str(port), *map(str, c)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env,
        )
        for c in chunks
    ]
    for p in procs:
        _, err = p.communicate()
        if p.returncode != 0:
            raise RuntimeError(f"storescu to {aet} failed: {err.decode()[-500:]}")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--processes",
        type=int,
        nargs="+",
        default=[1, 2],
        help="node.processes settings to measure",
    )
    args = parser.parse_args()
    for tool in ("storescu", "storescp", "echoscu", "Orthanc"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} not found: apt-get install dcmtk orthanc")
    print(f"settings: {SETTINGS}")
    root = Path(tempfile.mkdtemp(prefix="dicom-node-bench-"))
    targets = {f"node (processes={n})": (lambda w, n=n: node(w, n)) for n in args.processes}
    targets.update({"orthanc": orthanc, "storescp": storescp})
    results: dict[tuple[str, str, int], list[float]] = {}
    try:
        for label, (name, option) in FILES.items():
            files = make_copies(name, args.copies, root / label.replace(" ", "_"))
            megabytes = sum(p.stat().st_size for p in files) / 1e6
            for rnd in range(args.rounds):
                for assocs in (1, 4):
                    for target, start in targets.items():
                        work = Path(tempfile.mkdtemp(dir=root))
                        with start(work) as (aet, port):
                            seconds = send(aet, port, files, option, assocs)
                        shutil.rmtree(work, ignore_errors=True)
                        results.setdefault((label, target, assocs), []).append(seconds)
                        print(
                            f"  round {rnd + 1} {label:<10} {assocs} assoc {target:<20}"
                            f" {args.copies / seconds:7.1f} images/s",
                            file=sys.stderr,
                            flush=True,
                        )
            print(
                f"\n{label}: {args.copies} images, {megabytes:.1f} MB, "
                f"median of {args.rounds} rounds"
            )
            print(
                f"{'target':<22}{'assoc':>6}{'images/s':>10}{'MB/s':>8}{'/orthanc':>10}{'/storescp':>10}"
            )
            for assocs in (1, 4):
                med = {t: statistics.median(results[(label, t, assocs)]) for t in targets}
                for t in targets:
                    rate = args.copies / med[t]
                    print(
                        f"{t:<22}{assocs:>6}{rate:>10.1f}{megabytes / med[t]:>8.1f}"
                        f"{med['orthanc'] / med[t]:>9.2f}x{med['storescp'] / med[t]:>9.2f}x"
                    )
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
