"""A cohort's summary: summary.csv (one row per manifest row), a printed table, and summary.html with a box plot
of Dice before and after per label and a link to every pair's report.

Records are plain dicts (run_pair's); a column appears when any record has it, in the order of COLUMNS, then the
per-label Dice columns, then where the pair ran and any message.
"""

from __future__ import annotations

import csv
import html
import io
import math
import re
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple

from ..io.atomic import atomic_output

COLUMNS = ("id", "status", "seconds", "pairs", "dice_before", "dice_after", "hd95_before", "hd95_after",
           "folding_percent", "tre_before", "tre_after")
ALWAYS = ("id", "status", "seconds", "pairs")
TRAILING = ("worker", "model_load_s", "message")
LABEL_COLUMN = re.compile(r"^dice_(before|after)_(\d+)$")
CSV_FILE, HTML_FILE = "summary.csv", "summary.html"


def columns_of(records: Sequence[Dict[str, Any]]) -> List[str]:
    present = {key for record in records for key in record}
    per_label = sorted((key for key in present if LABEL_COLUMN.match(key)),
                       key=lambda key: (int(LABEL_COLUMN.match(key).group(2)), key.split("_")[1] != "before"))
    return ([c for c in COLUMNS if c in ALWAYS or c in present] + per_label
            + [c for c in TRAILING if c in present])


def write_csv(records: Sequence[Dict[str, Any]], path: Path) -> None:
    columns = columns_of(records)
    with atomic_output(path) as temporary:
        with open(temporary, "w", newline="", encoding="utf-8") as stream:
            writer = csv.DictWriter(stream, fieldnames=columns, extrasaction="ignore")
            writer.writeheader()
            for record in records:
                writer.writerow({key: _cell(record.get(key)) for key in columns})


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.4g}" if abs(value) < 1e4 else f"{value:.1f}"
    return str(value)


def table(records: Sequence[Dict[str, Any]], width: int = 60) -> str:
    """The summary as a text table (the figures; a failed pair's message after the table)."""
    columns = [c for c in columns_of(records) if c not in TRAILING and not LABEL_COLUMN.match(c)]
    rows = [[_cell(record.get(c)) for c in columns] for record in records]
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths)),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in rows]
    for record in records:
        if record.get("status") == "failed":
            lines.append(f"{record['id']}: {str(record.get('message', ''))[:400]}")
    return "\n".join(lines)


def counts(records: Sequence[Dict[str, Any]]) -> Dict[str, int]:
    out = {"ok": 0, "skipped": 0, "failed": 0}
    for record in records:
        out[record["status"]] = out.get(record["status"], 0) + 1
    return out


# -- summary.html ---------------------------------------------------------------------------------------
def write_html(records: Sequence[Dict[str, Any]], out_dir: Path, title: str = "PromptRegister cohort") -> None:
    """summary.html beside the pair folders: counts, the box plot, and the table with each id linked to its
    report (when the pair has one). Self-contained (inline SVG), opens offline."""
    out_dir = Path(out_dir)
    done = counts(records)
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             "<style>body{font-family:sans-serif;margin:2em;max-width:70em}table{border-collapse:collapse}"
             "td,th{padding:.2em .6em;border-bottom:1px solid #ddd;text-align:right}td:first-child,th:first-child"
             "{text-align:left}.failed{color:#b00}</style></head><body>",
             f"<h1>{html.escape(title)}</h1>",
             f"<p>{len(records)} pairs: {done['ok']} registered, {done['skipped']} already done (kept), "
             f"{done['failed']} failed.</p>"]
    scored = [r for r in records if _number(r.get("dice_before")) and _number(r.get("dice_after"))]
    if scored:
        before = sum(r["dice_before"] for r in scored) / len(scored)
        after = sum(r["dice_after"] for r in scored) / len(scored)
        worse = sum(r["dice_after"] < r["dice_before"] for r in scored)
        parts.append(f"<p>Mean label Dice over the {len(scored)} pairs with label maps: {before:.3f} before, "
                     f"{after:.3f} after; {worse} pair(s) ended below where they started.</p>")
    groups = dice_groups(records)
    if groups:
        parts.append("<h2>Label Dice before and after registration</h2>")
        parts.append(box_plot_svg(groups))
        parts.append("<p>Boxes: quartiles and median; whiskers: the farthest values within 1.5 box lengths; "
                     "dots: every pair. Grey: before (the images as given); blue: after.</p>")
    columns = [c for c in columns_of(records) if c != "worker"]
    parts.append("<h2>Pairs</h2><table><tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in columns) + "</tr>")
    for record in records:
        cells = []
        for column in columns:
            text = html.escape(_cell(record.get(column)))
            if column == "id" and (out_dir / record["id"] / "report.html").is_file():
                text = f"<a href='{html.escape(record['id'])}/report.html'>{text}</a>"
            cells.append(f"<td>{text}</td>")
        css = " class='failed'" if record.get("status") == "failed" else ""
        parts.append(f"<tr{css}>" + "".join(cells) + "</tr>")
    parts.append("</table></body></html>")
    with atomic_output(out_dir / HTML_FILE) as temporary:
        temporary.write_text("\n".join(parts), encoding="utf-8")


def dice_groups(records: Sequence[Dict[str, Any]]) -> List[Tuple[str, List[float], List[float]]]:
    """(label name, Dice before, Dice after) for every label that any record scored."""
    labels = sorted({int(m.group(2)) for record in records for key in record if (m := LABEL_COLUMN.match(key))})
    groups = []
    for label in labels:
        before = [r[f"dice_before_{label}"] for r in records if _number(r.get(f"dice_before_{label}"))]
        after = [r[f"dice_after_{label}"] for r in records if _number(r.get(f"dice_after_{label}"))]
        if before or after:
            groups.append((f"label {label}", before, after))
    return groups


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not math.isnan(value)


def quartiles(values: Sequence[float]) -> Tuple[float, float, float, float, float]:
    """(low whisker, Q1, median, Q3, high whisker) with Tukey's 1.5 IQR whiskers."""
    ordered = sorted(values)

    def quantile(q: float) -> float:
        position = q * (len(ordered) - 1)
        low = int(math.floor(position))
        high = min(low + 1, len(ordered) - 1)
        return ordered[low] + (ordered[high] - ordered[low]) * (position - low)

    q1, median, q3 = quantile(0.25), quantile(0.5), quantile(0.75)
    reach = 1.5 * (q3 - q1)
    low = min(v for v in ordered if v >= q1 - reach)
    high = max(v for v in ordered if v <= q3 + reach)
    return low, q1, median, q3, high


def box_plot_svg(groups: Sequence[Tuple[str, List[float], List[float]]], height: int = 260) -> str:
    """An inline SVG: per group two boxes (before grey, after blue) on a Dice axis from 0 to 1."""
    top, bottom, left, group_width = 12, 40, 48, 140
    width = left + group_width * len(groups) + 12
    plot = height - top - bottom

    def y(value: float) -> float:
        return top + plot * (1.0 - min(max(value, 0.0), 1.0))

    out = io.StringIO()
    out.write(f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' font-size='11'>")
    for tick in (0.0, 0.2, 0.4, 0.6, 0.8, 1.0):
        out.write(f"<line x1='{left}' x2='{width - 8}' y1='{y(tick):.1f}' y2='{y(tick):.1f}' stroke='#eee'/>"
                  f"<text x='{left - 6}' y='{y(tick) + 4:.1f}' text-anchor='end'>{tick:.1f}</text>")
    out.write(f"<text x='12' y='{top + plot / 2:.0f}' transform='rotate(-90 12 {top + plot / 2:.0f})' "
              "text-anchor='middle'>Dice</text>")
    for index, (name, before, after) in enumerate(groups):
        centre = left + group_width * index + group_width / 2
        for offset, values, colour in ((-28, before, "#999"), (28, after, "#2a6fdb")):
            if values:
                out.write(_box(centre + offset, values, colour, y))
        out.write(f"<text x='{centre:.0f}' y='{height - bottom + 18}' text-anchor='middle'>"
                  f"{html.escape(name)} (n={max(len(before), len(after))})</text>")
    out.write("</svg>")
    return out.getvalue()


def _box(x: float, values: Sequence[float], colour: str, y) -> str:
    low, q1, median, q3, high = quartiles(values)
    half = 16
    parts = [f"<line x1='{x:.1f}' x2='{x:.1f}' y1='{y(low):.1f}' y2='{y(high):.1f}' stroke='{colour}'/>",
             f"<rect x='{x - half:.1f}' y='{y(q3):.1f}' width='{2 * half}' height='{max(y(q1) - y(q3), 1):.1f}' "
             f"fill='{colour}' fill-opacity='0.25' stroke='{colour}'/>",
             f"<line x1='{x - half:.1f}' x2='{x + half:.1f}' y1='{y(median):.1f}' y2='{y(median):.1f}' "
             f"stroke='{colour}' stroke-width='2'/>"]
    for i, value in enumerate(values):  # every pair, spread a little sideways so that equal values stay visible
        parts.append(f"<circle cx='{x + ((i % 5) - 2) * 3:.1f}' cy='{y(value):.1f}' r='2' fill='{colour}'/>")
    return "".join(parts)
