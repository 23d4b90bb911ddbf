"""The SR and SC writers (pure) and result versions through a running node."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest

from dicom_node.model.pixels import unit_image_from_dataset
from dicom_node.model.scores import ImageScore
from dicom_node.results.anomaly_map import body_box, render_anomaly_overlay, write_anomaly_map
from dicom_node.results.report import Algorithm, write_anomaly_report
from dicom_node.samples import SAMPLES_DIR
from dicom_node.testing.peers import dciodvfy_errors, storescu
from tests.dicom_fixtures import with_new_uids
from tests.nodes import destination, wait_for

SOURCES = ("zhanglab_03_pneumonia.dcm", "cr_chest_pa_mono1_j2k.dcm")
ALGORITHM = Algorithm("test-model", "1.0", {"image_size": "32"})


def score(value: float, abnormal: bool) -> ImageScore:
    rng = np.random.default_rng(0)
    return ImageScore(
        {"disc": value, "encoder_features": value / 2},
        value,
        90.0,
        abnormal,
        rng.random((32, 32), dtype=np.float32),
    )


def measurement_values(sr) -> dict[str, list[float]]:
    found: dict[str, list[float]] = {}

    def walk(items):
        for item in items:
            if "MeasuredValueSequence" in item:
                name = item.ConceptNameCodeSequence[0].CodeMeaning
                found.setdefault(name, []).append(float(item.MeasuredValueSequence[0].NumericValue))
            walk(item.get("ContentSequence", []))

    walk(sr.ContentSequence)
    return found


def test_report_holds_every_image_score_and_passes_dciodvfy(tmp_path):
    sources = [pydicom.dcmread(SAMPLES_DIR / n) for n in SOURCES]
    sr = write_anomaly_report(sources, [score(1.5, True), score(-0.5, False)], ALGORITHM, 1)
    path = tmp_path / "sr.dcm"
    sr.save_as(path)
    assert dciodvfy_errors(path) == []
    values = measurement_values(sr)
    assert values["Anomaly score"] == [1.5, -0.5]
    assert values["Discriminator unrealness"] == [1.5, -0.5]
    assert sr.StudyInstanceUID == sources[0].StudyInstanceUID
    processing = [
        e
        for e in sr.ContributingEquipmentSequence
        if e.PurposeOfReferenceCodeSequence[0].CodeValue == "109102"
    ]
    assert "dicom-node test-model" in [e.ManufacturerModelName for e in processing]
    assert sr.ContentSequence  # observer, procedure, measurement groups
    again = write_anomaly_report(sources, [score(1.5, True), score(-0.5, False)], ALGORITHM, 1)
    assert again.SOPInstanceUID == sr.SOPInstanceUID  # same study version: same object
    newer = write_anomaly_report(
        sources, [score(1.5, True), score(-0.5, False)], ALGORITHM, 2, previous_reports=[sr]
    )
    assert newer.SOPInstanceUID != sr.SOPInstanceUID
    predecessor = newer.PredecessorDocumentsSequence[0].ReferencedSeriesSequence[0]
    assert predecessor.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == sr.SOPInstanceUID


def test_one_score_per_image_is_required():
    sources = [pydicom.dcmread(SAMPLES_DIR / n) for n in SOURCES]
    with pytest.raises(ValueError, match="one score per source image"):
        write_anomaly_report(sources, [score(1.0, True)], ALGORITHM, 1)


@pytest.mark.parametrize("name", SOURCES)
def test_secondary_capture_is_burned_in_and_passes_dciodvfy(tmp_path, name):
    source = pydicom.dcmread(SAMPLES_DIR / name)
    unit = unit_image_from_dataset(source)
    rgb = render_anomaly_overlay(unit, score(2.0, True), 1.0)
    band = rgb.shape[0] - source.Rows
    assert band > 0 and rgb.shape[1:] == (source.Columns, 3) and rgb.dtype == np.uint8
    sc = write_anomaly_map(source, rgb, 1, 1)
    path = tmp_path / "sc.dcm"
    sc.save_as(path)
    assert dciodvfy_errors(path) == []
    assert sc.BurnedInAnnotation == "YES" and sc.StudyInstanceUID == source.StudyInstanceUID
    assert sc.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.50"  # JPEG baseline
    assert sc.LossyImageCompression == "01" and float(sc.LossyImageCompressionRatio) > 3
    assert sc.SeriesInstanceUID != source.SeriesInstanceUID
    # The warning, score and legend are in a band above the image: text is drawn there...
    assert (rgb[:band] > 200).any()
    # ...and nothing covers the image outside the body, where laterality markers are.
    grey = (unit * 255).round()
    top, bottom, left, right = body_box(unit)
    outside = np.ones(grey.shape, bool)
    outside[top:bottom, left:right] = False
    assert outside.any() and np.abs(rgb[band:, :, 0] - grey)[outside].max() <= 1
    inside = np.abs(rgb[band:, :, 0] - grey)[~outside]
    assert inside.mean() > 5  # the map is drawn inside the body


def test_body_box_keeps_the_body_and_drops_the_dark_background_and_the_frame():
    picture = np.zeros((400, 300), np.float32)
    picture[40:380, 60:250] = 0.7  # the body; dark air on every side
    picture[10:30, 10:30] = 1.0  # a laterality marker in the corner
    top, bottom, left, right = body_box(picture)
    assert 40 <= top <= 60 and 360 <= bottom <= 380  # inside the body, less a thin frame
    assert 60 <= left <= 75 and 235 <= right <= 250


@pytest.mark.integration
def test_late_image_makes_a_new_result_version_that_replaces_the_old(make_node, pacs, tmp_path):
    node = make_node(
        worker={"enabled": True, "poll_s": 0.1},
        destinations=destination(pacs.port),
    )
    study = pydicom.uid.generate_uid()
    first = with_new_uids(
        SAMPLES_DIR / "zhanglab_03_pneumonia.dcm", tmp_path / "1.dcm", study_uid=study
    )
    assert storescu(node.port, first).returncode == 0
    assert wait_for(lambda: node.counts("exports").get("sent") == 1, timeout=90)
    late = with_new_uids(
        SAMPLES_DIR / "zhanglab_03_pneumonia.dcm", tmp_path / "2.dcm", study_uid=study
    )
    assert storescu(node.port, late).returncode == 0
    assert wait_for(lambda: node.counts("exports").get("sent") == 2, timeout=90)
    reports = sorted(
        (pydicom.dcmread(p) for _, kind, p in pacs.received if "SR" in kind),
        key=lambda ds: len(ds.get("PredecessorDocumentsSequence", [])),
    )
    assert len(reports) == 2
    old, new = reports
    replaced = new.PredecessorDocumentsSequence[0].ReferencedSeriesSequence[0]
    assert replaced.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == old.SOPInstanceUID
    assert len(measurement_values(new)["Anomaly score"]) == 2  # both images of version 2
    assert sum("Secondary" in kind for _, kind, _ in pacs.received) == 3  # 1 + 2


NAMES = {  # PS3.5 Annex H (Japanese), and two European names
    "iso2022_ir87": (["", "ISO 2022 IR 87"], "Yamada^Tarou=山田^太郎=やまだ^たろう"),
    "utf8": ("ISO_IR 192", "Müller^Jürgen=山田^太郎"),
    "latin1": ("ISO_IR 100", "Müller^Jürgen"),
}


@pytest.mark.integration
def test_any_character_set_and_absent_type_2_attributes_get_their_report(make_node, pacs, tmp_path):
    from tests import dicom_fixtures as fx
    from tests.nodes import FAST_WORKER

    node = make_node(worker=FAST_WORKER, destinations=destination(pacs.port))
    files = {key: fx.named(tmp_path / f"{key}.dcm", *value) for key, value in NAMES.items()}
    files["no type 2"] = fx.without_type_2(tmp_path / "bare.dcm")
    studies = {key: pydicom.dcmread(path).StudyInstanceUID for key, path in files.items()}
    for path in files.values():
        assert storescu(node.port, path).returncode == 0
    assert wait_for(lambda: all(pacs.reports_for(s) == 1 for s in studies.values()), 60), (
        node.log_text()[-2000:]
    )
    for key, study in studies.items():
        (sr_path,) = [p for s, kind, p in pacs.received if s == study and "SR" in kind]
        assert dciodvfy_errors(sr_path) == [], key
        expected = NAMES[key][1] if key in NAMES else ""
        assert str(pydicom.dcmread(sr_path).PatientName) == expected, key
    names = {row.study_uid: row.patient_name for row in node.index.views.worklist()}
    assert {key: names[study] for key, study in studies.items()} == {
        key: NAMES[key][1] if key in NAMES else "" for key in studies
    }


@pytest.mark.integration
def test_key_objects_list_the_flagged_images_when_asked(make_node, pacs, tmp_path):
    from tests.nodes import FAST_WORKER, send_study

    node = make_node(
        worker={**FAST_WORKER, "key_objects": True}, destinations=destination(pacs.port)
    )
    urgent = send_study(node.port, tmp_path, "zhanglab_03_pneumonia.dcm")
    routine = send_study(node.port, tmp_path, "zhanglab_01_normal.dcm")
    assert wait_for(lambda: pacs.reports_for(urgent) == 1 and pacs.reports_for(routine) == 1, 90)
    assert wait_for(lambda: node.counts("exports").get("sent") == 2, 30)
    received = {(study, kind): path for study, kind, path in pacs.received}
    ko_path = received[(urgent, "Key Object Selection Document Storage")]
    assert (routine, "Key Object Selection Document Storage") not in received  # nothing flagged
    assert dciodvfy_errors(ko_path) == []
    ko = pydicom.dcmread(ko_path)
    assert ko.ConceptNameCodeSequence[0].CodeValue == "113000"  # Of Interest
    referenced = [
        item.ReferencedSOPSequence[0].ReferencedSOPInstanceUID
        for item in ko.ContentSequence
        if item.ValueType == "IMAGE"
    ]
    study_ids = {s.id for s in node.index.views.studies() if s.study_uid == urgent}
    images = [i.sop_instance_uid for i in node.index.views.instances() if i.study_id in study_ids]
    assert referenced == images and len(images) == 1
