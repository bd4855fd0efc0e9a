"""The review app in headless Chromium against a live server on 127.0.0.1: log in, filter
the queue, open a case, record a disposition, confirm the next case and record its
rectification; no console errors (a CSP violation would be one). Screenshots go to
/tmp/emraudit-shots. Skipped when Chromium is missing, except under CI=true
(tests/conftest.py)."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from emraudit.cases import list_cases
from emraudit.config import load_config
from emraudit.store import Store
from test_browser import SHOTS, _errors, driver  # noqa: F401 - fixture
from web_helpers import PW
from web_site import cheap_hashes, web_master, web_site  # noqa: F401 - fixtures

pytestmark = pytest.mark.browser


@pytest.fixture
def live(web_site):
    import uvicorn

    from emraudit.web import create_app
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(load_config(web_site)), host="127.0.0.1",
                                           port=port, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(100):
        if server.started:
            break
        time.sleep(0.05)
    assert server.started
    yield f"http://127.0.0.1:{port}", web_site
    server.should_exit = True
    thread.join(10)


def test_work_a_case_in_chromium(live, driver):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    from selenium.webdriver.support.ui import WebDriverWait

    base, cfg = live
    d = driver

    def until_url(part: str) -> None:
        WebDriverWait(d, 10).until(lambda drv: part in drv.current_url)

    SHOTS.mkdir(exist_ok=True)
    d.set_window_size(1366, 768)                     # a laptop screen
    d.get(base + "/cases")
    assert "/login" in d.current_url
    d.find_element(By.ID, "username").send_keys("rev1")
    d.find_element(By.ID, "password").send_keys(PW)
    d.find_element(By.ID, "login-submit").click()
    until_url("/cases")
    assert d.current_url.endswith("/cases")
    rows = d.find_elements(By.CSS_SELECTOR, "#queue-table tbody tr[data-id]")
    assert len(rows) == len(list_cases(Store(load_config(cfg).store_url), status="open"))
    # no horizontal scrolling of the page itself on a laptop screen
    assert d.execute_script("return document.documentElement.scrollWidth") <= 1366
    d.save_screenshot(str(SHOTS / "web-queue.png"))
    Select(d.find_element(By.ID, "f-severity")).select_by_value("critical")
    d.find_element(By.ID, "apply-filters").click()
    until_url("severity=critical")
    assert "severity=critical" in d.current_url
    sev = [e.get_attribute("class") for e in
           d.find_elements(By.CSS_SELECTOR, "#queue-table tbody tr td:nth-child(2) .sev")]
    assert sev and all("sev-critical" in s for s in sev)
    first = d.find_element(By.CSS_SELECTOR, "#queue-table tbody tr[data-id] a")
    cid = first.text
    first.click()
    until_url(f"/cases/{cid}")
    assert d.current_url.endswith(f"/cases/{cid}")
    assert d.find_element(By.ID, "events-table")
    d.save_screenshot(str(SHOTS / "web-case.png"))
    d.find_element(By.ID, "d-false_positive").click()
    d.find_element(By.ID, "note").send_keys("值班期间的正常查看")
    d.find_element(By.ID, "decide").click()
    until_url("done=")
    assert f"/cases/{cid}?done=false_positive" in d.current_url
    assert d.find_element(By.ID, "recorded").is_displayed()
    assert "值班期间的正常查看" in d.page_source
    d.find_element(By.ID, "next-after").click()
    WebDriverWait(d, 10).until(lambda drv: "done=" not in drv.current_url)
    assert "/cases/C" in d.current_url and cid not in d.current_url
    assert _errors(d) == []
    row = list_cases(Store(load_config(cfg).store_url), status="resolved")
    assert list(zip(row["case_id"], row["disposition"], row["reviewer"])) == \
        [(cid, "false_positive", "rev1")]
    # confirm the next case, then record its rectification with one click on the form
    nxt = d.current_url.rsplit("/", 1)[-1]
    d.find_element(By.ID, "d-confirmed").click()
    d.find_element(By.ID, "note").send_keys("属实")
    d.find_element(By.ID, "decide").click()
    until_url("done=confirmed")
    d.find_element(By.ID, "r-in_progress").click()
    d.find_element(By.ID, "measure").send_keys("已约谈")
    d.find_element(By.ID, "rectify").click()
    until_url("done=rectified")
    assert d.find_element(By.ID, "rectified").is_displayed()
    assert d.find_element(By.ID, "rect-status").text.startswith("整改中")
    d.save_screenshot(str(SHOTS / "web-rectified.png"))
    assert _errors(d) == []
    done = list_cases(Store(load_config(cfg).store_url), status="resolved")
    done = done[done["case_id"] == nxt].iloc[0]
    assert (done["rectification_status"], done["rectification_measure"]) == \
        ("in_progress", "已约谈")
