"""The worklist in a real browser (Debian's chromium, headless, driven by Selenium through the
system chromedriver): the samples scored, the rows in reading order, a login, a dead letter
retried from the admin page, and screenshots of the worklist and a study page.

With DICOM_NODE_SCREENSHOTS=docs the screenshots are also written there (the README's)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from dicom_node.app.demo import send_samples
from dicom_node.app.pacs import ReceivingPacs
from dicom_node.testing.peers import free_port
from dicom_node.web.auth import hash_password
from tests.nodes import FAST_WORKER, wait_for

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        not (shutil.which("chromium") and shutil.which("chromedriver")),
        reason="chromium and chromium-driver (Debian) are needed; .ci/run installs them",
    ),
]
PASSWORD = "reading room 4"


@pytest.fixture
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for argument in ("--headless=new", "--no-sandbox", "--window-size=1366,768"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    driver.implicitly_wait(5)
    yield driver
    driver.quit()


def test_worklist_login_and_dead_letter_retry_in_a_browser(make_node, browser, tmp_path):
    from selenium.webdriver.common.by import By

    pacs = ReceivingPacs(tmp_path / "pacs")
    archive_port = free_port()  # the archive is down: its exports become dead letters
    node = make_node(
        worker={**FAST_WORKER, "export": {"max_attempts": 1, "backoff_s": 0.1}},
        destinations=[
            {"name": "pacs", "ae_title": "PACS", "host": "127.0.0.1", "port": pacs.port},
            {"name": "archive", "ae_title": "ARCHIVE", "host": "127.0.0.1", "port": archive_port},
        ],
        http={
            "enabled": True,
            "port": 0,
            "admin": {"users": [{"name": "admin", "password_hash": hash_password(PASSWORD)}]},
        },
    )
    archive = None
    try:
        assert send_samples(node.port) == 7
        assert wait_for(
            lambda: node.counts("exports").get("dead") == 5 and node.status().is_settled(),
            timeout=240,
        ), node.log_text()[-3000:]
        base = f"http://127.0.0.1:{node.running.web.port}"

        browser.get(base + "/")
        assert "/login" in browser.current_url  # admin users configured: a login first
        browser.find_element(By.NAME, "name").send_keys("admin")
        browser.find_element(By.NAME, "password").send_keys(PASSWORD)
        browser.find_element(By.CSS_SELECTOR, "#login button").click()
        rows = browser.find_elements(By.CSS_SELECTOR, "#worklist tbody tr[data-study]")
        assert len(rows) == 5
        shown = [
            (
                r.find_element(By.CSS_SELECTOR, "td.flag").text,
                float(r.find_elements(By.CSS_SELECTOR, "td.num")[0].text),
            )
            for r in rows
        ]
        expected = [(w.priority.value, round(w.score, 2)) for w in node.index.views.worklist()]
        assert shown == expected  # the index's reading order, as the page shows it
        assert [p for p, _ in shown] == sorted((p for p, _ in shown), key=lambda p: p != "urgent")
        thumbnails = browser.find_elements(By.CSS_SELECTOR, "#worklist img.thumb")
        loaded = (  # lazy images load once scrolled into view
            "arguments[0].scrollIntoView(); "
            "return arguments[0].complete && arguments[0].naturalWidth > 0"
        )
        for image in thumbnails:
            assert wait_for(lambda img=image: browser.execute_script(loaded, img), 10)
        browser.execute_script("window.scrollTo(0, 0)")
        screens = tmp_path / "screens"
        screens.mkdir()
        browser.save_screenshot(str(screens / "worklist.png"))

        rows[0].find_element(By.CSS_SELECTOR, "a").click()
        assert browser.find_element(By.ID, "timeline").text.count("received") >= 1
        assert "Anomaly score" in browser.find_element(By.ID, "report").text
        browser.save_screenshot(str(screens / "study.png"))

        archive = ReceivingPacs(tmp_path / "archive", port=archive_port)  # back up
        browser.get(base + "/admin")
        assert len(browser.find_elements(By.CSS_SELECTOR, "#dead-letters button")) == 6
        first = browser.find_element(By.CSS_SELECTOR, "#dead-letters tr:nth-child(2)")
        assert "export" in first.text and "archive" in first.text
        first.find_element(By.CSS_SELECTOR, "button").click()
        assert "pending again" in browser.find_element(By.CSS_SELECTOR, ".flash").text
        assert wait_for(lambda: node.counts("exports").get("sent") == 6, timeout=60)
        assert len(archive.received) == 2  # that study's SR and SC
        if target := os.environ.get("DICOM_NODE_SCREENSHOTS"):
            for shot in screens.iterdir():
                shutil.copy(shot, Path(target) / f"web_{shot.name}")
    finally:
        pacs.stop()
        if archive is not None:
            archive.stop()
