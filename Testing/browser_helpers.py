"""Driving the browser app as a user does, shared by test_web_browser.py and bench/web_latency.py: start
`promptregister web` as a user would, find where a structure shows on a view, scroll to it, and read the views'
pixels as the browser shows them."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np
from scipy import ndimage

from promptregister.io import read_label_map

VIEWS = ("Fixed", "Moving", "Overlay")


def chromium_path() -> Optional[str]:
    """Debian's chromium (apt-get install chromium), or PROMPTREGISTER_CHROMIUM."""
    return os.environ.get("PROMPTREGISTER_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


def start_server(arguments: List[str], log: Path) -> Tuple[subprocess.Popen, str, float]:
    """`promptregister web ARGUMENTS --port 0`: the process, the address it printed (with its token) and the
    seconds from start until it said it serves."""
    started = time.monotonic()
    process = subprocess.Popen([sys.executable, "-m", "promptregister", "web", "--port", "0", *arguments],
                               stdout=subprocess.PIPE, stderr=log.open("w"), text=True)
    while True:
        line = process.stdout.readline()
        if not line:
            lines = [text for text in log.read_text().splitlines() if "error" in text.lower()]
            raise RuntimeError(f"the server ended before serving (exit {process.wait()}): {lines[-5:]}")
        found = re.search(r"(http://\S+)", line)
        if found:
            return process, found.group(1), time.monotonic() - started


def geometry(page, name: str) -> dict:
    return page.evaluate("() => window.trame.state.get('view_geometry')")[name]


def view_image(page, name: str):
    return page.locator("img").nth(VIEWS.index(name))


def frame(page, name: str) -> np.ndarray:
    """The view as the browser shows it (RGB)."""
    from io import BytesIO

    from PIL import Image

    return np.asarray(Image.open(BytesIO(view_image(page, name).screenshot())).convert("RGB")).astype(int)


def page_pixel(page, name: str, ras) -> tuple:
    """Where a RAS point on the view's slice shows on the page (the view's pixel -> RAS matrix, inverted)."""
    shown = geometry(page, name)
    matrix = np.array(shown["xy_to_ras"]).reshape(4, 4)
    xy, *_ = np.linalg.lstsq(matrix[:3, :2], np.asarray(ras) - matrix[:3, 3], rcond=None)
    box = view_image(page, name).bounding_box()
    width, height = shown["size"]
    return box["x"] + xy[0] * box["width"] / width, box["y"] + (height - xy[1]) * box["height"] / height


def scroll_to(page, name: str, offset: float) -> None:
    """Scroll the view with the mouse wheel (one notch, one slice) until it shows `offset`. Each notch waits for
    the page to hear of the new slice (its state arrives up to 100 ms later), so the wheel never overshoots."""
    box = view_image(page, name).bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    slice_at = lambda: geometry(page, name)["xy_to_ras"][11]  # noqa: E731
    for _ in range(200):
        current = slice_at()
        if abs(current - offset) < 0.5:
            time.sleep(0.3)
            if abs(slice_at() - offset) < 0.5:
                return
            continue
        page.mouse.wheel(0, -100 if offset > current else 100)
        deadline = time.monotonic() + 3
        while slice_at() == current and time.monotonic() < deadline:
            time.sleep(0.03)
    raise AssertionError(f"could not scroll {name} to {offset} (at {slice_at()})")


def structure_point(label_path: Path, label: int = 1, slice_shift: int = 0):
    """RAS of the most interior voxel of `label` on its largest axial cross-section (or `slice_shift` slices from
    it): where a user would click."""
    labels = read_label_map(label_path)
    mask = labels.array == label
    k = int(np.argmax(mask.sum(axis=(1, 2)))) + slice_shift
    if not mask[k].any():
        raise ValueError(f"label {label} is absent {slice_shift} slices from its largest cross-section")
    depth = ndimage.distance_transform_edt(mask[k])
    j, i = np.unravel_index(np.argmax(depth), depth.shape)
    lps = labels.geometry.index_to_physical(np.array([i, j, k], float))
    return [-float(lps[0]), -float(lps[1]), float(lps[2])]


def colour_pixels(image: np.ndarray, colour) -> int:
    """Pixels tinted towards a pair's colour. The slices are grey, so a pixel's colour minus its own grey level
    points towards the segment drawn over it; the views arrive as JPEG, which blurs thin outlines and blends the
    fill, so this compares directions (cosine above 0.9, at least 20 grey levels of tint), not exact colours."""
    tint = image - image.mean(axis=-1, keepdims=True)
    target = np.asarray(colour, float) - np.mean(colour)
    strength = np.linalg.norm(tint, axis=-1)
    cosine = (tint @ target) / (np.maximum(strength, 1e-9) * np.linalg.norm(target))
    return int(((strength > 20) & (cosine > 0.9)).sum())
