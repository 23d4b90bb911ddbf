"""The model's declared population: ages from the DICOM header, the check of an image against
the population, and what the worker does with a study outside it or of unknown age."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
import torch
from pydicom.dataset import Dataset

from dicom_node.config import SHIPPED_MODEL
from dicom_node.model.ensemble import load_model
from dicom_node.model.population import Population, age_of
from dicom_node.samples import SAMPLES_DIR
from dicom_node.testing.peers import storescu
from tests.dicom_fixtures import with_new_uids
from tests.nodes import FAST_WORKER, destination, send_study, wait_for

CHILDREN = Population(1, 5, ("CR", "DX"), ("AP",), "test")


def header(**attributes) -> Dataset:
    ds = Dataset()
    ds.Modality = "DX"
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    return ds


@pytest.mark.parametrize(
    "attributes,years",
    [
        ({"PatientAge": "064Y"}, 64.0),
        ({"PatientAge": "006M"}, 0.5),
        ({"PatientAge": "002W"}, 14 / 365.25),
        ({"PatientBirthDate": "19400305", "StudyDate": "20040826"}, 64.47),
        ({"PatientBirthDate": "20200101", "AcquisitionDate": "20230101"}, 3.0),
        ({"PatientAge": "64"}, None),  # not an Age String, and no dates
        ({"PatientBirthDate": "20200101"}, None),  # no date of the study
        ({"PatientBirthDate": "20200101", "StudyDate": "20190101"}, None),  # before birth
        ({"PatientBirthDate": "2020-01", "StudyDate": "20230101"}, None),
        ({}, None),
    ],
)
def test_age_from_the_header(attributes, years):
    age = age_of(header(**attributes))
    assert (age is None and years is None) or age == pytest.approx(years, abs=0.01)


@pytest.mark.parametrize(
    "attributes,problem",
    [
        ({"PatientAge": "064Y"}, "age 64 y (model: 1-5 y)"),
        ({"PatientAge": "006M"}, "age 6 mo (model: 1-5 y)"),
        ({"PatientAge": "005Y"}, None),
        ({"PatientBirthDate": "20200101", "StudyDate": "20251231"}, None),  # 5 y 364 d
        ({"PatientAge": "003Y", "ViewPosition": "LL"}, "view LL (model: AP)"),
        ({"PatientAge": "003Y", "ViewPosition": "AP"}, None),
        ({}, None),  # age and view unknown: the node's policy decides
        ({"Modality": "CT"}, "modality CT (model: CR, DX)"),
    ],
)
def test_an_image_against_the_population(attributes, problem):
    assert CHILDREN.problem(header(**attributes)) == problem


def test_the_shipped_model_refuses_the_adult_sample_and_not_the_children():
    population = load_model(SHIPPED_MODEL).population
    assert population is not None and population.ages == "1-5 y"
    adult = pydicom.dcmread(SAMPLES_DIR / "cr_chest_pa_mono1_j2k.dcm", stop_before_pixels=True)
    assert population.problem(adult) == "age 64 y (model: 1-5 y)"
    for i in range(1, 6):
        (child,) = SAMPLES_DIR.glob(f"zhanglab_0{i}_*.dcm")
        ds = pydicom.dcmread(child, stop_before_pixels=True)
        assert population.problem(ds) is None and age_of(ds) is None  # age not in the header


@pytest.mark.integration
def test_a_study_of_unknown_age_is_scored_and_says_so(make_node, pacs, tmp_path):
    node = make_node(worker=FAST_WORKER, destinations=destination(pacs.port))
    study = send_study(node.port, tmp_path)
    assert wait_for(lambda: pacs.reports_for(study) == 1, timeout=60)
    (row,) = node.index.views.studies()
    assert row.state.value == "scored"
    assert row.reason == "1 image(s) scored; age unknown (model: 1-5 y)"


@pytest.mark.integration
def test_a_child_whose_header_gives_the_age_is_scored_without_a_caveat(make_node, tmp_path):
    node = make_node(worker=FAST_WORKER)
    path = with_new_uids(SAMPLES_DIR / "zhanglab_03_pneumonia.dcm", tmp_path / "aged.dcm")
    ds = pydicom.dcmread(path)
    ds.PatientAge = "003Y"  # Patient Age only: no birth date
    ds.save_as(path)
    assert storescu(node.port, path).returncode == 0
    assert wait_for(lambda: node.counts("studies").get("scored") == 1, timeout=60)
    assert node.index.views.studies()[0].reason == "1 image(s) scored"


@pytest.mark.integration
def test_unknown_age_refused_by_policy_ends_not_scored_with_nothing_sent(make_node, pacs, tmp_path):
    node = make_node(
        worker={**FAST_WORKER, "unknown_age": "refuse"}, destinations=destination(pacs.port)
    )
    study = send_study(node.port, tmp_path)
    assert wait_for(lambda: node.counts("studies").get("not_scored") == 1, timeout=60)
    (row,) = node.index.views.studies()
    assert row.reason == (
        "not scored: outside the model's population: age unknown "
        "(model: 1-5 y; worker.unknown_age is refuse)"
    )
    assert row.priority is None and not node.index.views.worklist()
    assert node.counts("jobs") == {"dead": 1} and not node.counts("exports")
    assert pacs.reports_for(study) == 0


def test_score_command_refuses_an_image_outside_the_population(capsys):
    from dicom_node.app.cli import main

    adult, child = SAMPLES_DIR / "cr_chest_pa_mono1_j2k.dcm", SAMPLES_DIR / "zhanglab_01_normal.dcm"
    assert main(["score", str(child)]) == 0
    assert main(["score", str(adult), str(child)]) == 1  # not everything could be scored
    out = capsys.readouterr().out
    assert "not scored: outside the model's population: age 64 y (model: 1-5 y)" in out


def test_the_domain_check_refuses_what_is_unlike_any_training_image_and_says_why():
    from dicom_node.model.inputs import to_model_input
    from dicom_node.model.pixels import read_unit_image

    model = load_model(SHIPPED_MODEL)
    typicality = model.typicality
    assert typicality is not None and len(typicality.held_out) >= 50
    child = to_model_input(read_unit_image(SAMPLES_DIR / "zhanglab_01_normal.dcm"), 32)
    square = -torch.ones_like(child)  # a bright square on black: a photo, not a radiograph
    quarter = model.image_size // 4
    square[..., quarter : 3 * quarter, quarter : 3 * quarter] = 1
    near, far = model.code_distances(torch.cat([child, square]))
    assert typicality.problem(float(near)) is None and typicality.p_value(float(near)) > 0.1
    message = typicality.problem(float(far))
    assert message.startswith("image unlike the model's training data (typicality p<0.01")


@pytest.mark.integration
def test_a_picture_unlike_any_chest_x_ray_ends_not_scored(make_node, pacs, tmp_path):
    node = make_node(worker=FAST_WORKER, destinations=destination(pacs.port))
    path = with_new_uids(SAMPLES_DIR / "zhanglab_01_normal.dcm", tmp_path / "square.dcm")
    ds = pydicom.dcmread(path)
    ds.StudyInstanceUID = pydicom.uid.generate_uid()
    ds.PatientAge = "003Y"  # in the population by its header
    rows, cols = np.mgrid[0 : ds.Rows, 0 : ds.Columns]  # a bright square on black: a photo
    square = (abs(rows - ds.Rows / 2) < ds.Rows / 4) & (abs(cols - ds.Columns / 2) < ds.Columns / 4)
    ds.PixelData = (square * 255).astype(np.uint8).tobytes()
    ds.save_as(path)
    assert storescu(node.port, path).returncode == 0
    assert wait_for(lambda: node.counts("studies").get("not_scored") == 1, timeout=60)
    (row,) = node.index.views.studies()
    assert row.reason.startswith("not scored: image unlike the model's training data")
    assert pacs.reports_for(ds.StudyInstanceUID) == 0
