"""Several SCP processes behind one port: the listening process hands connections round-robin
to its siblings; a sibling that dies costs no connection; no other node can share the port."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from dicom_node.testing.peers import echoscu
from tests.nodes import send_study, wait_for

pytestmark = pytest.mark.integration


def scp_siblings(pid: int) -> list[int]:
    """The node's sibling SCP processes (not multiprocessing's resource tracker)."""
    children = [
        int(child)
        for task in Path(f"/proc/{pid}/task").iterdir()
        for child in (task / "children").read_text().split()
    ]
    return [
        c for c in children if b"resource_tracker" not in Path(f"/proc/{c}/cmdline").read_bytes()
    ]


def test_connections_go_round_robin_to_the_scp_processes(make_node_process, tmp_path):
    node = make_node_process(node={"processes": 2})
    assert wait_for(lambda: "an SCP process is serving: 2 take turns" in node.log_text())
    studies = [send_study(node.port, tmp_path) for _ in range(4)]  # one association each
    assert wait_for(lambda: node.status().instances == 4)
    assert {s.study_uid for s in node.index.views.studies()} == set(studies)
    assert node.stop() == 0
    log = node.log_text()
    assert "round-robin to this and 1 more SCP process(es)" in log
    served = [line for line in log.splitlines() if "handed over by the listening process" in line]
    assert served and int(served[-1].split("served ")[1].split()[0]) >= 2, served


def test_a_dead_scp_process_costs_no_connection(make_node_process):
    node = make_node_process(node={"processes": 2})
    assert wait_for(lambda: "an SCP process is serving: 2 take turns" in node.log_text())
    (sibling,) = scp_siblings(node.proc.pid)
    os.kill(sibling, signal.SIGKILL)
    assert wait_for(lambda: not Path(f"/proc/{sibling}").exists() or _zombie(sibling))
    assert all(echoscu(node.port).returncode == 0 for _ in range(4))
    assert "an SCP process is gone" in node.log_text()


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_a_second_node_on_the_same_port_stops_with_a_clear_message(make_node_process, tmp_path):
    first = make_node_process(node={"processes": 2})
    config = yaml.safe_load(first.config.read_text())
    config["storage"]["data_dir"] = str(tmp_path / "second")
    second = tmp_path / "second.yaml"
    second.write_text(yaml.safe_dump(config))
    result = subprocess.run(
        [sys.executable, "-m", "dicom_node.app.cli", "serve", "--config", str(second)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert f"cannot listen on 127.0.0.1:{first.port}" in result.stderr
    assert "Traceback" not in result.stderr
    assert echoscu(first.port).returncode == 0  # the first node is untouched


def _children(pid: int) -> list[int]:
    found = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":\t", 1) for line in status.read_text().splitlines())
        except (OSError, ValueError):
            continue
        if fields.get("PPid", "").strip() == str(pid):
            found.append(int(status.parent.name))
    return found


def _state(pid: int) -> str:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return ""
    return next(line.split()[1] for line in status.splitlines() if line.startswith("State:"))


def test_a_sibling_stops_when_the_listening_process_is_killed(make_node_process):
    node = make_node_process(node={"processes": 2})
    assert echoscu(node.port).returncode == 0
    siblings = [
        pid
        for pid in _children(node.proc.pid)
        if "multiprocessing" in Path(f"/proc/{pid}/cmdline").read_text()
        and "spawn_main" in Path(f"/proc/{pid}/cmdline").read_text()
    ]
    assert siblings, "no sibling SCP process found"
    node.proc.send_signal(signal.SIGKILL)
    node.proc.wait(timeout=30)

    def gone() -> bool:  # exited (a zombie waiting for its new parent counts as exited)
        return all(_state(pid) in ("", "Z") for pid in siblings)

    assert wait_for(gone, timeout=30), [_state(pid) for pid in siblings]
