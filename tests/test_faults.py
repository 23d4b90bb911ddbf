"""The supervised loops under real faults, without restarting the node: the database gone for a
few seconds (a throwaway PostgreSQL cluster of the test's own, stopped and started again), and
the disk full while results are written (a small tmpfs). While it fails, the node says so
(the loops' health, `dicom-node status`); afterwards every queued study is scored and
delivered."""

from __future__ import annotations

import glob
import json
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

import httpx
import pytest

from dicom_node.app.cli import main
from dicom_node.testing.peers import free_port
from tests.nodes import FAST_WORKER, destination, send_study, wait_for

pytestmark = pytest.mark.integration


class ThrowawayPostgres:
    """A PostgreSQL cluster in a temporary folder on a free port (run as the postgres user when
    the tests run as root: initdb refuses root)."""

    def __init__(self) -> None:
        binaries = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
        if not binaries:
            pytest.skip("PostgreSQL server binaries not found (Debian package postgresql)")
        self.bin = Path(binaries[-1]).parent
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="dicom-node-pg-"))
        self.user = None
        if os.geteuid() == 0:
            self.user = pwd.getpwnam("postgres")
            os.chown(self.dir, self.user.pw_uid, self.user.pw_gid)
        self._run("initdb", "-D", str(self.dir / "data"), "-U", "postgres", "--auth=trust")
        self.start()

    def _run(self, tool: str, *args: str) -> None:
        command = [str(self.bin / tool), *args]
        if self.user is not None:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=120)

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        log = str(self.dir / "postgres.log")  # not a pipe: the server outlives pg_ctl
        self._run("pg_ctl", "-D", str(self.dir / "data"), "-l", log, "-o", options, "-w", "start")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.dir / "data"), "-m", "immediate", "-w", "stop")

    def remove(self) -> None:
        try:
            self.stop()
        except subprocess.CalledProcessError:
            pass  # already stopped
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def throwaway_postgres():
    cluster = ThrowawayPostgres()
    yield cluster
    cluster.remove()


def status_json(node, capsys) -> tuple[int, dict | None]:
    capsys.readouterr()
    code = main(["status", "--json", "--config", str(node.config)])
    out = capsys.readouterr().out
    return code, (json.loads(out) if out else None)


def unhealthy_loops(node) -> set[str]:
    return {h.loop for h in node.running.health() if h.failures}


def test_database_outage_then_every_queued_study_is_scored_and_delivered(
    make_node, pacs, throwaway_postgres, tmp_path, capsys
):
    node = make_node(
        database_url=throwaway_postgres.url,
        worker=FAST_WORKER,
        destinations=destination(pacs.port),
        http={"enabled": True, "port": 0},
    )
    readyz = f"http://127.0.0.1:{node.running.web.port}/readyz"
    assert wait_for(lambda: httpx.get(readyz).status_code == 200, timeout=20)
    studies = [send_study(node.port, tmp_path), send_study(node.port, tmp_path)]
    throwaway_postgres.stop()  # before the 1 s quiet period ends: both still to complete
    assert wait_for(lambda: {"completion", "scoring", "delivery"} <= unhealthy_loops(node), 20)
    code, _ = status_json(node, capsys)
    assert code == 2  # status says the index is unreachable
    outage = httpx.get(readyz)
    assert outage.status_code == 503
    index_check = next(c for c in outage.json()["checks"] if c["name"] == "index")
    assert not index_check["ok"] and "unreachable" in index_check["detail"]
    refused = subprocess.run(  # nothing is acknowledged that cannot be kept
        [
            "storescu",
            "-aec",
            "DICOM_NODE",
            "127.0.0.1",
            str(node.port),
            str(next((node.data_dir / "spool").rglob("*.dcm"))),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "Success" not in refused.stderr
    throwaway_postgres.start()
    assert wait_for(lambda: all(pacs.reports_for(s) == 1 for s in studies), timeout=90), (
        node.log_text()[-3000:]
    )
    assert wait_for(lambda: not unhealthy_loops(node), timeout=30)
    assert wait_for(lambda: httpx.get(readyz).status_code == 200, timeout=30)  # no restart
    assert "recovered after" in node.log_text()
    assert node.counts("jobs") == {"done": 2}


@pytest.fixture
def small_results_disk(tmp_path):
    """data/results on a 64 KiB tmpfs: the SR fits, no Secondary Capture does."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (CI runs as root)")
    results = tmp_path / "data" / "results"
    results.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(results)], check=True)
    yield results
    subprocess.run(["umount", "-l", str(results)], check=False)


def test_disk_full_while_writing_results_then_every_queued_study_is_delivered(
    make_node, pacs, small_results_disk, tmp_path, capsys
):
    node = make_node(worker=FAST_WORKER, destinations=destination(pacs.port))
    studies = [send_study(node.port, tmp_path), send_study(node.port, tmp_path)]
    assert wait_for(lambda: "scoring" in unhealthy_loops(node), timeout=30)
    assert wait_for(lambda: status_json(node, capsys)[0] == 1, timeout=10)
    code, report = status_json(node, capsys)
    (scoring,) = [loop for loop in report["loops"] if loop["loop"] == "scoring"]
    assert not scoring["healthy"] and "No space left on device" in scoring["problem"]
    assert report["studies"] == {"queued": 2}  # waiting, not blamed on the studies
    assert not list(small_results_disk.rglob("*.part"))  # no half-written object left
    subprocess.run(["mount", "-o", "remount,size=64m", str(small_results_disk)], check=True)
    assert wait_for(lambda: all(pacs.reports_for(s) == 1 for s in studies), timeout=90), (
        node.log_text()[-3000:]
    )
    assert wait_for(lambda: status_json(node, capsys)[0] == 0, timeout=30)
    assert node.counts("studies") == {"scored": 2}
