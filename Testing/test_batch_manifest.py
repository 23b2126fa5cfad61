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
