"""Ingest benchmark: dcmtk storescu sending 300 copies (distinct SOP Instance UIDs) of a 1.8 MB
uncompressed DX and of a 73 KB JPEG baseline DX to the node, to Orthanc and to dcmtk storescp
(each with the same favourable settings, printed first: see SETTINGS), and to a pynetdicom SCP
that stores nothing (the node's own network layer answering Success at once: the ceiling of
any pynetdicom-based receiver), on one association and on 4 parallel associations,
interleaved; prints images/s, MB/s, the receiver's CPU seconds per image (all its threads and
processes) and the node's ratio to each peer. Run on purpose (not in CI):

    .venv/bin/python benchmarks/ingest.py [--copies 300] [--rounds 2] [--processes 1 2]
        [--postgres postgresql+psycopg://postgres@127.0.0.1:5432/postgres]
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
def fresh_database(server_url: str | None):
    """A new, empty PostgreSQL database on `server_url` for one run (None: SQLite)."""
    if server_url is None:
        yield None
        return
    import sqlalchemy as sa

    name = f"dicom_node_bench_{os.getpid()}"
    admin = sa.create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}")
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    try:
        yield sa.engine.make_url(server_url).set(database=name).render_as_string(False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.dispose()


@contextlib.contextmanager
def node(workdir: Path, processes: int, server_url: str | None = None):
    port = free_port()
    config = workdir / "node.yaml"
    with fresh_database(server_url) as database_url:
        config.write_text(
            json.dumps(
                {
                    "node": {
                        "ae_title": "DICOM_NODE",
                        "host": "127.0.0.1",
                        "port": port,
                        "processes": processes,
                    },
                    "storage": {"data_dir": str(workdir / "data"), "database_url": database_url},
                    "studies": {"stable_after_s": 3600, "completion": []},
                    "worker": {"enabled": False},  # ingest only: no model, no worker loops
                }
            )
        )
        cli = [sys.executable, "-m", "dicom_node.app.cli", "serve", "--config", str(config)]
        log = workdir / "node.log"
        with receiver(cli, "DICOM_NODE", port, log=log) as served:
            ready = f"an SCP process is serving: {processes} take turns"
            deadline = time.monotonic() + 60
            while processes > 1 and ready not in log.read_text():  # every process serving
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the node's SCP processes did not start: {log}")
                time.sleep(0.1)
            yield served


@contextlib.contextmanager
def receiver(
    argv: list[str], aet: str, port: int, env: dict | None = None, log: Path | None = None
):
    """A receiving process, once it answers C-ECHO: its AE title, port and pid."""
    out = log.open("w") if log else subprocess.DEVNULL
    proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env or os.environ)
    try:
        wait_for_echo(port, aet, proc)
        yield aet, port, proc.pid
    finally:
        proc.terminate()
        proc.wait(timeout=120)


# Every receiver gets the same favourable settings; the output prints them.
MAX_PDU = 131072  # dcmtk's largest; storescu sends PDUs no larger, whatever the node offers
SETTINGS = (
    f"all receivers: TCP_NODELAY=1, max PDU {MAX_PDU} (the node offers 4 MiB, storescu sends "
    f"at most {MAX_PDU}); syncs before Success: node 3 per image (fsync of the file, of its "
    "directory entry, and of the index: SQLite WAL synchronous=FULL, or the PostgreSQL "
    "server's commit with synchronous_commit=on), the node's worker disabled (ingest only), "
    "Orthanc SyncStorageArea=true "
    "(strace: one fdatasync per image, its SQLite index not synced), storescp none (dcmtk has "
    "no such option), null SCP none (stores nothing)"
)


@contextlib.contextmanager
def orthanc(workdir: Path):
    with Orthanc(
        workdir, DicomCheckCalledAet=False, SyncStorageArea=True, MaximumPduLength=MAX_PDU
    ) as pacs:
        yield "ORTHANC", pacs.dicom_port, pacs.proc.pid


@contextlib.contextmanager
def pynetdicom_null(workdir: Path):
    port = free_port()
    with receiver([sys.executable, __file__, "--null-scp", str(port)], "NULL_SCP", port) as r:
        yield r


def serve_null_scp(port: int) -> None:
    """The node's network layer (NodeServer, the same PDU size and contexts) answering every
    C-STORE with Success without looking at it."""
    from pynetdicom import AE, evt
    from pynetdicom.presentation import AllStoragePresentationContexts
    from pynetdicom.sop_class import Verification

    from dicom_node.dicom.terms import ACCEPTED_TRANSFER_SYNTAXES
    from dicom_node.ingest.connections import NodeServer
    from dicom_node.ingest.scp import MAX_PDU_BYTES

    ae = AE("NULL_SCP")
    ae.maximum_pdu_size = MAX_PDU_BYTES
    ae.add_supported_context(Verification)
    for cx in AllStoragePresentationContexts:
        ae.add_supported_context(cx.abstract_syntax, ACCEPTED_TRANSFER_SYNTAXES)
    handlers = [(evt.EVT_C_STORE, lambda event: 0), (evt.EVT_C_ECHO, lambda event: 0)]
    ae.make_server(
        ("127.0.0.1", port), evt_handlers=handlers, server_class=NodeServer
    ).serve_forever()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, its threads and its descendants so far."""
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
            for task in Path(f"/proc/{p}/task").iterdir():
                todo.extend(int(c) for c in (task / "children").read_text().split())
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


@contextlib.contextmanager
def storescp(workdir: Path):
    port = free_port()
    out = workdir / "storescp"
    out.mkdir()
    argv = ["storescp", "-aet", "STORESCP", "+xa", "--max-pdu", str(MAX_PDU), "-od", str(out)]
    env = {**os.environ, "TCP_NODELAY": "1"}
    with receiver([*argv, str(port)], "STORESCP", port, env) as r:
        yield r


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
    parser.add_argument(
        "--postgres",
        metavar="URL",
        help="also measure the node on PostgreSQL (a fresh database per run on this server), "
        "e.g. postgresql+psycopg://postgres@127.0.0.1:5432/postgres",
    )
    parser.add_argument("--null-scp", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.null_scp:
        return serve_null_scp(args.null_scp)
    for tool in ("storescu", "storescp", "echoscu", "Orthanc"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} not found: apt-get install dcmtk orthanc")
    print(f"settings: {SETTINGS}")
    root = Path(tempfile.mkdtemp(prefix="dicom-node-bench-"))
    targets = {f"node (processes={n})": (lambda w, n=n: node(w, n)) for n in args.processes}
    if args.postgres:
        targets.update(
            {
                f"node PG (processes={n})": (lambda w, n=n: node(w, n, args.postgres))
                for n in args.processes
            }
        )
    targets.update(
        {"orthanc": orthanc, "storescp": storescp, "pynetdicom null SCP": pynetdicom_null}
    )
    results: dict[tuple[str, str, int], list[tuple[float, float]]] = {}
    try:
        for label, (name, option) in FILES.items():
            files = make_copies(name, args.copies, root / label.replace(" ", "_"))
            megabytes = sum(p.stat().st_size for p in files) / 1e6
            for rnd in range(args.rounds):
                for assocs in (1, 4):
                    for target, start in targets.items():
                        work = Path(tempfile.mkdtemp(dir=root))
                        with start(work) as (aet, port, pid):
                            cpu = cpu_seconds(pid)
                            seconds = send(aet, port, files, option, assocs)
                            cpu = cpu_seconds(pid) - cpu
                        shutil.rmtree(work, ignore_errors=True)
                        results.setdefault((label, target, assocs), []).append((seconds, cpu))
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
                f"{'target':<22}{'assoc':>6}{'images/s':>10}{'MB/s':>8}{'CPU ms/img':>11}"
                f"{'/orthanc':>10}{'/storescp':>10}"
            )
            for assocs in (1, 4):
                runs = {t: results[(label, t, assocs)] for t in targets}
                med = {t: statistics.median(s for s, _ in r) for t, r in runs.items()}
                for t in targets:
                    cpu_ms = 1000 * statistics.median(c for _, c in runs[t]) / args.copies
                    print(
                        f"{t:<22}{assocs:>6}{args.copies / med[t]:>10.1f}"
                        f"{megabytes / med[t]:>8.1f}{cpu_ms:>11.2f}"
                        f"{med['orthanc'] / med[t]:>9.2f}x{med['storescp'] / med[t]:>9.2f}x"
                    )
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
