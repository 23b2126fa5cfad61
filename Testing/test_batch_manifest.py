"""The batch manifest (issue #16): paths relative to it, points in LPS or RAS, and every mistake reported at
once before anything runs. Real image headers (the sample pair), read without their voxels."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from promptregister.batch import ManifestError, load_manifest
from promptregister.io import read_label_map


@pytest.fixture()
def cohort(tmp_path, hippocampus_paths):
    """A folder with two subjects' images and labels, as a user lays out a cohort."""
    for case in ("001", "004"):
        image, labels = hippocampus_paths(case)
        shutil.copy(image, tmp_path / f"sub{case}.nii.gz")
        shutil.copy(labels, tmp_path / f"sub{case}_labels.nii.gz")
    return tmp_path


def inside_point(path) -> list:
    labels = read_label_map(path)
    kji = np.argwhere(labels.array == 1)[0]
    return labels.geometry.index_to_physical(kji[::-1].astype(float)).tolist()


def test_a_good_manifest_resolves_paths_and_reads_points_in_both_spaces(cohort):
    lps = inside_point(cohort / "sub004_labels.nii.gz")
    ras = [-lps[0], -lps[1], lps[2]]
    (cohort / "pairs.tsv").write_text(
        "id\tfixed\tmoving\tpoints\tpoints_ras\tauto\tfixed_labels\tmoving_labels\n"
        f"a\tsub001.nii.gz\tsub004.nii.gz\t{','.join(map(str, lps))}\t\t\tsub001_labels.nii.gz\tsub004_labels.nii.gz\n"
        f"b\tsub001.nii.gz\tsub004.nii.gz\t\t{','.join(map(str, ras))}\tfalse\t\t\n"
        "c\tsub004.nii.gz\tsub001.nii.gz\t\t\ttrue\t\t\n")
    manifest = load_manifest(cohort / "pairs.tsv")
    a, b, c = manifest.rows
    assert a.fixed == cohort / "sub001.nii.gz" and a.moving_labels == cohort / "sub004_labels.nii.gz"
    assert np.allclose(a.points[0], lps) and np.allclose(b.points[0], lps)  # RAS became LPS
    assert c.auto and not c.points and not a.auto


def test_point_pairs_in_both_spaces_and_a_row_without_a_prompt(cohort):
    """point_pairs ("mx,my,mz:fx,fy,fz;...") in LPS or RAS; a row with no prompt is the image registration; a point
    pair whose fixed point lies outside the fixed image is its pair's own problem; a malformed one a mistake."""
    moving = inside_point(cohort / "sub004_labels.nii.gz")
    fixed = inside_point(cohort / "sub001_labels.nii.gz")
    as_text = lambda point: ",".join(map(str, point))  # noqa: E731
    ras = lambda point: [-point[0], -point[1], point[2]]  # noqa: E731
    (cohort / "pairs.csv").write_text(
        "id,fixed,moving,point_pairs,point_pairs_ras\n"
        f'a,sub001.nii.gz,sub004.nii.gz,"{as_text(moving)}:{as_text(fixed)}",\n'
        f'b,sub001.nii.gz,sub004.nii.gz,,"{as_text(ras(moving))}:{as_text(ras(fixed))}"\n'
        "c,sub001.nii.gz,sub004.nii.gz,,\n"
        f'd,sub001.nii.gz,sub004.nii.gz,"{as_text(moving)}:900,0,0",\n')
    a, b, c, d = load_manifest(cohort / "pairs.csv").rows
    assert np.allclose(a.point_pairs[0][0], moving) and np.allclose(a.point_pairs[0][1], fixed)
    assert np.allclose(b.point_pairs, a.point_pairs)  # RAS became LPS
    assert not c.has_prompt and c.problem is None  # the images alone
    assert "outside the fixed image" in d.problem
    (cohort / "bad.csv").write_text(f'id,fixed,moving,point_pairs\ne,sub001.nii.gz,sub004.nii.gz,"{as_text(moving)}"\n')
    with pytest.raises(ManifestError, match="MX,MY,MZ:FX,FY,FZ"):
        load_manifest(cohort / "bad.csv")


def test_every_mistake_is_reported_at_once_before_anything_runs(cohort):
    (cohort / "pairs.csv").write_text(
        "id,fixed,moving,points,auto\n"
        "ok,sub001.nii.gz,sub004.nii.gz,,true\n"
        "missing,sub001.nii.gz,nowhere.nii.gz,,true\n"
        "outside,sub001.nii.gz,sub004.nii.gz,900,0,0,\n"
        "ok,sub001.nii.gz,sub004.nii.gz,,maybe\n")
    with pytest.raises(ManifestError) as raised:
        load_manifest(cohort / "pairs.csv")
    problems = raised.value.problems
    assert any("line 3 (missing)" in p and "nowhere.nii.gz" in p and "does not exist" in p for p in problems)
    assert any("line 4 (outside)" in p and "not three numbers" in p for p in problems)  # "900,0,0," split by CSV
    assert any("line 5 (ok)" in p and "auto must be true or false" in p for p in problems)
    assert any("line 5 (ok)" in p and "also on line 2" in p for p in problems)
    assert "nothing was run" in str(raised.value)


def test_a_label_map_on_another_grid_stops_the_run_and_a_point_outside_stays_with_its_pair(cohort):
    import SimpleITK as sitk

    shifted = sitk.ReadImage(str(cohort / "sub001_labels.nii.gz"))
    shifted.SetOrigin([value + 5.0 for value in shifted.GetOrigin()])  # the same voxels, placed 5 mm away
    sitk.WriteImage(shifted, str(cohort / "sub001_labels.nii.gz"))
    (cohort / "pairs.csv").write_text(
        "id,fixed,moving,points,moving_labels\n"
        '"far",sub001.nii.gz,sub004.nii.gz,"900,0,0",sub004_labels.nii.gz\n'
        '"grid",sub001.nii.gz,sub004.nii.gz,"' + ",".join(map(str, inside_point(cohort / "sub004_labels.nii.gz")))
        + '",sub001_labels.nii.gz\n')
    with pytest.raises(ManifestError) as raised:
        load_manifest(cohort / "pairs.csv")
    problems = raised.value.problems
    assert len(problems) == 1  # the far point is its pair's problem, not the manifest's
    assert "line 3 (grid)" in problems[0] and "not on the moving image's grid" in problems[0]
    rows = (cohort / "pairs.csv").read_text().splitlines()
    (cohort / "pairs.csv").write_text("\n".join(rows[:2]) + "\n")
    far = load_manifest(cohort / "pairs.csv").rows[0]
    assert "outside the moving image" in far.problem and "spans" in far.problem


def test_a_header_without_the_required_columns_is_refused_with_their_names(cohort):
    (cohort / "pairs.csv").write_text("name,fixed_image,moving\nx,a,b\n")
    with pytest.raises(ManifestError) as raised:
        load_manifest(cohort / "pairs.csv")
    text = str(raised.value)
    assert "lacks the column 'id'" in text and "lacks the column 'fixed'" in text and "'name'" in text


def test_a_manifest_that_is_not_utf8_is_one_clean_error_naming_the_file_and_the_fix(cohort, capsys):
    """Excel's plain "CSV" on Windows writes cp1252: a name with an accent was a UnicodeDecodeError traceback."""
    from promptregister.cli import main as cli_main
    from promptregister.errors import PromptRegisterError

    path = cohort / "pairs.csv"
    path.write_bytes("id,fixed,moving,text\nr\u00e9,sub001.nii.gz,sub004.nii.gz,hippocampus\n".encode("cp1252"))
    with pytest.raises(PromptRegisterError, match="not UTF-8 text") as raised:
        load_manifest(path)
    assert not isinstance(raised.value, ManifestError) and str(path) in str(raised.value)
    code = cli_main(["batch", str(path), "--out-dir", str(cohort / "out"), "--model", "classical", "--quiet"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1, lines
    assert lines[0].startswith(f"error: the manifest {path} is not UTF-8 text") and "save it as UTF-8" in lines[0]
    path.write_bytes(b"\xef\xbb\xbf" + "id,fixed,moving\nr\u00e9,sub001.nii.gz,sub004.nii.gz\n".encode())
    with pytest.raises(ManifestError, match="not a plain name"):  # UTF-8 with a BOM reads; the id is then checked
        load_manifest(path)


def test_a_misspelt_column_is_refused_with_the_closest_known_name_and_the_list(cohort):
    """`fixed_label` for `fixed_labels` would otherwise leave the pair without its Dice, unnoticed."""
    (cohort / "pairs.csv").write_text("id,fixed,moving,fixed_label\n"
                                      "a,sub001.nii.gz,sub004.nii.gz,sub001_labels.nii.gz\n")
    with pytest.raises(ManifestError) as raised:
        load_manifest(cohort / "pairs.csv")
    assert raised.value.problems == [
        "the header has an unknown column 'fixed_label' (did you mean 'fixed_labels'? known: id, fixed, moving, "
        "points, points_ras, point_pairs, point_pairs_ras, text, auto, fixed_labels, moving_labels, "
        "fixed_landmarks, moving_landmarks)"]
    (cohort / "pairs.csv").write_text("id,fixed,moving,notes\na,sub001.nii.gz,sub004.nii.gz,first\n")
    with pytest.raises(ManifestError, match="unknown column 'notes' \\(known: id"):  # no close name: the list alone
        load_manifest(cohort / "pairs.csv")


def test_a_column_named_twice_or_a_row_longer_than_the_header_is_refused(cohort):
    """Both used to drop a value silently: csv keeps the last of two equal columns and puts extra cells aside."""
    (cohort / "pairs.csv").write_text("id,fixed,moving,text,text\na,sub001.nii.gz,sub004.nii.gz,bladder,prostate\n")
    with pytest.raises(ManifestError, match="names the column 'text' 2 times"):
        load_manifest(cohort / "pairs.csv")
    point = ",".join(map(str, inside_point(cohort / "sub004_labels.nii.gz")))
    (cohort / "pairs.csv").write_text(f"id,fixed,moving,points\na,sub001.nii.gz,sub004.nii.gz,{point}\n"
                                      f'b,sub001.nii.gz,sub004.nii.gz,"{point}",\n')  # a trailing empty cell is fine
    with pytest.raises(ManifestError) as raised:
        load_manifest(cohort / "pairs.csv")
    problems = raised.value.problems
    assert any(p.startswith("line 2 (a): 2 more value(s) than the header has columns") and "needs quotes" in p
               for p in problems), problems
    assert not any(p.startswith("line 3") for p in problems), problems
