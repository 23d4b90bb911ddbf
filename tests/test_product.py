"""The node as a product: a site's configuration from `init`, `config check` that checks the
world, start-up that refuses impossible settings in one line (no traceback), one node per
data folder, and a command line that behaves (version, exit codes, closed pipes)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from dicom_node import __version__
from dicom_node.app.cli import main
from dicom_node.app.locks import PortLock
from dicom_node.config_file import load_settings
from dicom_node.errors import DicomNodeError
from tests.certs import self_signed
from tests.nodes import free_port

CLI = [sys.executable, "-m", "dicom_node.app.cli"]


def run_cli(*args: str, cwd: Path, env: dict | None = None, timeout: float = 120):
    return subprocess.run(
        [*CLI, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture
def site(tmp_path, capsys) -> Path:
    """A site made by `dicom-node init`, with a free port."""
    assert main(["init", str(tmp_path / "site")]) == 0
    capsys.readouterr()
    config = tmp_path / "site" / "node.yaml"
    config.write_text(config.read_text().replace("port: 11112 ", f"port: {free_port()} "))
    return config


def edited(site: Path, section: str, key: str, value) -> Path:
    """A copy of the site's configuration with one key changed (comments are lost)."""
    data = yaml.safe_load(site.read_text())
    if key:
        data[section][key] = value
    else:
        data[section] = value
    path = site.with_name("edited.yaml")
    path.write_text(yaml.safe_dump(data))
    return path


def test_init_writes_absolute_paths_that_work_from_any_directory(site, tmp_path, capsys):
    settings = load_settings(site)
    assert settings.storage.data_dir == site.parent / "data" and settings.storage.data_dir.is_dir()
    assert 'data_dir: "' + str(site.parent / "data") in site.read_text()
    moved = tmp_path / "elsewhere" / "node.yaml"
    moved.parent.mkdir()
    moved.write_text(site.read_text())  # copying the file moves nothing
    assert load_settings(moved).storage.data_dir == settings.storage.data_dir
    assert main(["init", str(site.parent)]) == 2  # never overwrites
    assert "already exists" in capsys.readouterr().err
    result = run_cli("config", "check", str(site), cwd=tmp_path / "elsewhere")
    assert result.returncode == 0, result.stderr
    assert "valid" in result.stdout and "not created yet" in result.stdout


def test_version_names_package_and_model(tmp_path):
    result = run_cli("--version", cwd=tmp_path)
    assert result.returncode == 0
    assert f"dicom-node {__version__}" in result.stdout and "alpha-gan-zhanglab" in result.stdout


def _bad_database(site: Path) -> Path:
    return edited(site, "storage", "database_url", "postgresql+psycopg://u@127.0.0.1:1/x")


IMPOSSIBLE = {
    "model missing": (lambda s: edited(s, "model", "path", "/nonexistent/model"), "model.path"),
    "data_dir under a file": (
        lambda s: edited(s, "storage", "data_dir", "/etc/passwd/x"),
        "storage.data_dir: /etc/passwd/x cannot be used",
    ),
    "misspelt database URL": (
        lambda s: edited(s, "storage", "database_url", "postgres://u@127.0.0.1/x"),
        "unsupported database driver 'postgres'",
    ),
    "unreachable database": (_bad_database, "storage.database_url: "),
    "urgent_percentile 150": (
        lambda s: edited(s, "worker", "urgent_percentile", 150),
        "urgent_percentile must be between 0 and 100",
    ),
    "destination host": (
        lambda s: edited(
            s,
            "destinations",
            None,
            [{"name": "p", "ae_title": "P", "host": "not-a-host!!", "port": 104}],
        ),
        "destinations[0].host: 'not-a-host!!' does not resolve",
    ),
    "TLS key of another certificate": (
        lambda s: edited(
            s,
            "node",
            "tls",
            {
                "enabled": True,
                "cert": str(self_signed(s.parent, "a")[0]),
                "key": str(self_signed(s.parent, "b")[1]),
            },
        ),
        "do not load together",
    ),
}


@pytest.mark.parametrize("case", sorted(IMPOSSIBLE))
def test_config_check_rejects_each_impossible_value_in_one_line(site, case, capsys):
    make, message = IMPOSSIBLE[case]
    path = make(site)
    code = main(["config", "check", str(path)])
    err = capsys.readouterr().err.strip()
    assert code != 0
    assert len(err.splitlines()) == 1 and message in err and str(path) in err, err


@pytest.mark.parametrize(
    "case",
    ["model missing", "data_dir under a file", "unreachable database", "urgent_percentile 150"],
)
def test_serve_refuses_to_start_without_a_traceback(site, case, tmp_path):
    make, message = IMPOSSIBLE[case]
    result = run_cli("serve", "--config", str(make(site)), cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr, result.stderr


def test_serve_on_a_taken_port_says_so_without_a_traceback(site, tmp_path):
    port = load_settings(site).node.port
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", port))
        taken.listen()
        result = run_cli("serve", "--config", str(site), cwd=tmp_path)
    assert result.returncode == 2
    assert f"cannot listen on 0.0.0.0:{port}" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_second_node_on_the_port_is_told_who_holds_it(tmp_path):
    first = PortLock(tmp_path, 11112)
    with pytest.raises(DicomNodeError, match=f"port 11112 is held by .* \\(pid {os.getpid()}\\)"):
        PortLock(tmp_path, 11112)
    PortLock(tmp_path, 11113).release()  # another port of the same data_dir
    first.release()
    PortLock(tmp_path, 11112).release()  # free again once the first has gone


def test_db_upgrade_creates_the_index_and_check_then_reports_it_current(site, capsys):
    assert main(["db", "upgrade", "--config", str(site)]) == 0
    assert "schema revision" in capsys.readouterr().out
    assert main(["config", "check", str(site)]) == 0
    assert "current" in capsys.readouterr().out


def test_config_from_the_environment_and_a_closed_pipe(site, tmp_path):
    assert main(["db", "upgrade", "--config", str(site)]) == 0
    reader = subprocess.Popen(
        [*CLI, "status"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "DICOM_NODE_CONFIG": str(site)},
    )
    reader.stdout.close()  # `dicom-node status | head -0`
    err = reader.stderr.read().decode()
    reader.wait(timeout=60)
    assert "Traceback" not in err and "BrokenPipe" not in err, err
    result = run_cli("status", cwd=tmp_path, env={"DICOM_NODE_CONFIG": str(site)})
    assert str(site.parent / "data") in result.stdout, result.stdout + result.stderr


def test_the_wheel_carries_the_model_and_the_default_config(tmp_path):
    repo = Path(__file__).resolve().parent.parent
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            str(repo),
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("dicom_node-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for shipped in (
        "node.yaml",
        "alpha-gan-zhanglab/model.json",
        "alpha-gan-zhanglab/weights.safetensors",
        "alpha-gan-zhanglab/MODEL_CARD.md",
    ):
        assert f"dicom_node/shipped/{shipped}" in names


def test_probe_echoes_destinations_over_tls_and_verifies_their_certificate(make_node, tmp_path):
    cert, key = self_signed(tmp_path, "localhost")
    node = make_node(node={"tls": {"enabled": True, "cert": str(cert), "key": str(key)}})
    destination = {
        "name": "tls-node",
        "ae_title": "DICOM_NODE",
        "host": "127.0.0.1",
        "port": node.port,
    }
    trusted = {**destination, "tls": {"enabled": True, "ca": str(cert)}}
    untrusted = {**destination, "tls": {"enabled": True}}  # the system's CAs: not ours
    plain = destination
    for given, ok in ((trusted, True), (untrusted, False), (plain, False)):
        config = tmp_path / "probe.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "storage": {"data_dir": str(tmp_path / "d")},
                    "worker": {"loops": ["delivery"]},
                    "destinations": [given],
                }
            )
        )
        result = run_cli("config", "check", "--probe", str(config), cwd=tmp_path)
        assert (result.returncode == 0) is ok, (given, result.stdout, result.stderr)
        if not ok:
            assert "destinations[0]: tls-node (DICOM_NODE@127.0.0.1" in result.stderr


def test_demo_runs_from_any_directory_and_removes_its_folder(tmp_path):
    taken = socket.socket()  # the web face's default port busy: the demo does not need it
    taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        taken.bind(("127.0.0.1", 8080))
        taken.listen()
    except OSError:
        pass  # something else holds it already: the same situation
    with taken:
        result = run_cli(
            "demo", cwd=tmp_path, env={"XDG_DATA_HOME": str(tmp_path / "xdg")}, timeout=600
        )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "outside the model's population: age 64 y" in result.stdout
    assert "Secondary Capture Image Storage" in result.stdout
    folder = next(
        line.split()[2] for line in result.stdout.splitlines() if line.startswith("demo folder:")
    )
    assert not Path(folder).exists()
    assert "Traceback" not in result.stderr and "Warning" not in result.stderr, result.stderr
