"""Several machines sharing nothing but PostgreSQL (`storage.objects: database`): an SCP node
and a worker with separate data folders; Orthanc sends the samples to the one and gets the
results back from the other."""

from __future__ import annotations

import pydicom
import pytest
import yaml

from dicom_node.samples import sample_files
from dicom_node.testing.orthanc import Orthanc
from dicom_node.testing.peers import free_port
from tests.nodes import start_worker, wait_for

pytestmark = pytest.mark.integration


def test_scp_and_worker_with_separate_data_dirs_deliver_to_orthanc(
    make_node, postgres_url, tmp_path
):
    port = free_port()
    orthanc = Orthanc(tmp_path / "orthanc", {"node": ("DICOM_NODE", "127.0.0.1", port)})
    worker = None
    try:
        node = make_node(
            database_url=postgres_url,
            storage={"objects": "database", "data_dir": "scp-machine"},
            node={"port": port, "accept_from": [{"ae_title": "ORTHANC", "host": "127.0.0.1"}]},
            destinations=[
                {
                    "name": "orthanc",
                    "ae_title": "ORTHANC",
                    "host": "127.0.0.1",
                    "port": orthanc.dicom_port,
                }
            ],
        )
        storage = yaml.safe_load(node.config.read_text())["storage"]
        storage["data_dir"] = str(tmp_path / "gpu-machine")  # shares no folder with the SCP
        worker, log = start_worker(node.config, tmp_path, storage=storage)
        studies = {}
        for path in sample_files():
            uid = pydicom.dcmread(path, stop_before_pixels=True).StudyInstanceUID
            studies[uid] = orthanc.upload(path)["ParentStudy"]
        orthanc.post(
            "/modalities/node/store", {"Resources": list(studies.values()), "Synchronous": True}
        )

        def delivered():
            rows = node.index.views.worklist()
            return rows if sum(r.deliveries.get("orthanc") == "sent" for r in rows) == 5 else None

        assert wait_for(delivered, timeout=240, every=0.5), log.read_text()[-3000:]
        for row in delivered():
            series = orthanc.get(f"/studies/{studies[row.study_uid]}/series")
            assert len(series) == 3  # the image, and from the worker the SR and the SC
        # Nothing crossed through a folder: the SCP machine holds no image, the worker no result.
        assert not [p for p in (tmp_path / "scp-machine").rglob("*.dcm")]
        assert not [p for p in (tmp_path / "gpu-machine").rglob("*.dcm")]
    finally:
        if worker is not None:
            worker.terminate()
            worker.wait(timeout=60)
        orthanc.stop()
