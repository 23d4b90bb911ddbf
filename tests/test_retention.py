"""Retention: the files of a delivered study go after `retention_days`, the rows stay, and a
late image for it is still scored (on what it brings)."""

from __future__ import annotations

import pydicom
import pytest

from dicom_node.testing.peers import storescu
from tests import dicom_fixtures as fx
from tests.nodes import FAST_WORKER, destination, wait_for

pytestmark = pytest.mark.integration

SECOND = 1 / 86400  # of a day


def test_files_of_delivered_studies_go_and_the_record_stays(make_node, pacs, tmp_path, capsys):
    from dicom_node.app.cli import main

    node = make_node(
        worker=FAST_WORKER,
        destinations=destination(pacs.port),
        storage={"retention_days": 2 * SECOND, "retention_check_s": 0.3},
    )
    study = pydicom.uid.generate_uid()
    first = fx.with_new_uids(fx.SMALL_SAMPLE, tmp_path / "1.dcm", study_uid=study)
    assert storescu(node.port, first).returncode == 0
    assert wait_for(lambda: pacs.reports_for(study) == 1, timeout=60)
    assert wait_for(lambda: node.status().purged_studies == 1, timeout=30)
    assert not list((node.data_dir / "spool").rglob("*.dcm"))
    assert not list((node.data_dir / "results").rglob("*.dcm"))
    assert node.status().instances == 1  # the record stays
    assert "retention: removed 3 file(s) of study #1" in node.log_text()  # image, SR, SC
    assert main(["status", "--config", str(node.config)]) == 0
    assert "retention: files of 1 studies removed" in capsys.readouterr().out
    late = fx.with_new_uids(fx.SMALL_SAMPLE, tmp_path / "2.dcm", study_uid=study)
    assert storescu(node.port, late).returncode == 0
    assert wait_for(lambda: pacs.reports_for(study) == 2, timeout=60), node.log_text()[-2000:]
    (row,) = node.index.views.worklist()
    assert row.version == 2
    assert wait_for(lambda: node.status().purged_studies == 1, timeout=30)  # v2's files go too
    assert not list((node.data_dir / "spool").rglob("*.dcm"))
