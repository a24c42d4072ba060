"""report.html: one self-contained page; loads in a real headless Chromium (slow, where one is installed)."""

from __future__ import annotations

import re
import subprocess

import pytest

from adaptlab.reporting.html import chromium, pareto, screenshot


def test_pareto_front_keeps_only_unbeaten_runs():
    points = [(1, 0.70), (10, 0.80), (5, 0.60), (100, 0.81), (50, 0.79)]
    assert pareto(points) == [0, 1, 3]  # (5, .60) and (50, .79) are beaten by cheaper, better runs


@pytest.fixture(scope="module")
def comparison(tiny_backbone, toy_csv, tmp_path_factory):
    from adaptlab.reporting.comparison import compare

    out = tmp_path_factory.mktemp("cmp") / "c"
    compare(["linear_probe", "lora", "full"], data=str(toy_csv), backbone=str(tiny_backbone), output=out,
            overrides={"train.epochs": 2, "train.progress": False})
    return out


def test_the_page_is_self_contained(comparison):
    page = (comparison / "report.html").read_text()
    assert "<table>" in page and "Recommendation" in page
    assert not re.search(r'src="(?!data:)', page) and "http" not in re.sub(r"<a [^>]*>", "", page)  # nothing fetched
    assert page.count("data:image/png;base64,") >= 3  # report.md's plots, the Pareto figure, the loss curves


@pytest.mark.slow
@pytest.mark.skipif(chromium() is None, reason="needs Chromium (apt install chromium)")
def test_the_page_loads_in_a_headless_browser(comparison):
    dom = subprocess.run([chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", (comparison / "report.html").as_uri()],
                         capture_output=True, text=True, timeout=120, check=True).stdout
    first = dom.split("<table>", 1)[1].split("</table>", 1)[0]
    assert first.count("<tr>") == 1 + 3  # a header and one row per strategy
    assert screenshot(comparison / "report.html", comparison / "report.png")
    assert (comparison / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
