"""The web face over real HTTP: health and metrics that move with the work, pages behind a
login, failed logins audited and limited, admin actions CSRF-checked and audited."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import httpx
import pytest

from dicom_node.web.auth import hash_password
from tests.nodes import FAST_WORKER, destination, send_study, wait_for

pytestmark = pytest.mark.integration
PASSWORD = "correct horse battery"


def web_node(make_node, pacs, **sections):
    node = make_node(
        worker=FAST_WORKER,
        destinations=destination(pacs.port),
        http={
            "enabled": True,
            "port": 0,
            "admin": {
                "users": [{"name": "admin", "password_hash": hash_password(PASSWORD)}],
                "max_failed_logins": 3,
            },
        },
        **sections,
    )
    return node, f"http://127.0.0.1:{node.running.web.port}"


def samples(text: str) -> dict[str, float]:
    """`name{labels}` -> value of every dicom_node sample in a Prometheus text page."""
    found = {}
    for line in text.splitlines():
        if line.startswith("dicom_node"):
            name, value = line.rsplit(" ", 1)
            found[name] = float(value)
    return found


def csrf_of(page: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', page).group(1)


def logged_in(base: str) -> httpx.Client:
    client = httpx.Client(base_url=base)
    token = csrf_of(client.get("/login").text)
    answer = client.post(
        "/login", data={"name": "admin", "password": PASSWORD, "next": "/", "csrf": token}
    )
    assert answer.status_code == 303 and answer.headers["location"] == "/"
    return client


def test_metrics_and_health_move_with_the_work(make_node, pacs, tmp_path):
    node, base = web_node(make_node, pacs)
    assert httpx.get(f"{base}/healthz").json()["status"] == "ok"
    before = samples(httpx.get(f"{base}/metrics").text)
    study = send_study(node.port, tmp_path)
    assert wait_for(lambda: pacs.reports_for(study) == 1, timeout=60)
    done = "dicom_node_time_to_result_seconds_count"  # observed last, once the export is sent

    def scrape_when_done():
        page = samples(httpx.get(f"{base}/metrics").text)
        return page if page.get(done, 0.0) > before.get(done, 0.0) else None

    after = wait_for(scrape_when_done, timeout=30)
    assert after, "the export's metrics never moved"

    def moved(name: str) -> float:
        return after.get(name, 0.0) - before.get(name, 0.0)

    assert moved('dicom_node_c_store_total{status="0x0000"}') == 1
    assert moved("dicom_node_received_bytes_total") > 100_000
    assert moved('dicom_node_associations_total{outcome="accepted"}') == 1
    assert moved("dicom_node_scoring_seconds_count") == 1
    assert moved("dicom_node_export_seconds_count") == 1
    assert moved("dicom_node_time_to_result_seconds_count") == 1
    assert after['dicom_node_studies{state="scored"}'] == 1
    assert after['dicom_node_exports{state="sent"}'] == 1
    assert after["dicom_node_queue_depth"] == 0 and after["dicom_node_index_up"] == 1
    assert 'dicom_node_model_info{name="alpha-gan-zhanglab"' in "\n".join(after)
    ready = httpx.get(f"{base}/readyz")
    assert ready.status_code == 200, ready.text
    names = {c["name"] for c in ready.json()["checks"]}
    assert {"index", "data_dir", "model", "loop scoring", "loop delivery"} <= names


def test_pages_need_a_login_and_failed_logins_are_audited_and_limited(make_node, pacs):
    node, base = web_node(make_node, pacs)
    assert httpx.get(f"{base}/").status_code == 303  # to /login
    assert httpx.get(f"{base}/api/worklist").status_code == 401
    assert httpx.get(f"{base}/readyz").status_code == 200  # health stays open
    admin = logged_in(base)
    assert admin.get("/api/worklist").status_code == 200
    intruder = httpx.Client(base_url=base)
    token = csrf_of(intruder.get("/login").text)
    codes = [
        intruder.post(
            "/login", data={"name": "admin", "password": "guess", "next": "/", "csrf": token}
        ).status_code
        for _ in range(4)
    ]
    assert codes == [401, 401, 401, 429]
    trail = [json.loads(line) for line in (node.data_dir / "audit.log").read_text().splitlines()]
    failed = [e for e in trail if e["event"] == "login_failed"]
    assert [e["outcome"] for e in failed] == ["failure"] * 3 + ["rate_limited"]
    assert all(e["atna_event_id"] == "110114" and "patient_id" not in e for e in failed)
    assert any(e["event"] == "login" and e["user"] == "admin" for e in trail)


def test_admin_actions_are_csrf_checked_and_audited(make_node, pacs, tmp_path):
    node, base = web_node(make_node, pacs)
    admin = logged_in(base)
    token = csrf_of(admin.get("/admin").text)
    assert admin.post("/admin/pause/0", data={}).status_code == 403  # no CSRF token
    assert httpx.post(f"{base}/admin/pause/0", data={"csrf": token}).status_code in (303, 403)
    assert not node.index.admin.scoring_paused()  # neither of those did anything
    assert admin.post("/admin/pause/0", data={"csrf": token}).status_code == 303
    assert node.index.admin.scoring_paused()
    study = send_study(node.port, tmp_path)
    assert wait_for(lambda: node.counts("jobs").get("queued") == 1, timeout=30)
    assert node.counts("jobs") == {"queued": 1}  # paused: nobody claims it
    assert admin.post("/admin/resume/0", data={"csrf": token}).status_code == 303
    assert wait_for(lambda: pacs.reports_for(study) == 1, timeout=60)
    (row,) = admin.get("/api/worklist").json()
    answer = admin.post(f"/admin/rescore/{row['study_id']}", data={"csrf": token})
    assert answer.status_code == 303
    assert wait_for(lambda: pacs.reports_for(study) == 2, timeout=60)  # version 2's SR
    page = admin.get(f"/studies/{row['study_id']}").text
    assert "re-score requested by admin" in page and "Timeline" in page
    trail = [json.loads(line) for line in (node.data_dir / "audit.log").read_text().splitlines()]
    actions = [(e["action"], e["outcome"]) for e in trail if e["event"] == "admin_action"]
    assert actions == [("pause", "success"), ("resume", "success"), ("rescore", "success")]
    assert any(e["event"] == "instance_stored" and e["patient_id"] for e in trail)


def test_hash_password_makes_a_hash_the_login_accepts():
    made = subprocess.run(
        [sys.executable, "-m", "dicom_node.app.cli", "hash-password"],
        input=PASSWORD + "\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert made.returncode == 0, made.stderr
    import bcrypt

    assert bcrypt.checkpw(PASSWORD.encode(), made.stdout.strip().encode())
