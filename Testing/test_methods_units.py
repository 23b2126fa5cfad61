"""Unit tests of the correspondence methods' building blocks on constructed
masks and matrices where the right answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from promptregister.methods.auxiliary import auxiliary_prompt, contour_points
from promptregister.methods.marginal import SliceTransform, agreement, average_masks, random_transforms
from promptregister.methods.matching import area_filter, cosine_matrix, greedy_pairs, overlap_filter
from promptregister.methods.pairs import SlicePair, deduplicate, spread_cap
from promptregister.methods.slices import coarse_slices, refine_slices


def disk(shape, centre, radius):
    rows, cols = np.mgrid[:shape[0], :shape[1]]
    return (rows + 0.5 - centre[1]) ** 2 + (cols + 0.5 - centre[0]) ** 2 <= radius ** 2


def test_greedy_pairs_one_to_one_takes_the_best_remaining_pair():
    similarity = np.array([[0.95, 0.90, 0.10],
                           [0.93, 0.50, 0.85],
                           [0.20, 0.10, 0.30]])
    pairs = greedy_pairs(similarity, threshold=0.8)
    assert [(r, c) for r, c, _ in pairs] == [(0, 0), (1, 2)]  # row 1 loses column 0 to row 0, takes column 2
    assert greedy_pairs(similarity, threshold=0.96) == []
    many = greedy_pairs(similarity, threshold=0.8, one_to_many=True)
    assert [(r, c) for r, c, _ in many] == [(0, 0), (1, 0)]


def test_cosine_matrix_is_scale_invariant():
    a = np.array([[1.0, 0.0], [1.0, 1.0]])
    b = np.array([[5.0, 0.0], [0.0, 2.0]])
    np.testing.assert_allclose(cosine_matrix(a, b), [[1.0, 0.0], [2 ** -0.5, 2 ** -0.5]])


def test_area_and_overlap_filters():
    shape = (100, 100)
    big = disk(shape, (50, 50), 30)
    inside = disk(shape, (50, 50), 28)       # shares all its area with `big`: the smaller one goes
    separate = disk(shape, (15, 15), 8)
    tiny = disk(shape, (85, 85), 2)
    masks = np.stack([big, inside, separate, tiny])
    kept = area_filter(masks, 0.005, 0.5)
    assert kept.tolist() == [0, 1, 2]        # tiny: 12 px = 0.0012 of the slice
    assert overlap_filter(masks[kept], [0.9, 0.99, 0.5]).tolist() == [0, 2]


def test_contour_points_lie_on_the_boundary():
    mask = np.zeros((10, 10), bool)
    mask[2:6, 3:8] = True
    points = contour_points(mask)
    assert len(points) == 2 * 5 + 2 * 2  # a 4 x 5 rectangle has 14 boundary pixels
    assert points[:, 0].min() == 3.5 and points[:, 0].max() == 7.5


def test_no_auxiliary_prompt_when_shapes_agree():
    shape = (120, 120)
    moving = disk(shape, (40, 60), 20)
    fixed = disk(shape, (80, 50), 20)  # same shape elsewhere: centroid alignment makes them coincide
    assert auxiliary_prompt(moving, fixed, 1.0, 1.0, sigma_mm=2.0, step_px=2.0) is None


def test_negative_prompt_at_a_spurious_fixed_lobe():
    shape = (120, 120)
    moving = disk(shape, (60, 60), 15)
    fixed = disk(shape, (60, 60), 15) | spur(shape, 60, 60, 110)
    prompt = auxiliary_prompt(moving, fixed, 1.0, 1.0, sigma_mm=5.0, step_px=2.0)
    assert prompt is not None and prompt.label == 0
    assert prompt.fixed_to_moving_mm > prompt.moving_to_fixed_mm
    assert prompt.xy[0] > 95  # the tip of the spurious arm
    assert fixed[int(prompt.xy[1]), int(prompt.xy[0])]


def spur(shape, row, x_from, x_to, half_width=2):
    rows, cols = np.mgrid[:shape[0], :shape[1]]
    return (np.abs(rows + 0.5 - row) <= half_width) & (cols >= x_from) & (cols < x_to)


def test_positive_prompt_where_the_fixed_roi_misses_part_of_the_structure():
    shape = (120, 120)
    moving = disk(shape, (50, 60), 15) | spur(shape, 60, 50, 100)   # a structure with a long arm
    fixed = disk(shape, (50, 60), 15)                               # the fixed ROI lacks the arm
    prompt = auxiliary_prompt(moving, fixed, 1.0, 1.0, sigma_mm=5.0, step_px=2.0)
    assert prompt is not None and prompt.label == 1
    assert prompt.moving_to_fixed_mm > prompt.fixed_to_moving_mm
    assert not fixed[int(prompt.xy[1]), int(prompt.xy[0])]  # the new positive point is outside the fixed ROI
    assert prompt.xy[0] > 75                                # toward the missing arm's end


def test_auxiliary_distances_are_in_millimetres():
    shape = (120, 120)
    moving = disk(shape, (50, 60), 15) | spur(shape, 60, 50, 100)
    fixed = disk(shape, (50, 60), 15)
    at_1mm = auxiliary_prompt(moving, fixed, 1.0, 1.0, sigma_mm=5.0, step_px=2.0)
    at_2mm = auxiliary_prompt(moving, fixed, 2.0, 2.0, sigma_mm=5.0, step_px=2.0)
    assert at_2mm.moving_to_fixed_mm == pytest.approx(2 * at_1mm.moving_to_fixed_mm)
    np.testing.assert_allclose(at_2mm.xy, at_1mm.xy, atol=1e-9)  # same point in pixels
    # sigma above the discrepancy: nothing to add
    assert auxiliary_prompt(moving, fixed, 1.0, 1.0, sigma_mm=1000.0, step_px=2.0) is None


def test_slice_transform_maps_points_and_images_consistently():
    image = np.zeros((80, 100), np.uint8)
    image[20:30, 60:70] = 255
    transform = random_transforms(1, image.shape, seed=3)[0]
    moved = transform.image(image)
    centre = transform.points(np.array([[65.0, 25.0]]))[0]
    # the bright square's centre lands where the point lands
    rows, cols = np.nonzero(moved > 127)
    assert np.hypot(cols.mean() + 0.5 - centre[0], rows.mean() + 0.5 - centre[1]) < 1.5


def test_back_mapping_undoes_the_transform():
    mask = disk((90, 90), (45, 40), 20).astype(float)
    for transform in random_transforms(4, mask.shape, seed=7):
        moved = transform.image(mask)
        if moved.sum() < 0.9 * mask.sum() * np.abs(np.linalg.det(transform.matrix[:2, :2])):
            continue  # part of the disk left the slice: nothing to compare
        back = transform.back(moved) > 0.5
        overlap = (back & (mask > 0)).sum() / (mask > 0).sum()
        assert overlap > 0.9


def test_same_seed_same_transforms_and_flips_happen():
    first = [t.matrix for t in random_transforms(8, (64, 64), seed=1)]
    second = [t.matrix for t in random_transforms(8, (64, 64), seed=1)]
    assert all(np.array_equal(a, b) for a, b in zip(first, second))
    determinants = [np.linalg.det(m[:2, :2]) for m in first]
    assert all(0.25 - 1e-9 <= abs(d) <= 6.25 + 1e-9 for d in determinants)  # scale 0.5-2.5 squared


def test_average_masks_is_a_majority_vote():
    a = np.array([[1.0, 1.0, 0.0]])
    b = np.array([[1.0, 0.0, 0.0]])
    c = np.array([[1.0, 1.0, 1.0]])
    assert average_masks([a, b, c]).tolist() == [[True, True, False]]


def test_agreement_is_one_when_copies_agree_and_drops_when_they_do_not():
    square = np.zeros((20, 20))
    square[5:15, 5:15] = 0.9
    elsewhere = np.roll(square, 10, axis=1)
    averaged = average_masks([square, square, elsewhere])
    assert agreement([square, square], square > 0.5, 2) == pytest.approx(1.0)
    # a copy that found nothing counts as 0: two maps given, three counted
    assert agreement([square, square], square > 0.5, 3) == pytest.approx(2 / 3)
    # a copy on a region half outside the averaged one: IoU 5x10 / (15x10)
    half = np.roll(square, 5, axis=1)
    assert agreement([square, half], square > 0.5, 2) == pytest.approx((1 + 1 / 3) / 2)
    assert agreement([square, square, elsewhere], averaged, 3) == pytest.approx(2 / 3)
    with pytest.raises(ValueError):
        agreement([], square > 0.5, 0)


def test_coarse_to_fine_search_slices():
    group = list(range(4, 15))
    assert coarse_slices(group, 1) == group
    assert coarse_slices(group, 3) == [6, 9, 12]
    assert coarse_slices([4, 5], 3) == [5]  # no multiple of 3: the middle slice
    assert refine_slices(group, 9, 3) == [7, 8, 9, 10, 11]
    assert refine_slices(group, 12, 3) == [10, 11, 12, 13, 14]
    with pytest.raises(Exception, match="at least 1"):
        coarse_slices(group, 0)


def test_transform_identity_geometry():
    matrix = np.eye(3)
    transform = SliceTransform(matrix)
    image = (np.arange(30 * 40) % 251).astype(np.uint8).reshape(30, 40)
    assert np.array_equal(transform.image(image), image)


def pair(fixed_slice, moving_slice, fixed_mask, moving_mask, score):
    return SlicePair(fixed_slice, fixed_mask, moving_slice, moving_mask, score)


def test_deduplicate_drops_pairs_overlapping_on_both_sides():
    a = disk((50, 50), (25, 25), 10)
    b = disk((50, 50), (25, 26), 10)   # IoU with a > 0.8
    c = disk((50, 50), (10, 10), 5)
    pairs = [pair(3, 4, a, a, 0.9), pair(3, 4, b, b, 0.95), pair(3, 4, b, c, 0.85), pair(2, 4, a, a, 0.8)]
    kept = deduplicate(pairs, 0.8)
    assert [p.score for p in kept] == [0.95, 0.85, 0.8]  # 0.9 duplicates 0.95; other slices never duplicate


def test_spread_cap_keeps_every_slice_before_second_choices():
    mask = np.ones((2, 2), bool)
    pairs = [pair(0, s, mask, mask, score) for s in range(3) for score in (0.9 - 0.1 * s, 0.85 - 0.1 * s)]
    capped = spread_cap(pairs, 4)
    assert sorted({p.moving_slice for p in capped}) == [0, 1, 2]
    assert len(capped) == 4


def test_a_pair_whose_displacement_disagrees_is_rejected():
    from promptregister.geometry import Geometry
    from promptregister.methods.consistency import reject_inconsistent
    from promptregister.roipairs import RoiPair, RoiPairs

    geometry = Geometry.create(size=(60, 60, 20), spacing=(1.0, 1.0, 1.0))
    pairs = RoiPairs(geometry, geometry)
    rng = np.random.default_rng(0)
    shifts = [(2, 1, 0)] * 5 + [(25, 0, 0)]
    for number, (di, dj, dk) in enumerate(shifts):
        i, j, k = rng.integers(5, 30), rng.integers(5, 50), rng.integers(2, 18)
        fixed = np.zeros(geometry.shape, bool)
        moving = np.zeros(geometry.shape, bool)
        fixed[k, j:j + 3, i:i + 3] = True
        moving[k + dk, j + dj:j + dj + 3, i + di:i + di + 3] = True
        pairs.append(RoiPair(fixed, moving, name=f"pair {number}"))
    kept, rejected = reject_inconsistent(pairs, tolerance_mm=8.0)
    assert [r["name"] for r in rejected] == ["pair 5"]
    assert rejected[0]["residual_mm"] == pytest.approx(23.0, abs=0.5)  # 25 mm vs the others' ~2.2 mm shift
    assert len(kept) == 5
    assert reject_inconsistent(pairs, tolerance_mm=0.0)[1] == []  # 0 keeps every pair


def test_promptreg_progress_never_goes_back_within_its_stage_with_marginalisation(hippocampus):
    """Marginalisation reports between encoder batches (so a request can be cancelled or preempted there); it
    does so as a share of the prompts stage, which a progress bar must see rise only."""
    from promptregister.methods.promptreg import PointPrompt, PromptRegOptions, promptreg
    from promptregister.methods.slices import SlicedVolume
    from promptregister.models import build_segmenter

    fixed, _ = hippocampus("001")
    moving, labels = hippocampus("004")
    segmenter = build_segmenter("classical")
    points = [PointPrompt(tuple(labels.geometry.index_to_physical(np.argwhere(labels.array == label)[0][::-1]
                                                                    .astype(float)))) for label in (1, 2)]
    reports = []
    promptreg(SlicedVolume(fixed, segmenter, name="fixed"), SlicedVolume(moving, segmenter, name="moving"), points,
              PromptRegOptions(marginal_samples=2), lambda stage, fraction: reports.append((stage, fraction)))
    stage = [fraction for name, fraction in reports if name == "promptreg: corresponding prompts"]
    assert len(stage) > 4 and stage == sorted(stage) and stage[-1] == 1.0
