"""The command line: the reading commands stay light (no torch) and say how the node is."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys

import pytest

from dicom_node.app.cli import main
from dicom_node.config_file import load_settings
from dicom_node.index import Index
from dicom_node.index.database import utcnow
from dicom_node.index.records import LoopHealth
from tests.nodes import write_config
from tests.test_queue import queue_studies

PROBE = """
import sys
from dicom_node.app.cli import main
code = main(sys.argv[1:])
heavy = sorted(m for m in ("torch", "highdicom", "matplotlib", "sklearn") if m in sys.modules)
print("HEAVY", heavy, "CODE", code)
"""


@pytest.fixture
def config(tmp_path):
    path = write_config(tmp_path / "node.yaml", None)
    storage = load_settings(path).storage
    storage.data_dir.mkdir()
    index = Index(storage.effective_database_url)  # as `serve` makes it
    queue_studies(index, 2)
    index.heartbeats.beat(LoopHealth("scoring", "host:1:a", 60, utcnow(), 0, ""))
    index.close()
    return path


@pytest.mark.parametrize("args", [["status", "--json"], ["worklist", "--json"]])
def test_reading_commands_do_not_import_torch(config, args):
    argv = [*args, "--config", str(config)]
    out = subprocess.run(
        [sys.executable, "-c", PROBE, *argv], capture_output=True, text=True, timeout=60
    )
    assert "HEAVY [] CODE 0" in out.stdout, out.stdout + out.stderr


def test_status_reports_counts_and_loop_health_and_fails_when_a_loop_does(config, capsys):
    assert main(["status", "--config", str(config)]) == 0
    text = capsys.readouterr().out
    assert "instances: 2" in text and "jobs:      queued 2" in text
    assert "loop scoring (host:1:a): ok" in text
    index = Index(load_settings(config).storage.effective_database_url)
    index.heartbeats.beat(
        LoopHealth("delivery", "host:1:a", 60, utcnow() - dt.timedelta(seconds=120), 0, "")
    )
    index.close()
    assert main(["status", "--json", "--config", str(config)]) == 1
    report = json.loads(capsys.readouterr().out)
    (delivery,) = [h for h in report["loops"] if h["loop"] == "delivery"]
    assert not delivery["healthy"] and "no completed cycle for 120 s" in delivery["problem"]


def test_status_of_a_node_that_never_ran_says_what_to_do(tmp_path, capsys):
    path = write_config(tmp_path / "fresh.yaml", None)
    assert main(["status", "--config", str(path)]) == 2
    assert "`dicom-node serve` creates it" in capsys.readouterr().err
