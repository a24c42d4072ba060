"""``adaptlab ui`` in headless Chromium (Playwright, the system's Chromium): start a tiny comparison from the form,
watch it run and its loss curves fill, open its report; bad form input is refused on the page. Screenshots go
to ``$ADAPTLAB_ARTIFACTS`` (a temporary folder when unset)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium (apt install chromium); .ci/run installs it")


@pytest.fixture
def page(tmp_path):
    from playwright.sync_api import sync_playwright

    from adaptlab.serve.server import listen, running
    from adaptlab.ui.app import create_app

    with running(create_app(tmp_path / "runs"), listen("127.0.0.1", 0)) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(url)
        yield page
        browser.close()


def shows(page, selector: str, text: str, timeout: int = 10_000) -> str:
    """Wait until ``selector``'s text contains ``text``; return the text."""
    page.wait_for_function("([s, t]) => (document.querySelector(s)?.textContent || '').includes(t)", arg=[selector, text], timeout=timeout)
    return page.locator(selector).inner_text()


def shots(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("ADAPTLAB_ARTIFACTS") or tmp_path / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def test_a_comparison_started_from_the_form_runs_live_and_ends_in_its_report(page, tmp_path, tiny_backbone, toy_csv):
    page.fill("#name", "ui-compare")
    page.fill("#data", str(toy_csv))
    page.fill("#strategies", "linear_probe,lora")
    page.fill("#backbone", str(tiny_backbone))
    page.fill("#epochs", "40")  # long enough that a 1 s poll sees a run mid-training on a fast machine
    page.click("#submit")
    shows(page, "#started", "adaptlab compare --data")
    entry = page.locator('section[data-entry="ui-compare"]')
    entry.and_(page.locator('[data-state="running"]')).wait_for(timeout=120_000)
    page.wait_for_function("() => [...document.querySelectorAll('tr[data-state=\"running\"]')].some(row => "
                           "Number(document.querySelector(`canvas[data-path$=\"${row.dataset.run}.partial\"]`)?.dataset.points) > 0)",
                           timeout=120_000)  # a run still training, its curve already drawn
    running_points = page.evaluate("() => Math.max(...[...document.querySelectorAll('canvas')].map(c => Number(c.dataset.points || 0)))")
    page.screenshot(path=str(shots(tmp_path) / "ui-running.png"), full_page=True)
    entry.and_(page.locator('[data-state="finished"]')).wait_for(timeout=300_000)
    page.wait_for_function("() => document.querySelectorAll('section[data-entry=\"ui-compare\"] tr[data-state=\"finished\"]').length == 2")
    finished_points = page.evaluate("() => [...document.querySelectorAll('canvas')].map(c => Number(c.dataset.points || 0))")
    assert min(finished_points) > 0 and max(finished_points) >= running_points
    page.screenshot(path=str(shots(tmp_path) / "ui-finished.png"), full_page=True)
    with page.expect_popup() as popup:
        entry.locator("a.report").click()
    report = popup.value
    report.wait_for_load_state()
    assert "Recommendation" in report.content()
    report.screenshot(path=str(shots(tmp_path) / "ui-report.png"), full_page=True)


def test_bad_form_input_is_refused_on_the_page(page, toy_csv):
    page.fill("#name", "../outside")
    page.fill("#data", str(toy_csv))
    page.click("#submit")
    shows(page, "#form-error", "name:")
    page.fill("#name", "no-data")
    page.fill("#data", "")
    page.click("#submit")
    shows(page, "#form-error", "give a recipe or data")
    page.fill("#name", "missing-file")
    page.fill("#data", "/nowhere/data.csv")
    page.click("#submit")
    failed = page.locator('section[data-entry="missing-file"][data-state="failed"]')
    failed.wait_for(timeout=60_000)
    assert "error: " in failed.inner_text() and "/nowhere/data.csv" in failed.inner_text()
