"""The dashboard and a case page in headless Chromium: no console errors (a CSP violation
would be one), the case table sorts and filters, injected markup stays text, screenshots.

Uses Debian's chromium + chromium-driver through an explicit Service path, so
selenium-manager never downloads anything. Skipped when Chromium is missing, except under
CI=true (tests/conftest.py).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from test_report_fixture import CASE_A, CASE_P, SCAN1, XSS_USER, build

pytestmark = pytest.mark.browser

CHROMEDRIVER = "/usr/bin/chromedriver"
SHOTS = Path("/tmp/emraudit-shots")


@pytest.fixture
def driver(tmp_path):
    if not os.path.exists(CHROMEDRIVER) and os.environ.get("CI", "").lower() != "true":
        pytest.skip("chromium-driver not installed")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run", "--window-size=1400,1000",
                f"--user-data-dir={tmp_path / 'chrome-profile'}"):
        opts.add_argument(arg)
    opts.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    d = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    yield d
    d.quit()


def _errors(d) -> list:
    return [e for e in d.get_log("browser") if e.get("level") in ("SEVERE", "ERROR")]


def _no_alert(d) -> None:
    from selenium.common.exceptions import NoAlertPresentException
    with pytest.raises(NoAlertPresentException):
        d.switch_to.alert.text  # noqa: B018 - raises when no script ran alert()


def _shot(d, path: Path) -> None:
    d.execute_script("window.scrollTo(0, 0)")
    height = d.execute_script("return document.documentElement.scrollHeight")
    d.set_window_size(1400, min(max(height, 800), 6000))
    d.save_screenshot(str(path))
    d.set_window_size(1400, 1000)


def _ids(d) -> list[str]:
    return [tr.get_attribute("data-id")
            for tr in d.find_elements("css selector", "#cases-table tbody tr")]


def test_dashboard_and_case_page_in_chromium(tmp_path, driver):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    cfg, store, lake = build(tmp_path / "site", lang="zh")
    from emraudit.reports import write_scan_reports
    out = write_scan_reports(cfg, store, lake, SCAN1)
    d = driver

    d.get((out / "index.html").as_uri())
    assert _errors(d) == []
    _no_alert(d)
    # rendered by the inline script from the JSON block; the payload is plain text
    assert _ids(d) == [CASE_A, CASE_P]                         # severity, then score
    cells = d.find_elements(By.CSS_SELECTOR, "#cases-table tbody td")
    assert any(XSS_USER in c.text for c in cells)
    assert d.execute_script("return document.querySelectorAll('main img').length") == 0

    # sorting: by events (descending first, then ascending), by case id
    head = d.find_element(By.CSS_SELECTOR, '#cases-table th[data-key="events"]')
    head.click()
    assert _ids(d) == [CASE_A, CASE_P] and head.get_attribute("aria-sort") == "descending"
    head.click()
    assert _ids(d) == [CASE_P, CASE_A] and head.get_attribute("aria-sort") == "ascending"
    d.find_element(By.CSS_SELECTOR, '#cases-table th[data-key="id"]').click()
    assert _ids(d) == sorted([CASE_A, CASE_P])

    # filtering: free text, then a status select; the counter follows
    box = d.find_element(By.ID, "f-q")
    box.send_keys("U001")
    assert _ids(d) == [CASE_P]
    assert d.find_element(By.ID, "cases-shown").text == "1"
    box.clear()
    box.send_keys(" ")   # clear() sends no input event: type then delete
    box.send_keys("\b")
    assert len(_ids(d)) == 2
    Select(d.find_element(By.ID, "f-status")).select_by_value("resolved")
    assert _ids(d) == [CASE_A]
    Select(d.find_element(By.ID, "f-status")).select_by_value("")
    _shot(d, tmp_path / "dashboard.png")

    # follow the link to the VIP case
    d.find_element(By.CSS_SELECTOR, f'#cases-table a[href="cases/{CASE_P}.html"]').click()
    assert d.current_url.endswith(f"cases/{CASE_P}.html")
    assert _errors(d) == []
    _no_alert(d)
    assert XSS_USER in d.find_element(By.ID, "user-name").text
    assert d.execute_script("return document.querySelectorAll('img, script').length") == 0
    assert len(d.find_elements(By.CSS_SELECTOR, "svg.chart")) == 2
    assert len(d.find_elements(By.CSS_SELECTOR, "#events-table tbody tr")) == 3
    _shot(d, tmp_path / "case.png")

    SHOTS.mkdir(exist_ok=True)
    for name in ("dashboard.png", "case.png"):
        shutil.copy(tmp_path / name, SHOTS / name)
