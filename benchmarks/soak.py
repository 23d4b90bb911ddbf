"""Soak test (run on purpose, not in CI): parallel storescu associations send a mix of
one- and two-image studies and some bad inputs to a `dicom-node serve` process with scoring
on; the stand-in PACS goes down for a while in the middle. Checks that nothing acknowledged is
lost, that each scored study's current result set reached the PACS and how many objects came
twice (only the crash window the README describes can do that), and samples the node's
resident memory. Prints a table for the README:

    .venv/bin/python benchmarks/soak.py [--associations 10] [--images 500] [--outage 60]
        [--database-url postgresql+psycopg://postgres@127.0.0.1:5432/postgres]
"""

from __future__ import annotations

import argparse
import collections
import json
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pydicom
from pydicom.uid import generate_uid

from dicom_node.app.pacs import ReceivingPacs
from dicom_node.index import Index
from dicom_node.results.report import result_uid
from dicom_node.samples import SAMPLES_DIR
from dicom_node.testing.peers import acknowledged_files, free_port, require_tool, wait_for_echo

CHEST = ["zhanglab_01_normal.dcm", "zhanglab_03_pneumonia.dcm", "zhanglab_04_pneumonia.dcm"]
OPTION = {"zhanglab_04_pneumonia.dcm": "-xy"}


def make_files(folder: Path, n: int, rng: random.Random) -> list[tuple[Path, str, bool]]:
    """(file, storescu option, good): studies of one or two images, about 5% bad inputs."""
    folder.mkdir(parents=True)
    files: list[tuple[Path, str, bool]] = []
    while len(files) < n:
        study = generate_uid()
        name = rng.choice(CHEST)  # one sample per study: its images go in one association
        for _ in range(rng.choice((1, 1, 2))):
            ds = pydicom.dcmread(SAMPLES_DIR / name)
            ds.StudyInstanceUID, ds.SeriesInstanceUID = study, generate_uid()
            ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
            good = rng.random() > 0.05
            if not good:  # a bad input the node must refuse: a missing Series UID
                del ds.SeriesInstanceUID
            path = folder / f"{len(files):05d}.dcm"
            ds.save_as(path, enforce_file_format=True)
            files.append((path, OPTION.get(name, "-xe"), good))
    return files[:n]


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--associations", type=int, default=10)
    parser.add_argument("--images", type=int, default=500, help="per association")
    parser.add_argument("--outage", type=float, default=60, help="seconds the PACS is down")
    parser.add_argument("--database-url", default=None, help="default: SQLite")
    args = parser.parse_args()
    require_tool("storescu")
    rng = random.Random(0)
    root = Path(tempfile.mkdtemp(prefix="dicom-node-soak-"))
    pacs_port, node_port = free_port(), free_port()
    pacs = ReceivingPacs(root / "pacs", port=pacs_port)
    config = root / "node.yaml"
    config.write_text(
        json.dumps(
            {
                "node": {
                    "host": "127.0.0.1",
                    "port": node_port,
                    "max_associations": 32,
                    "max_associations_per_host": 32,
                },
                "storage": {"data_dir": str(root / "node"), "database_url": args.database_url},
                "studies": {"stable_after_s": 2, "completion": []},
                "worker": {
                    "poll_s": 0.2,
                    "export": {"max_attempts": 1000, "backoff_s": 2, "max_backoff_s": 10},
                },
                "destinations": [
                    {
                        "name": "pacs",
                        "ae_title": "DEMO_PACS",
                        "host": "127.0.0.1",
                        "port": pacs_port,
                    }
                ],
            }
        )
    )
    node = subprocess.Popen(
        [sys.executable, "-m", "dicom_node.app.cli", "serve", "--config", str(config)],
        stdout=(root / "node.log").open("w"),
        stderr=subprocess.STDOUT,
    )
    samples: list[tuple[float, float]] = []
    stop = threading.Event()

    def sample_rss() -> None:
        start = time.monotonic()
        while not stop.wait(1.0) and node.poll() is None:
            samples.append((time.monotonic() - start, rss_mib(node.pid)))

    try:
        wait_for_echo(node_port, "DICOM_NODE", node)
        threading.Thread(target=sample_rss, daemon=True).start()
        batches = [make_files(root / f"a{i}", args.images, rng) for i in range(args.associations)]
        good = {str(p): ok for batch in batches for p, _, ok in batch}
        started = time.monotonic()
        senders = []
        for i, batch in enumerate(batches):
            by_option = collections.defaultdict(list)
            for path, option, _ in batch:
                by_option[option].append(str(path))
            for option, paths in by_option.items():
                log = (root / f"storescu{i}{option}.log").open("w")
                senders.append(
                    (
                        subprocess.Popen(
                            [
                                "storescu",
                                "-v",
                                "-nh",  # go on after a refused (bad) input
                                option,
                                "-aec",
                                "DICOM_NODE",
                                "127.0.0.1",
                                str(node_port),
                                *paths,
                            ],
                            stdout=log,
                            stderr=subprocess.STDOUT,
                            env={"TCP_NODELAY": "1", "PATH": "/usr/bin:/bin"},
                        ),
                        log.name,
                    )
                )
        time.sleep(5)
        pacs.stop()
        print(f"PACS down for {args.outage:.0f} s", file=sys.stderr, flush=True)
        time.sleep(args.outage)
        pacs = ReceivingPacs(root / "pacs-after", port=pacs_port)
        acked = []
        for proc, log in senders:
            proc.wait()
            acked += acknowledged_files(Path(log).read_text())
        sent_s = time.monotonic() - started
        url = args.database_url or f"sqlite:///{root / 'node' / 'index.sqlite3'}"
        index = Index(url, upgrade=False)
        deadline = time.monotonic() + 3600
        while not index.views.status().is_settled() and time.monotonic() < deadline:
            time.sleep(2)
        total_s = time.monotonic() - started
        status = index.views.status()
        kept = {r.sop_instance_uid for r in index.views.instances()}
        lost = [
            a
            for a in acked
            if pydicom.dcmread(a, stop_before_pixels=True).SOPInstanceUID not in kept
        ]
        refused_good = [a for a in good if good[a] and a not in set(acked)]
        acked_bad = [a for a in acked if not good[a]]
        scored = {r.study_uid: r.version for r in index.views.worklist()}
        index.close()
    finally:
        stop.set()
        node.terminate()
        node.wait(timeout=120)
    pacs.stop()
    received = collections.Counter()  # SOP Instance UIDs of SRs, before and after the outage
    for path in [*(root / "pacs").glob("*.dcm"), *(root / "pacs-after").glob("*.dcm")]:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        if ds.SOPClassUID.name.endswith("SR Storage"):
            received[ds.SOPInstanceUID] += 1
    current = {result_uid(uid, version, "sr") for uid, version in scored.items()}
    delivered = sum(1 for uid in current if received[uid] >= 1)
    duplicates = sum(1 for n in received.values() if n > 1)
    rss = [r for _, r in samples]
    tenth = max(1, len(rss) // 10)
    print(
        f"\n| soak ({args.associations} associations x {args.images} images, "
        f"{'PostgreSQL' if args.database_url else 'SQLite'}, PACS down {args.outage:.0f} s) | |"
    )
    print("|---|---|")
    print(f"| images sent / acknowledged | {len(good)} / {len(acked)} |")
    print(
        f"| good inputs refused / bad inputs acknowledged | {len(refused_good)} / "
        f"{len(acked_bad)} |"
    )
    print(f"| acknowledged but lost | {len(lost)} |")
    print(f"| studies scored / their current SR at the PACS | {len(scored)} / {delivered} |")
    print(f"| SRs received more than once | {duplicates} |")
    print(f"| dead letters | {len(status.dead_letters)} |")
    print(f"| sending took / all delivered after | {sent_s:.0f} s / {total_s:.0f} s |")
    print(
        f"| node RSS first 10% / last 10% / max | {sum(rss[:tenth]) / tenth:.0f} / "
        f"{sum(rss[-tenth:]) / tenth:.0f} / {max(rss):.0f} MiB |"
    )
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
