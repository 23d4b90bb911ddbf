"""Configuration: defaults, relative paths, and the errors that stop start-up."""

from __future__ import annotations

from pathlib import Path

import pytest

from dicom_node.app.cli import main
from dicom_node.config import SHIPPED_MODEL, StudySettings, default_data_dir
from dicom_node.config_file import load_settings
from dicom_node.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent


def write(tmp_path, text: str) -> Path:
    path = tmp_path / "node.yaml"
    path.write_text(text)
    return path


def test_shipped_default_config_is_valid_and_points_at_the_shipped_model():
    settings = load_settings(REPO / "config" / "node.yaml")
    assert settings.node.ae_title == "DICOM_NODE" and settings.node.port == 11112
    assert settings.node.accept_from == () and settings.destinations == ()
    assert settings.studies.accept.modalities == ("CR", "DX")
    assert settings.studies == StudySettings()  # the file documents the defaults, rules included
    assert settings.model.path == SHIPPED_MODEL
    assert settings.storage.data_dir == default_data_dir()  # no path that moves with the file


def test_null_is_the_default_and_a_path_may_start_at_home(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    s = load_settings(write(tmp_path, "storage: {data_dir: null}\nmodel: {path: ~/m}\n"))
    assert s.storage.data_dir == tmp_path / "xdg" / "dicom-node"
    assert s.model.path == tmp_path / "m"
    assert load_settings(None).storage.data_dir == tmp_path / "xdg" / "dicom-node"


def test_three_lines_are_a_valid_config_with_paths_relative_to_the_file(tmp_path):
    s = load_settings(
        write(
            tmp_path,
            "node: {port: 104}\nstorage: {data_dir: spool}\nstudies: {stable_after_s: 5}\n",
        )
    )
    assert s.node.port == 104 and s.studies.stable_after_s == 5.0
    assert s.storage.data_dir == tmp_path / "spool"
    assert s.storage.effective_database_url == f"sqlite:///{tmp_path / 'spool' / 'index.sqlite3'}"


@pytest.mark.parametrize(
    "text,message",
    [
        ("node: {prot: 1}", "node.prot: unknown key"),
        ("node: {port: eleven}", "node.port: expected int, got 'eleven'"),
        ("node: {port: 70000}", "node: port 70000 outside 1..65535"),
        ("node: {ae_title: THIS_TITLE_IS_FAR_TOO_LONG}", "not a valid AE title"),
        ("node: {accept_from: [{host: not-an-ip}]}", "node.accept_from[0]: host 'not-an-ip'"),
        ("node: {tls: {enabled: true}}", "tls.enabled needs tls.cert"),
        ("studies: {stable_after_s: 0}", "stable_after_s must be positive"),
        ("worker: {urgent_percentile: 150}", "urgent_percentile must be between 0 and 100"),
        ("studies: {accept: {modalities: CR}}", "studies.accept.modalities: expected a list"),
        (
            "studies: {completion: [{modality: CR}]}",
            "studies.completion[0]: a completion rule needs",
        ),
        ("studies: {completion: [{modality: DX, expected_instances: 0}]}", "at least 1, got 0"),
        ("studies: {completion: [{modality: DX, stable_after: 5}]}", "stable_after: unknown key"),
        ("destinations: [{name: pacs, ae_title: ORTHANC, host: h}]", "missing 1 required"),
        ("- just a list", "top level must be a mapping"),
        ("node: [unclosed", "not valid YAML"),
    ],
)
def test_bad_values_name_the_file_key_and_reason(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_settings(path)
    assert str(path) in str(err.value) and message in str(err.value)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="configuration file not found"):
        load_settings(tmp_path / "absent.yaml")


def test_config_check_command(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert main(["config", "check", str(write(tmp_path, "node: {port: 104}"))]) == 0
    assert "valid" in capsys.readouterr().out
    assert main(["config", "check", str(write(tmp_path, "node: {port: -1}"))]) == 2
    assert "port -1 outside" in capsys.readouterr().err
