"""`register --report` (issue #14 item 3): report.html and its PNG figures, on the bundled sample pair with the
classical backend, as a user runs it. The figures are checked for what they must show, not only for existing."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from PIL import Image

from promptregister import sample_data
from promptregister.cli import main
from promptregister.io.segmentation import pair_colour
from promptregister.report.images import GALLERY_SCALE, PIXELS_PER_MM
from promptregister.report.page import FIGURES


@pytest.fixture(scope="module")
def reported(tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "out"
    fixed = sample_data.sample_path(f"{sample_data.FIXED}_t1.nii.gz")
    moving = sample_data.sample_path(f"{sample_data.MOVING}_t1.nii.gz")
    arguments = ["register", "--fixed", str(fixed), "--moving", str(moving), "--model", "classical", "--quiet",
                 "--out-dir", str(out), "--report"]
    for point in sample_data.QUICK_START_POINTS:
        arguments += ["--point", point]
    assert main(arguments) == 0
    return out


def picture(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB")).astype(float) / 255


def test_the_report_is_one_offline_page_with_its_figures(reported):
    text = (reported / "report.html").read_text()
    for name, _ in FIGURES.values():
        assert f"src='{name}'" in text and (reported / name).is_file()
    assert not re.search(r"https?://|<script|@import|url\(", text)  # nothing fetched, nothing run
    sidecar = json.loads((reported / "pairs.json").read_text())
    assert text.count("<tr><td class='name'><span class='swatch'") == len(sidecar["pairs"])
    assert "Do-no-harm check" in text and "before" in text and "after" in text


def test_overlay_rows_show_the_alignment_improving(reported):
    """Fixed is magenta (red and blue channels), moving green: where they disagree red and green differ. After
    registration they must differ less than before (this pair improves: Dice 0.714 -> about 0.75)."""
    overlay = picture(reported / "report_overlay.png")
    height = (overlay.shape[0] - 6) // 2
    before, after = overlay[:height], overlay[-height:]
    disagreement = [np.abs(rows[..., 0] - rows[..., 1]).mean() for rows in (before, after)]
    assert disagreement[1] < 0.9 * disagreement[0], disagreement
    assert overlay.shape[1] >= 3 * 64 * PIXELS_PER_MM  # three planes of the 64 mm crop at the display scale


def test_each_pair_is_drawn_in_its_colour_on_both_images(reported):
    """The gallery: per pair, fixed tile | separator in the pair's colour | moving tile; the outline of the pair's
    region must be drawn in that colour on both tiles."""
    pairs = json.loads((reported / "pairs.json").read_text())["pairs"]
    figure = picture(reported / "report_pairs.png")
    tile = int(64 * GALLERY_SCALE)  # the sample images are 64 mm across
    for index in range(len(pairs)):
        coloured = np.abs(figure - np.array(pair_colour(index))).max(axis=-1) < 0.02
        separator = np.flatnonzero(coloured.sum(axis=0) >= tile)
        assert len(separator) == 2, f"pair {index + 1}: its separator"
        rows = np.flatnonzero(coloured[:, separator[0]])
        left = coloured[rows.min():rows.max() + 1, separator[0] - tile:separator[0]]
        right = coloured[rows.min():rows.max() + 1, separator[-1] + 1:separator[-1] + 1 + tile]
        assert left.sum() > 4 and right.sum() > 4, f"pair {index + 1}: outlines on the fixed and moving tiles"


def test_the_jacobian_map_is_white_where_the_field_keeps_volume_and_has_no_folding(reported):
    figure = picture(reported / "report_jacobian.png")
    planes = figure[:, :-(16 + 6)]  # the colour bar is the last 16 pixels, after a gap
    assert not (planes.max(axis=-1) < 0.01).any()  # no black: nothing folds (the summary says 0 %)
    summary_text = (reported / "report.html").read_text()
    assert "folding 0.000% of voxels" in summary_text


def test_large_images_are_shown_at_a_bounded_size():
    from promptregister.geometry import Geometry
    from promptregister.report.images import MAX_PLANE_PX, display_scale, plane

    ct = Geometry.create((512, 512, 300), (0.8, 0.8, 1.0))
    picture = plane(np.zeros(ct.shape, np.float32), ct, "coronal", (150, 256, 256), 1)
    assert max(picture.shape) <= MAX_PLANE_PX and display_scale(ct) < PIXELS_PER_MM
    crop = Geometry.create((64, 64, 64), (1.0, 1.0, 1.0))
    assert display_scale(crop) == PIXELS_PER_MM
