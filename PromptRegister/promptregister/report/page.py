"""report.html: the figures (PNG files beside it), the per-pair table and the do-no-harm check, in plain HTML
and inline CSS, so that it opens offline in any browser and can be mailed with its PNGs."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Dict, List, Optional

from ..io.segmentation import pair_colour
from ..volume import Volume
from .figures import alignment_figures, centre_voxel, jacobian_figure, pair_figure
from .images import save_png

REPORT_FILE = "report.html"
FIGURES = {
    "overlay": ("report_overlay.png", "Alignment as a colour overlay: the fixed image in magenta, the moving image "
                "in green; grey where they agree. Top row before registration, bottom row after."),
    "checkerboard": ("report_checkerboard.png", "Checkerboard of fixed and moving squares: edges that run on "
                     "across the squares are aligned. Top row before registration, bottom row after."),
    "pairs": ("report_pairs.png", "The region pairs, in the table's order and colours: for each pair the fixed "
              "image through its fixed region (left) beside the moving image through its moving region (right), "
              "each in the plane across the region's thinnest side (a one-slice region's own slice)."),
    "jacobian": ("report_jacobian.png", "Jacobian determinant of the transform, log2 scale: white = volume kept, "
                 "blue = compressed to half, red = stretched to double; black = folding (determinant <= 0)."),
}
"""Figure key -> (file name, caption)."""

STYLE = """body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#f2f2f2}td.name{text-align:left}.swatch{display:inline-block;width:1em;height:1em;margin-right:.4em;
vertical-align:middle}.bar{height:1.1em;display:inline-block;vertical-align:middle}.warn{color:#a00;font-weight:bold}
figure{margin:1.5em 0}figcaption{color:#555;max-width:800px}img{max-width:100%}"""


def write_report(result, fixed: Volume, moving: Volume, folder, title: str = "PromptRegister registration",
                 model: Optional[str] = None) -> List[str]:
    """Write report.html and its PNG figures into `folder`; returns the names written."""
    folder = Path(folder)
    pairs = list(result.pairs)
    fixed_masks = [pair.fixed_mask for pair in pairs]
    centre = centre_voxel(fixed_masks, fixed.geometry.shape)
    figures: Dict[str, object] = alignment_figures(fixed, moving, result.transform(), centre)
    figures["pairs"] = pair_figure(fixed, moving, fixed_masks, [pair.moving_mask for pair in pairs])
    figures["jacobian"] = jacobian_figure(result.fit.field, fixed, centre)
    written = []
    for key, (name, _) in FIGURES.items():
        save_png(figures[key], folder / name)
        written.append(name)
    (folder / REPORT_FILE).write_text(page(result, title, model, centre), encoding="utf-8")
    return [REPORT_FILE] + written


def page(result, title: str, model: Optional[str], centre) -> str:
    e = html.escape
    summary = result.summary()
    jacobian = result.jacobian
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{e(title)}</title>"
             f"<style>{STYLE}</style></head><body><h1>{e(title)}</h1>",
             f"<p>{len(result.pairs)} region pairs from {e(', '.join(result.methods))}"
             + (f", model {e(model)}" if model else "") + "; "
             f"folding {jacobian.get('folding_percent', 0.0):.3f}% of voxels; SDlogJ {jacobian.get('sdlogj', 0.0):.3f}."
             f" Figures: planes of the fixed image's voxel grid through voxel (k, j, i) = {tuple(int(v) for v in centre)}, "
             "the centre of the fixed regions.</p>"]
    for warning in result.warnings:
        parts.append(f"<p class='warn'>Warning: {e(warning)}</p>")
    parts.append(do_no_harm(summary.get("image_agreement"), result.kept_prealignment))
    for key, (name, caption) in FIGURES.items():
        parts.append(f"<figure><img src='{e(name)}' alt='{e(key)}'><figcaption>{e(caption)}</figcaption></figure>")
    parts.append(pair_table(result))
    parts.append("<p>Files: transform.h5 (fixed to moving points, ITK convention), fixed_rois.seg.nrrd and "
                 "moving_rois.seg.nrrd (the pairs as Slicer segmentations), pairs.json (every pair's source). "
                 "Written by PromptRegister.</p></body></html>")
    return "\n".join(parts)


def do_no_harm(agreement: Optional[dict], kept: bool) -> str:
    """Image agreement inside the fixed foreground before and after, as bars, and what the check concluded."""
    if not agreement:
        return "<h2>Do-no-harm check</h2><p>Not computed for this result.</p>"
    e = html.escape
    rows = []
    for label in ("before", "after"):
        value = float(agreement[label])
        width = max(0.0, min(1.0, value)) * 300
        colour = "#888" if label == "before" else ("#c33" if agreement["worse"] else "#3a3")
        rows.append(f"<tr><td class='name'>{label}</td><td class='name'><span class='bar' "
                    f"style='width:{width:.0f}px;background:{colour}'></span> {value:.3f}</td></tr>")
    verdict = ("<p class='warn'>The registered image agrees with the fixed image less than before: some region "
               "pairs are probably wrong." + (" The result was replaced by the identity (on_worse = keep)." if kept
                                                else " Check the result, or add prompts.") + "</p>") \
        if agreement["worse"] else "<p>The registered image agrees with the fixed image at least as well as before.</p>"
    return (f"<h2>Do-no-harm check</h2><p>{e(str(agreement['measure']))}, higher is better:</p>"
            f"<table>{''.join(rows)}</table>{verdict}")


def pair_table(result) -> str:
    e = html.escape
    header = ("<h2>Region pairs</h2><p>Overlap after = Dice of the pair's two regions after registration (how well "
              "the segmenter's two regions coincide; not a score of your structures).</p><table><tr><th>pair</th>"
              "<th>method</th><th>similarity</th><th>agreement</th><th>fixed voxels</th><th>moving voxels</th>"
              "<th>overlap after</th></tr>")
    rows = []
    for index, (pair, overlap) in enumerate(zip(result.pairs, result.dice_after)):
        r, g, b = (int(255 * c) for c in pair_colour(index))
        agreement = pair.source.get("agreement")
        rows.append(
            f"<tr><td class='name'><span class='swatch' style='background:rgb({r},{g},{b})'></span>{e(pair.name)}</td>"
            f"<td class='name'>{e(str(pair.source.get('method', '')))}</td><td>{float(pair.score):.3f}</td>"
            f"<td>{'' if agreement is None else f'{float(agreement):.2f}'}</td>"
            f"<td>{int(pair.fixed_mask.sum())}</td><td>{int(pair.moving_mask.sum())}</td><td>{overlap:.3f}</td></tr>")
    return header + "".join(rows) + "</table>"
