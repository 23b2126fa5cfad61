"""The batch manifest: one row per pair, checked completely before anything runs.

A CSV (or TSV, by its extension or its header) with a header row. Columns: `id`, `fixed`, `moving`, and
optionally `points` ("x,y,z;x,y,z" in LPS mm) or `points_ras` (the same in Slicer's RAS), `point_pairs`
("mx,my,mz:fx,fy,fz;..." in LPS mm: a moving point and its fixed counterpart) or `point_pairs_ras`, `text`,
`auto` (true/false), `fixed_labels`, `moving_labels`, `fixed_landmarks`, `moving_landmarks`. A row with no
prompt (and no default prompt on the command line) is registered on its images alone. Relative paths resolve
against the manifest's folder. Every problem of every row is collected and reported at once, so a cohort of
300 pairs is not started to fail at pair 250 on a typo.

The file must be UTF-8 text (with or without a byte-order mark). Columns are only those above: an unknown column
(`fixed_label` for `fixed_labels`) is refused with the closest known name and the list, as are a column named
twice and a row with more values than the header has columns (an unquoted comma), so that nothing the user
wrote is silently ignored.

Two kinds of problem: a mistake in the manifest itself (a column, an id, a file that is missing or unreadable, a
value that does not parse, a label map on another grid) stops the whole run before it starts (ManifestError); a
prompt point outside its moving image is the pair's own problem, found just as early, and that pair alone fails
with its message while the others run (PairRow.problem).
"""

from __future__ import annotations

import csv
import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import PromptRegisterError

REQUIRED = ("id", "fixed", "moving")
OPTIONAL = ("points", "points_ras", "point_pairs", "point_pairs_ras", "text", "auto", "fixed_labels", "moving_labels",
            "fixed_landmarks", "moving_landmarks")
PATH_COLUMNS = ("fixed", "moving", "fixed_labels", "moving_labels", "fixed_landmarks", "moving_landmarks")
SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
"""A pair id names its output folder, so it is a plain name."""
TRUE, FALSE = ("true", "yes", "1"), ("false", "no", "0", "")


class ManifestError(PromptRegisterError):
    """Every problem found in a manifest, one per line."""

    def __init__(self, path: Path, problems: Sequence[str]):
        self.problems = list(problems)
        lines = "\n".join(f"  {problem}" for problem in self.problems)
        super().__init__(f"{path}: {len(self.problems)} problem(s); nothing was run:\n{lines}")


@dataclass
class PairRow:
    """One pair of the manifest, paths resolved, points in LPS mm."""

    line: int
    id: str
    fixed: Path
    moving: Path
    points: List[Tuple[float, float, float]] = field(default_factory=list)
    point_pairs: List[Tuple[Tuple[float, float, float], Tuple[float, float, float]]] = field(default_factory=list)
    """(moving point, fixed point) pairs, LPS mm."""
    text: Optional[str] = None
    auto: bool = False
    fixed_labels: Optional[Path] = None
    moving_labels: Optional[Path] = None
    fixed_landmarks: Optional[Path] = None
    moving_landmarks: Optional[Path] = None
    problem: Optional[str] = None
    """Why this pair cannot run (a point outside its moving image); it is reported as failed, not run."""

    @property
    def has_prompt(self) -> bool:
        return bool(self.points or self.point_pairs or self.text or self.auto)


@dataclass
class Manifest:
    path: Path
    rows: List[PairRow]


def load_manifest(path, require_prompt: bool = False) -> Manifest:
    """Read and check a manifest; ManifestError lists every mistake of the manifest; a pair's own problem (a point
    outside its image) is left on its row (PairRow.problem). `require_prompt`: a row without points, point pairs,
    text or auto is a mistake (by default it is registered on its images alone)."""
    path = Path(path)
    if not path.is_file():
        raise PromptRegisterError(f"the manifest {path} does not exist; give a CSV file with a header row "
                                  f"({', '.join(REQUIRED)}, ...)")
    text = _read_text(path)
    first = text.splitlines()[0] if text.strip() else ""
    delimiter = "\t" if path.suffix.lower() in (".tsv", ".tab") or "\t" in first else ","
    reader = csv.DictReader(text.splitlines(), delimiter=delimiter)
    try:
        header = [name.strip() for name in (reader.fieldnames or [])]
        problems = header_problems(header)
        if problems:
            raise ManifestError(path, problems)
        rows, seen = [], {}
        for line, raw in enumerate(reader, start=2):
            problems += _row_problems(path.parent, line, raw, require_prompt, rows, seen)
    except csv.Error as error:
        raise PromptRegisterError(f"the manifest {path} is not a readable CSV or TSV file (line {reader.line_num}: "
                                  f"{error}); check its quotes") from None
    if not rows and not problems:
        problems.append("no pairs: the manifest has a header and no rows")
    if problems:
        raise ManifestError(path, problems)
    return Manifest(path, rows)


def _read_text(path: Path) -> str:
    """The manifest's text; a file in another encoding (Excel's "CSV" on Windows, UTF-16) is one clear error."""
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as error:
        raise PromptRegisterError(f"the manifest {path} is not UTF-8 text (byte {error.object[error.start]:#04x} "
                                  f"at offset {error.start}); save it as UTF-8 (Excel: Save As \"CSV UTF-8\"; "
                                  "LibreOffice: character set \"Unicode (UTF-8)\") and run again") from None


def header_problems(header: Sequence[str]) -> List[str]:
    """Missing required columns, columns named twice, and unknown columns, each unknown one with the known name
    it is closest to (a typo such as `fixed_label`) and the list of known columns."""
    known = REQUIRED + OPTIONAL
    problems = [f"the header lacks the column {name!r}" for name in REQUIRED if name not in header]
    problems += [f"the header names the column {name!r} {header.count(name)} times; give each column once"
                 for name in sorted(set(header)) if header.count(name) > 1]
    for name in header:
        if name not in known:
            close = difflib.get_close_matches(name.lower(), known, n=1, cutoff=0.6)
            hint = f"did you mean {close[0]!r}? " if close else ""
            problems.append(f"the header has an unknown column {name!r} ({hint}known: {', '.join(known)})")
    return problems


def _row_problems(folder: Path, line: int, raw: Dict, require_prompt: bool, rows: List["PairRow"],
                  seen: Dict[str, int]) -> List[str]:
    """One CSV record checked into `rows` (and `seen`, the ids so far); its problems, each prefixed with the line."""
    extra = [value for value in (raw.get(None) or []) if value and value.strip()]
    values = {key.strip(): (value or "").strip() for key, value in raw.items() if key is not None}
    if not any(values.values()) and not extra:
        return []  # a blank line
    row, row_problems = _row(folder, line, values, require_prompt)
    if extra:
        row_problems.append(f"{len(extra)} more value(s) than the header has columns ({', '.join(map(repr, extra))})"
                            "; a value with a comma needs quotes (\"x,y,z;x,y,z\"), or the header lacks a column")
    if row is not None and row.id in seen:
        row_problems.append(f"the id {row.id!r} is also on line {seen[row.id]}; ids name output folders")
    if row is not None:
        seen.setdefault(row.id, line)
        rows.append(row)
    return [f"line {line} ({values.get('id') or 'no id'}): {problem}" for problem in row_problems]


def _row(folder: Path, line: int, values: Dict[str, str], require_prompt: bool) -> Tuple[Optional[PairRow], List[str]]:
    problems: List[str] = []
    pair_id = values.get("id", "")
    if not SAFE_ID.match(pair_id):
        problems.append(f"the id {pair_id!r} is not a plain name (letters, digits, '.', '_', '-')")
    paths: Dict[str, Optional[Path]] = {}
    for column in PATH_COLUMNS:
        given = values.get(column, "")
        if not given:
            if column in REQUIRED:
                problems.append(f"no {column} image")
            paths[column] = None
            continue
        resolved = Path(given) if Path(given).is_absolute() else folder / given
        if not resolved.is_file():
            problems.append(f"{column} {given!r} does not exist (looked for {resolved})")
        paths[column] = resolved
    geometries = {}
    for column in ("fixed", "moving", "fixed_labels", "moving_labels"):
        if paths.get(column) is not None and paths[column].is_file():
            try:
                geometries[column] = image_geometry(paths[column])
            except PromptRegisterError as error:
                problems.append(f"{column} cannot be read: {error}")
    for column in ("fixed_landmarks", "moving_landmarks"):
        if paths.get(column) is not None and paths[column].is_file():
            from ..landmarks import read_landmarks

            try:
                read_landmarks(paths[column])
            except PromptRegisterError as error:
                problems.append(f"{column}: {error}")
    points, point_problems = _points(values)
    problems += point_problems
    point_pairs, pair_problems = _point_pairs(values)
    problems += pair_problems
    located = [(point, "moving") for point in points] + [
        (point, side) for pair in point_pairs for point, side in zip(pair, ("moving", "fixed"))]
    outside = [(point, side) for point, side in located if side in geometries and not geometries[side].contains(point)]
    pair_problem = None
    if outside:
        pair_problem = "; ".join(f"the point {[round(float(v), 2) for v in point]} (LPS) lies outside the {side} "
                                 f"image, which spans {geometries[side].describe_bounds()}" for point, side in outside)
    for side in ("fixed", "moving"):
        labels = geometries.get(f"{side}_labels")
        if labels is not None and side in geometries and not labels.is_close(geometries[side]):
            problems.append(f"{side}_labels is not on the {side} image's grid")
    auto_text = values.get("auto", "").lower()
    if auto_text not in TRUE + FALSE:
        problems.append(f"auto must be true or false; got {values.get('auto')!r}")
    row = PairRow(line, pair_id, paths["fixed"] or Path(), paths["moving"] or Path(), points, point_pairs,
                  values.get("text") or None, auto_text in TRUE, paths["fixed_labels"], paths["moving_labels"],
                  paths["fixed_landmarks"], paths["moving_landmarks"], pair_problem)
    if require_prompt and not row.has_prompt:
        problems.append("no prompt: give points, point_pairs, text or auto=true (or a method on the command line)")
    return (row if SAFE_ID.match(pair_id) else None), problems


def _points(values: Dict[str, str]) -> Tuple[List[Tuple[float, float, float]], List[str]]:
    lps, ras = values.get("points", ""), values.get("points_ras", "")
    if lps and ras:
        return [], ["give points or points_ras, not both"]
    text, flip = (ras, np.array([-1.0, -1.0, 1.0])) if ras else (lps, np.ones(3))
    points, problems = [], []
    for entry in filter(None, (part.strip() for part in text.split(";"))):
        try:
            numbers = [float(v) for v in entry.split(",")]
        except ValueError:
            numbers = []
        if len(numbers) != 3 or not np.isfinite(numbers).all():
            problems.append(f"the point {entry!r} is not three numbers x,y,z")
            continue
        points.append(tuple(float(v) for v in np.asarray(numbers) * flip))
    return points, problems


def _point_pairs(values: Dict[str, str]) -> Tuple[list, List[str]]:
    """The row's point pairs, "mx,my,mz:fx,fy,fz;..." (LPS, or RAS in point_pairs_ras), as LPS tuples."""
    from ..methods.point_pairs import parse_point_pair

    lps, ras = values.get("point_pairs", ""), values.get("point_pairs_ras", "")
    if lps and ras:
        return [], ["give point_pairs or point_pairs_ras, not both"]
    pairs, problems = [], []
    for entry in filter(None, (part.strip() for part in (ras or lps).split(";"))):
        try:
            pair = parse_point_pair(entry, "ras" if ras else "lps")
        except PromptRegisterError as error:
            problems.append(str(error))
            continue
        pairs.append((pair.moving, pair.fixed))
    return pairs, problems


def image_geometry(path: Path):
    """The image's grid from its header only (SimpleITK reads no voxels), as the engine's LPS Geometry."""
    import SimpleITK as sitk

    from ..geometry import Geometry

    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as error:
        raise PromptRegisterError(str(error).strip().splitlines()[-1][:200]) from None
    if reader.GetDimension() != 3:
        raise PromptRegisterError(f"it is {reader.GetDimension()}D; registration takes 3D volumes")
    return Geometry.create(reader.GetSize(), reader.GetSpacing(), reader.GetOrigin(),
                           np.asarray(reader.GetDirection()).reshape(3, 3))

