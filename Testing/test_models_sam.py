"""SAM-family segmenters on a tiny real-class model: loading through the
weights manager, predictor-equivalent coordinates on non-square slices,
prototype pooling, and everything mode against the stock generator."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from promptregister import PromptRegisterError
from promptregister.intensity import IntensityWindow
from promptregister.models import EverythingOptions, build_segmenter
from promptregister.models.everything import grid_points, stock_everything
from promptregister.models.sam import SamSegmenter, register_architecture
from promptregister.models.weights import Checkpoint, WeightsManager, sha256_of
from promptregister.slicing import SliceFrame
from tiny_models import TINY_SAM_ARCHITECTURE, build_tiny_sam


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    """The tiny SAM saved as a plain state dict and registered with its checksum."""
    register_architecture(TINY_SAM_ARCHITECTURE, build_tiny_sam)
    folder = tmp_path_factory.mktemp("weights")
    path = folder / "tiny_sam.pth"
    torch.save(build_tiny_sam(seed=3).state_dict(), path)
    entry = Checkpoint("tiny_sam", TINY_SAM_ARCHITECTURE, "sam", path.name, "https://example.invalid/tiny_sam.pth",
                       sha256_of(path), path.stat().st_size, "test")
    return folder, entry


def manager_for(folder, *entries) -> WeightsManager:
    manager = WeightsManager(weights_dir=folder, cache_dir=folder / "cache", allow_download=False)
    for entry in entries:
        manager.add(entry)
    return manager


@pytest.fixture(scope="module")
def segmenter(tiny_weights) -> SamSegmenter:
    folder, entry = tiny_weights
    return SamSegmenter.from_checkpoint("tiny_sam", manager_for(folder, entry), device="cpu")


@pytest.fixture(scope="module")
def prostate_slice(data_root):
    """A real, non-square slice: a prostate T2 slice resampled to 150 x 230 pixels."""
    from skimage.transform import resize

    from promptregister.io import read_volume

    volume = read_volume(data_root / "promise12_prostate_t2" / "case01_t2.nii.gz")
    frame = SliceFrame.for_geometry(volume.geometry)
    window = IntensityWindow.from_percentiles(volume.array)
    plane = frame.extract(volume.array, frame.num_slices // 2)
    return window.to_rgb(resize(plane, (150, 230), order=1, preserve_range=True))


def test_checkpoint_loads_bit_identical_through_the_manager(tiny_weights, segmenter):
    reference = build_tiny_sam(seed=3).state_dict()
    loaded = segmenter.model.state_dict()
    assert reference.keys() == loaded.keys()
    assert all(torch.equal(reference[k], loaded[k]) for k in reference)
    assert segmenter.checkpoint_sha256 == tiny_weights[1].sha256
    assert tiny_weights[1].sha256 in segmenter.identity


# -- checkpoints of other sizes (--model custom) ------------------------------------------------------
def test_architecture_is_read_from_a_vit_b_state_dict():
    """segment-anything's own vit_b: every field comes out as its builder sets it."""
    from segment_anything import sam_model_registry

    from promptregister.models.sam_architecture import infer_architecture

    architecture = infer_architecture(sam_model_registry["vit_b"]().state_dict())
    assert (architecture.encoder_embed_dim, architecture.encoder_depth, architecture.encoder_num_heads) == (768, 12, 12)
    assert architecture.encoder_global_attn_indexes == [2, 5, 8, 11]
    assert (architecture.encoder_window_size, architecture.patch_size, architecture.image_size) == (14, 16, 1024)
    assert (architecture.encoder_mlp_ratio, architecture.encoder_qkv_bias) == (4.0, True)
    assert (architecture.prompt_embed_dim, architecture.mask_in_chans) == (256, 16)
    assert (architecture.decoder_depth, architecture.decoder_mlp_dim, architecture.decoder_num_heads) == (2, 2048, 8)
    assert (architecture.iou_head_depth, architecture.iou_head_hidden_dim) == (3, 256)
    assert architecture.num_multimask_outputs == 3


def test_custom_checkpoint_with_sidecar_predicts_like_the_original(tmp_path, prostate_slice):
    from tiny_models import save_tiny_sam_checkpoint

    path = save_tiny_sam_checkpoint(tmp_path, seed=7)
    custom = build_segmenter("custom", checkpoint_path=path, device="cpu")
    assert custom.name == "custom:tiny_sam.pth" and len(custom.checkpoint_sha256) == 64
    original = SamSegmenter(build_tiny_sam(seed=7), "tiny", "x", device="cpu")
    point = np.array([[115.0, 75.0]])
    a = custom.segment(custom.embed([prostate_slice])[0], points=point, labels=np.array([1]))
    b = original.segment(original.embed([prostate_slice])[0], points=point, labels=np.array([1]))
    np.testing.assert_allclose(a.scores, b.scores, atol=1e-6)
    assert np.array_equal(a.masks, b.masks)

    # without the sidecar the decoder gets SAM's 8 heads: it still loads (shapes agree) but predicts otherwise
    path.with_suffix(".json").unlink()
    other = build_segmenter("custom", checkpoint_path=path, device="cpu")
    c = other.segment(other.embed([prostate_slice])[0], points=point, labels=np.array([1]))
    assert not np.allclose(c.scores, b.scores, atol=1e-6)


def test_custom_checkpoint_errors_are_clear(tmp_path):
    from tiny_models import save_tiny_sam_checkpoint

    with pytest.raises(PromptRegisterError, match="needs a checkpoint file"):
        build_segmenter("custom", device="cpu")
    with pytest.raises(PromptRegisterError, match="does not exist"):
        build_segmenter("custom", checkpoint_path=tmp_path / "nothing.pth", device="cpu")
    path = save_tiny_sam_checkpoint(tmp_path)
    path.with_suffix(".json").write_text('{"decoder_heads": 2}')
    with pytest.raises(PromptRegisterError, match="unknown SAM architecture field 'decoder_heads'"):
        build_segmenter("custom", checkpoint_path=path, device="cpu")
    path.with_suffix(".json").write_text('{"encoder_depth": 3}')
    with pytest.raises(PromptRegisterError, match="does not fit the architecture"):
        build_segmenter("custom", checkpoint_path=path, device="cpu")
    from promptregister.models.sam import build_architecture

    mobile = tmp_path / "mobile.pth"
    torch.save(build_architecture("vit_t").state_dict(), mobile)
    with pytest.raises(PromptRegisterError, match=r"MobileSAM checkpoint\); use --model mobilesam"):
        build_segmenter("custom", checkpoint_path=mobile, device="cpu")


def test_custom_checkpoint_that_is_a_known_release_is_verified_as_it(tiny_weights):
    folder, entry = tiny_weights
    segmenter = SamSegmenter.from_custom_checkpoint(folder / entry.file_name, manager_for(folder, entry),
                                                    device="cpu")
    assert segmenter.name == "tiny_sam" and segmenter.checkpoint_sha256 == entry.sha256


def test_tampered_checkpoint_is_refused(tiny_weights, tmp_path):
    folder, entry = tiny_weights
    shutil.copy(folder / entry.file_name, tmp_path / entry.file_name)
    data = bytearray((tmp_path / entry.file_name).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (tmp_path / entry.file_name).write_bytes(bytes(data))
    with pytest.raises(PromptRegisterError, match="refusing .*SHA-256 .*does not match tiny_sam"):
        SamSegmenter.from_checkpoint("tiny_sam", manager_for(tmp_path, entry), device="cpu")


def test_missing_vit_b_gives_the_clear_error_and_writes_nothing(tmp_path):
    manager = WeightsManager(weights_dir=tmp_path / "weights", cache_dir=tmp_path / "cache", allow_download=False)
    with pytest.raises(PromptRegisterError) as error:
        build_segmenter("vit_b", manager=manager, device="cpu")
    message = str(error.value)
    assert "sam_vit_b_01ec64.pth" in message
    assert "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth" in message
    assert str(tmp_path / "weights" / "sam_vit_b_01ec64.pth") in message
    assert list(tmp_path.iterdir()) == []


def test_unknown_model_is_not_replaced_by_another(tmp_path):
    manager = WeightsManager(weights_dir=tmp_path, allow_download=False)
    with pytest.raises(PromptRegisterError, match="unknown model 'vit_x'"):
        build_segmenter("vit_x", manager=manager)


def test_points_and_boxes_match_sam_predictor_on_a_non_square_slice(segmenter, prostate_slice):
    from segment_anything import SamPredictor

    predictor = SamPredictor(segmenter.model)
    predictor.set_image(prostate_slice)
    embedding = segmenter.embed([prostate_slice])[0]
    assert embedding.grid.image_size == (150, 230)
    assert embedding.grid.input_size == (167, 256)  # long side 230 -> 256, 150 * 256 / 230 = 166.96
    assert torch.allclose(embedding.features, predictor.features[0], atol=1e-5)
    points = np.array([[180.0, 40.0], [30.0, 120.0]])
    labels = np.array([1, 0])
    ours = segmenter.segment(embedding, points, labels)
    masks, scores, _ = predictor.predict(point_coords=points, point_labels=labels, multimask_output=True)
    assert ours.masks.shape == (3, 150, 230)
    np.testing.assert_allclose(ours.scores, scores, atol=1e-5)
    assert (ours.masks != masks).mean() < 1e-3
    box = np.array([20.0, 10.0, 200.0, 90.0])
    ours = segmenter.segment(embedding, box=box, multimask=False)
    masks, scores, _ = predictor.predict(box=box, multimask_output=False)
    np.testing.assert_allclose(ours.scores, scores, atol=1e-5)
    assert (ours.masks != masks).mean() < 1e-3


def test_prompts_outside_the_slice_or_empty_are_rejected(segmenter, prostate_slice):
    embedding = segmenter.embed([prostate_slice])[0]
    with pytest.raises(PromptRegisterError, match="outside the 230 x 150 slice"):
        segmenter.segment(embedding, np.array([[240.0, 10.0]]))
    with pytest.raises(PromptRegisterError, match="at least one point or a box"):
        segmenter.segment(embedding)
    with pytest.raises(PromptRegisterError, match="box .* is empty"):
        segmenter.segment(embedding, box=np.array([50, 50, 40, 60]))


def test_prototype_pools_only_the_valid_region(segmenter, prostate_slice):
    embedding = segmenter.embed([prostate_slice])[0]
    grid = embedding.grid
    valid = grid.valid_cells()
    # 167 of 256 input rows are image: cells 0-9 full, cell 10 is 7/16 image, cells 11-15 padding
    np.testing.assert_allclose(valid[:, 0], [1.0] * 10 + [7 / 16] + [0.0] * 5, atol=1e-9)
    mask = np.zeros(grid.image_size, bool)
    mask[100:, 150:] = True  # reaches the bottom edge, next to the padding
    prototype = embedding.prototype(mask)
    poisoned = embedding.features.clone()
    poisoned[:, valid == 0] = 1e6
    embedding.features = poisoned
    np.testing.assert_allclose(embedding.prototype(mask), prototype, rtol=1e-6)
    weights = grid.coverage(mask)
    assert weights[valid == 0].max() == 0.0
    # total coverage is the mask area in cell units
    cell_area = (grid.image_size[0] / grid.input_size[0] * 16) * (grid.image_size[1] / grid.input_size[1] * 16)
    assert weights.sum() == pytest.approx(mask.sum() / cell_area, rel=1e-9)
    similarity = embedding.similarity(prototype)
    assert np.isnan(similarity[valid == 0]).all() and np.isfinite(similarity[valid > 0]).all()


@pytest.mark.parametrize("depth", [2, 3])
@pytest.mark.parametrize("multimask", [True, False])
def test_many_prompt_decoder_matches_the_stock_mask_decoder(depth, multimask):
    from segment_anything.modeling import MaskDecoder, PromptEncoder, TwoWayTransformer

    from promptregister.models.many_prompt_decoder import ManyPromptDecoder

    torch.manual_seed(depth)
    prompt_encoder = PromptEncoder(embed_dim=32, image_embedding_size=(16, 16), input_image_size=(256, 256),
                                   mask_in_chans=16)
    transformer = TwoWayTransformer(depth=depth, embedding_dim=32, mlp_dim=64, num_heads=2)
    decoder = MaskDecoder(num_multimask_outputs=3, transformer=transformer, transformer_dim=32,
                          iou_head_depth=3, iou_head_hidden_dim=64).eval()
    image = torch.randn(1, 32, 16, 16)
    points = torch.rand(10, 2, 2) * 256
    labels = torch.tensor([[1, 0]] * 10)
    boxes = torch.sort(torch.rand(10, 2, 2) * 256, dim=1).values.reshape(10, 4)
    with torch.no_grad():
        sparse, dense = prompt_encoder(points=(points, labels), boxes=boxes, masks=None)
        stock_masks, stock_iou = decoder(image_embeddings=image, image_pe=prompt_encoder.get_dense_pe(),
                                         sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
                                         multimask_output=multimask)
        ours = ManyPromptDecoder(decoder, image[0], prompt_encoder.get_dense_pe()[0], dense[0])(sparse, multimask)
        chosen = torch.tensor([7, 2, 5])
        masks = ours.for_prompts(chosen)
    np.testing.assert_allclose(ours.iou, stock_iou, atol=1e-5 * stock_iou.abs().max())
    np.testing.assert_allclose(masks, stock_masks[chosen], atol=1e-5 * stock_masks.abs().max())


@pytest.mark.parametrize("options", [
    EverythingOptions(points_per_side=8, pred_iou_thresh=0.0, stability_score_thresh=0.0, box_nms_thresh=1.0,
                      foreground_only=False),
    EverythingOptions(points_per_side=12, pred_iou_thresh=0.0, stability_score_thresh=0.0, box_nms_thresh=0.7,
                      foreground_only=False),
    # the tiny model's logits are small, so a small offset gives stability scores spread over 0.05-0.3
    EverythingOptions(points_per_side=12, pred_iou_thresh=-0.11, stability_score_thresh=0.2, box_nms_thresh=0.9,
                      stability_score_offset=0.02, foreground_only=False),
], ids=["all-masks", "nms", "stability-filter"])
def test_everything_mode_gives_the_stock_generators_masks(segmenter, prostate_slice, options):
    embedding = segmenter.embed([prostate_slice])[0]
    ours = segmenter.segment_everything(embedding, options)
    stock = stock_everything(segmenter, prostate_slice, options)
    assert len(stock) > 0
    assert len(ours) == len(stock)
    # Our decoder sums the same terms in another order (float32 rounding, about 1e-7 of the logits), so
    # a pixel whose logit is within rounding of the threshold may flip: at most 1 in 10 000 per mask.
    flipped = (ours.masks != stock.masks).sum(axis=(1, 2))
    assert flipped.max() <= 1e-4 * ours.masks[0].size
    assert (flipped > 0).mean() < 0.05
    np.testing.assert_allclose(ours.scores, stock.scores, atol=1e-6)
    np.testing.assert_allclose(ours.stability, stock.stability, atol=1e-3)
    np.testing.assert_allclose(ours.points, stock.points, atol=1e-9)


def test_everything_mode_skips_background_grid_points(segmenter, prostate_slice):
    image = prostate_slice.copy()
    image[:, :115] = 0  # left half is background
    embedding = segmenter.embed([image])[0]
    options = EverythingOptions(points_per_side=16)
    points = grid_points(embedding, options)
    assert 0.45 * 256 < len(points) < 0.6 * 256
    assert points[:, 0].min() > 115 - 230 / 16


def test_medsam_preprocessing_stretches_and_scales_to_unit_range(tiny_weights, prostate_slice):
    folder, entry = tiny_weights
    medsam = Checkpoint("tiny_medsam", entry.architecture, "medsam", entry.file_name, entry.url, entry.sha256,
                        entry.size, "test")
    segmenter = SamSegmenter.from_checkpoint("tiny_medsam", manager_for(folder, medsam), device="cpu")
    tensor = segmenter._input_tensor(prostate_slice)
    assert tensor.shape == (3, 256, 256)
    assert float(tensor.min()) == 0.0 and float(tensor.max()) == 1.0
    embedding = segmenter.embed([prostate_slice])[0]
    assert embedding.grid.input_size == (256, 256) and embedding.grid.valid_cells().min() == pytest.approx(1.0)
    result = segmenter.segment(embedding, box=np.array([20.0, 10.0, 200.0, 90.0]))
    assert result.masks.shape == (3, 150, 230)
    assert "medsam" in segmenter.identity


def test_weights_are_downloaded_with_progress_and_checksum(tiny_weights, tmp_path):
    """A download (a file:// URL stands in for the official server) reports its progress, lands in the cache
    only after its SHA-256 matched, and a corrupted source is refused with nothing left behind."""
    import dataclasses

    folder, entry = tiny_weights
    source = folder / entry.file_name
    online = dataclasses.replace(entry, url=source.resolve().as_uri())
    manager = WeightsManager(registry={"tiny_sam": online}, weights_dir=tmp_path / "none",
                             cache_dir=tmp_path / "cache")
    manager.allow_download = True  # the test process is offline for Hugging Face; this source is local
    seen = []
    segmenter = SamSegmenter.from_checkpoint("tiny_sam", manager, device="cpu",
                                             download_progress=lambda done, total: seen.append((done, total)))
    assert (tmp_path / "cache" / entry.file_name).exists()
    assert seen and seen[-1] == (source.stat().st_size, source.stat().st_size)
    assert [done for done, _ in seen] == sorted(done for done, _ in seen)
    assert segmenter.identity  # loaded through the verified path

    corrupted = tmp_path / "corrupted.pth"
    corrupted.write_bytes(source.read_bytes()[:-10] + b"0123456789")
    bad = dataclasses.replace(entry, url=corrupted.resolve().as_uri())
    manager = WeightsManager(registry={"tiny_sam": bad}, weights_dir=tmp_path / "none", cache_dir=tmp_path / "c2")
    manager.allow_download = True
    with pytest.raises(PromptRegisterError, match="SHA-256"):
        SamSegmenter.from_checkpoint("tiny_sam", manager, device="cpu")
    assert not (tmp_path / "c2").exists() or not any((tmp_path / "c2").iterdir())
