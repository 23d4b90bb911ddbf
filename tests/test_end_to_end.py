"""End to end with a real PACS: the samples go to Orthanc, Orthanc sends them to the node, the
node scores them and sends SR and SC back; the test reads them from Orthanc's REST API."""

from __future__ import annotations

import pydicom
import pytest

from dicom_node.samples import sample_files
from dicom_node.testing.orthanc import Orthanc
from dicom_node.testing.peers import dciodvfy_errors, free_port
from tests.nodes import wait_for

pytestmark = pytest.mark.integration

SR_CLASS = "1.2.840.10008.5.1.4.1.1.88.34"
SC_CLASS = "1.2.840.10008.5.1.4.1.1.7"


def series_by_class(orthanc: Orthanc, study_id: str) -> dict[str, list[str]]:
    """SOP Class UID -> series IDs of one Orthanc study."""
    found: dict[str, list[str]] = {}
    for series in orthanc.get(f"/studies/{study_id}/series"):
        first = orthanc.get(f"/series/{series['ID']}/instances")[0]["ID"]
        sop_class = orthanc.get(f"/instances/{first}/simplified-tags")["SOPClassUID"]
        found.setdefault(sop_class, []).append(series["ID"])
    return found


def test_orthanc_sends_studies_and_gets_sr_and_sc_back(make_node, tmp_path):
    port = free_port()
    orthanc = Orthanc(tmp_path / "orthanc", {"node": ("DICOM_NODE", "127.0.0.1", port)})
    try:
        node = make_node(
            worker={"enabled": True, "poll_s": 0.1},
            destinations=[
                {
                    "name": "orthanc",
                    "ae_title": "ORTHANC",
                    "host": "127.0.0.1",
                    "port": orthanc.dicom_port,
                }
            ],
            node={"port": port, "accept_from": [{"ae_title": "ORTHANC", "host": "127.0.0.1"}]},
        )
        studies = {}
        for path in sample_files():
            uploaded = orthanc.upload(path)
            studies[pydicom.dcmread(path, stop_before_pixels=True).StudyInstanceUID] = uploaded[
                "ParentStudy"
            ]
        orthanc.post(
            "/modalities/node/store", {"Resources": list(studies.values()), "Synchronous": True}
        )

        def delivered():
            worklist = node.index.views.worklist()
            done = [r for r in worklist if r.deliveries.get("orthanc") == "sent"]
            return worklist if len(done) == 5 else None

        worklist = wait_for(delivered, timeout=240, every=0.2)
        assert worklist, node.log_text()[-3000:]
        # The adult CR chest (born 1940, studied 2004) is outside the model's population.
        adult = wait_for(
            lambda: [s for s in node.index.views.studies() if s.state.value == "not_scored"]
        )
        assert [s.reason for s in adult] == [
            "not scored: outside the model's population: age 64 y (model: 1-5 y)"
        ]
        scores = {r.study_uid: r.score for r in worklist}
        for study_uid, orthanc_id in studies.items():
            by_class = series_by_class(orthanc, orthanc_id)
            if study_uid not in scores:  # the extremity and the adult: nothing comes back
                assert set(by_class) == {"1.2.840.10008.5.1.4.1.1.1"}, by_class
                continue
            assert len(by_class[SR_CLASS]) == 1 and len(by_class[SC_CLASS]) == 1, by_class
            images = [
                i
                for c, s in by_class.items()
                if c not in (SR_CLASS, SC_CLASS)
                for sid in s
                for i in orthanc.get(f"/series/{sid}/instances")
            ]
            image_uids = {
                orthanc.get(f"/instances/{i['ID']}/simplified-tags")["SOPInstanceUID"]
                for i in images
            }
            (sr_instance,) = orthanc.get(f"/series/{by_class[SR_CLASS][0]}/instances")
            sr_file = tmp_path / f"{study_uid}.sr.dcm"
            sr_file.write_bytes(orthanc.get(f"/instances/{sr_instance['ID']}/file"))
            sr = pydicom.dcmread(sr_file)
            assert sr.StudyInstanceUID == study_uid
            referenced = {
                ref.ReferencedSOPInstanceUID
                for item in sr.CurrentRequestedProcedureEvidenceSequence
                for series in item.ReferencedSeriesSequence
                for ref in series.ReferencedSOPSequence
            }
            assert referenced == image_uids
            assert f"{scores[study_uid]:.3f}"[:-1] in _numeric_values(sr)
            assert dciodvfy_errors(sr_file) == []
            (sc_instance,) = orthanc.get(f"/series/{by_class[SC_CLASS][0]}/instances")
            sc_file = tmp_path / f"{study_uid}.sc.dcm"
            sc_file.write_bytes(orthanc.get(f"/instances/{sc_instance['ID']}/file"))
            assert dciodvfy_errors(sc_file) == []
            assert pydicom.dcmread(sc_file).BurnedInAnnotation == "YES"
    finally:
        orthanc.stop()


def _numeric_values(sr) -> str:
    """Every measured value in the SR as text, for a loose match of the study's score."""
    values = []

    def walk(items):
        for item in items:
            if "MeasuredValueSequence" in item:
                values.append(f"{float(item.MeasuredValueSequence[0].NumericValue):.3f}")
            walk(item.get("ContentSequence", []))

    walk(sr.ContentSequence)
    return " ".join(values)
