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


# a private-use code point has no glyph in any font: what the browser draws for it is the
# "tofu" box that a Chinese character becomes when no CJK font is installed
_GLYPHS_JS = """
const font = getComputedStyle(arguments[0]).font;
function draw(ch) {
  const c = document.createElement('canvas'); c.width = 48; c.height = 48;
  const x = c.getContext('2d'); x.font = font.replace(/\\d+px/, '32px');
  x.fillStyle = '#000'; x.textBaseline = 'top'; x.fillText(ch, 4, 4);
  return Array.from(x.getImageData(0, 0, 48, 48).data).join(',');
}
const box = draw('\\ue000');
return Array.from(arguments[1]).map(ch => draw(ch) !== box);
"""


def test_chinese_text_is_drawn_with_a_cjk_font_not_boxes(tmp_path, driver):
    """The case page's font stack finds a CJK font (scripts/test.sh installs Debian's
    fonts-noto-cjk): every character of the headline is drawn unlike the missing-glyph box.
    The screenshot is kept in /tmp/emraudit-shots for a look."""
    from selenium.webdriver.common.by import By
    from emraudit.reports import write_scan_reports
    cfg, store, lake = build(tmp_path / "site", lang="zh")
    out = write_scan_reports(cfg, store, lake, SCAN1)
    driver.get((out / "cases" / f"{CASE_P}.html").as_uri())
    summary = driver.find_element(By.ID, "case-summary")
    chars = "".join(ch for ch in summary.text if "\u4e00" <= ch <= "\u9fff")[:20]
    assert len(chars) >= 10
    assert driver.execute_script(_GLYPHS_JS, summary, chars) == [True] * len(chars)
    family = driver.execute_script("return getComputedStyle(arguments[0]).fontFamily", summary)
    assert family.startswith('"Noto Sans CJK SC"')        # zh pages put the CJK face first
    _shot(driver, tmp_path / "case-zh.png")
    SHOTS.mkdir(exist_ok=True)
    shutil.copy(tmp_path / "case-zh.png", SHOTS / "case-zh.png")


_WRAPPED_WORDS_JS = """
const out = [];
for (const td of arguments[0].querySelectorAll('tbody td:first-child')) {
  const node = td.firstChild; if (!node || node.nodeType !== 3) continue;
  const re = /\\S+/g; let m;
  while ((m = re.exec(node.data)) !== null) {
    const r = document.createRange(); r.setStart(node, m.index);
    r.setEnd(node, m.index + m[0].length);
    if (r.getClientRects().length > 1) out.push(m[0]);
  }
}
return out;
"""


@pytest.mark.parametrize("width", [1400, 1000, 700])
def test_english_item_card_never_breaks_inside_a_word(tmp_path, driver, width):
    from selenium.webdriver.common.by import By
    from emraudit.reports import write_scan_reports
    cfg, store, lake = build(tmp_path / "site", lang="en")
    out = write_scan_reports(cfg, store, lake, SCAN1)
    driver.set_window_size(width, 1000)
    driver.get((out / "index.html").as_uri())
    card = driver.find_element(By.ID, "card-item")
    assert "EMR system management" in card.text
    assert driver.execute_script(_WRAPPED_WORDS_JS, card) == []


def test_anomaly_drivers_and_repeated_findings_fit_the_page(tmp_path, driver):
    """An anomaly's drivers table stays inside its finding's card; a detector's repeated
    findings are collapsed under its first one."""
    import json

    import pandas as pd
    from selenium.webdriver.common.by import By
    from emraudit.detectors.base import findings_frame
    from emraudit.reports import write_scan_reports
    from emraudit.store import findings
    from test_report_fixture import TZ, _rows
    cfg, store, lake = build(tmp_path / "site", lang="zh")
    drivers = [{"feature": f, "value": 1849.0 * (i + 1), "peer_median": 0.0,
                "peer_p99": 1.5, "own_median": 0.0, "own_days": 28, "item": "8",
                "peer_group": "physician|骨科", "event_count": 40,
                "event_ids": [f"b{k:02d}" for k in range(40)],
                "peer_tail_p": 0.0011, "own_tail_p": 0.002}
               for i, f in enumerate(("output_records", "unexplained", "unexplained_7d",
                                      "burst_patients", "new_patients", "sensitive_accesses"))]
    rows = []
    for day in ("2025-07-03", "2025-07-04", "2025-07-05"):
        rows.append(dict(
            key=f"U002|{day}", user_id="U002", patient_id="", event_ids=["b00", "b01"],
            start=pd.Timestamp(f"{day} 02:00", tz=TZ), end=pd.Timestamp(f"{day} 02:19", tz=TZ),
            severity="high", score=9.0, rectification_item="8", message_id="anomaly.user_day",
            message_args={"user": "U002", "role": "physician", "department": "骨科",
                          "day": day, "percent": 100.0,
                          "drivers": [{k: d[k] for k in ("feature", "value", "peer_median",
                                                         "peer_p99", "own_median",
                                                         "own_days")} for d in drivers]},
            evidence={"model": "ecod", "drivers": drivers, "peer_group": "physician|骨科",
                      "feature_values": {d["feature"]: d["value"] for d in drivers}}))
    f = findings_frame("anomaly.user_day", rows, default_item="8", default_severity="high")
    now = pd.Timestamp("2025-07-03 12:00", tz="UTC").to_pydatetime()
    with store.begin() as c:
        c.execute(findings.insert(), _rows(findings, [dict(
            r, event_ids=json.dumps(r["event_ids"]),
            evidence=json.dumps(r["evidence"], ensure_ascii=False),
            message_args=json.dumps(r["message_args"], ensure_ascii=False),
            case_id=CASE_A, first_scan=SCAN1, last_scan=SCAN1, created=now, updated=now)
            for r in f.to_dict("records")]))
    out = write_scan_reports(cfg, store, lake, SCAN1)
    driver.set_window_size(1000, 1000)
    driver.get((out / "cases" / f"{CASE_A}.html").as_uri())
    firsts = driver.find_elements(By.CSS_SELECTOR, "div.finding:not(.repeat)")
    assert len(firsts) == 2                        # bulk.volume and anomaly.user_day
    repeats = driver.find_elements(By.CSS_SELECTOR, "details.repeats")
    assert len(repeats) == 1 and repeats[0].get_attribute("open") is None
    assert len(repeats[0].find_elements(By.CSS_SELECTOR, "div.finding.repeat")) == 2
    assert not repeats[0].find_element(By.CSS_SELECTOR, "div.finding.repeat").is_displayed()
    # nothing sticks out of a finding's card, and the page does not scroll sideways
    over = driver.execute_script(
        "return Array.from(document.querySelectorAll('div.finding')).filter("
        "f => f.offsetParent !== null && f.scrollWidth > f.clientWidth + 1).length")
    assert over == 0
    assert driver.execute_script(
        "return document.documentElement.scrollWidth <= window.innerWidth")
    table = driver.find_element(By.CSS_SELECTOR, "div.finding:not(.repeat) table.ev-list")
    assert "打印导出记录数" in table.text and "b00" not in table.text   # labelled, no id lists
    _shot(driver, tmp_path / "anomaly-zh.png")
    SHOTS.mkdir(exist_ok=True)
    shutil.copy(tmp_path / "anomaly-zh.png", SHOTS / "anomaly-zh.png")
