"""deploy/: the systemd units are clean for `systemd-analyze verify` (no unknown key, no
value it ignores), and the sysusers file creates the service user."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
INSTALLED = "/opt/dicom-node/bin/dicom-node"

pytestmark = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze missing (.ci/run installs it)"
)


def verify(unit: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize("name", ["dicom-node.service", "dicom-node-worker@.service"])
def test_units_verify_clean(name, tmp_path):
    # The executable must exist for verify: this environment's dicom-node stands in for
    # /opt/dicom-node's; an instance name for the template.
    text = (DEPLOY / name).read_text()
    assert INSTALLED in text
    unit = tmp_path / name.replace("@.", "@1.")
    unit.write_text(text.replace(INSTALLED, str(Path(sys.executable).parent / "dicom-node")))
    result = verify(unit)
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr
    assert "ProtectSystem=strict" in text and "NoNewPrivileges=true" in text


def test_a_broken_unit_is_noticed(tmp_path):
    text = (DEPLOY / "dicom-node.service").read_text()
    unit = tmp_path / "dicom-node.service"
    unit.write_text(
        text.replace(INSTALLED, str(Path(sys.executable).parent / "dicom-node")).replace(
            "ProtectSystem=strict", "ProtectSystem=bogus"
        )
    )
    assert "Failed to parse" in verify(unit).stderr


def test_sysusers_file_creates_the_service_user(tmp_path):
    # An empty root, so the user never already exists (as it may on a machine that ran the guide).
    conf = tmp_path / "usr" / "lib" / "sysusers.d" / "dicom-node.conf"
    conf.parent.mkdir(parents=True)
    (tmp_path / "etc").mkdir()
    conf.write_text((DEPLOY / "dicom-node.sysusers").read_text())
    result = subprocess.run(
        ["systemd-sysusers", f"--root={tmp_path}", "--dry-run"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "Creating user 'dicom-node'" in result.stdout + result.stderr
    assert "/usr/sbin/nologin" in conf.read_text()  # no login shell for the service user
