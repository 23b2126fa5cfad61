"""Embedding cache: hits cost no encoder time, changes invalidate, corrupt entries are recomputed."""

from __future__ import annotations

import numpy as np
import pytest

from promptregister.intensity import IntensityWindow
from promptregister.models.cache import EmbeddingCache
from promptregister.models.sam import SamSegmenter
from promptregister.slicing import SliceFrame
from tiny_models import build_tiny_sam


@pytest.fixture(scope="module")
def slices(hippocampus):
    image, _ = hippocampus("001")
    frame = SliceFrame.for_geometry(image.geometry)
    window = IntensityWindow.from_percentiles(image.array)
    return image, frame, [window.to_rgb(frame.extract(image.array, k)) for k in range(20, 26)]


def tiny(cache, sha="sha-a") -> SamSegmenter:
    return SamSegmenter(build_tiny_sam(seed=1), "tiny", sha, device="cpu", cache=cache, batch_size=4)


def test_second_request_costs_no_encoder_time(slices, tmp_path):
    _, _, images = slices
    cache = EmbeddingCache(disk_dir=tmp_path)
    segmenter = tiny(cache)
    calls = []
    first = segmenter.embed(images, progress=lambda done, total: calls.append((done, total)))
    assert segmenter.encoded_slices == 6 and calls[-1] == (6, 6)
    second = segmenter.embed(images)
    assert segmenter.encoded_slices == 6
    assert cache.stats.memory_hits == 6
    assert all(np.array_equal(a.features.numpy(), b.features.numpy()) for a, b in zip(first, second))

    # a new process (new segmenter, empty memory) reads the disk entries
    cache.clear_memory()
    fresh = tiny(cache)
    third = fresh.embed(images)
    assert fresh.encoded_slices == 0 and cache.stats.disk_hits == 6
    assert all(np.array_equal(a.features.numpy(), b.features.numpy()) for a, b in zip(first, third))
    assert third[0].grid == first[0].grid


def test_changed_window_model_or_pixels_invalidate(slices, tmp_path):
    image, frame, images = slices
    cache = EmbeddingCache(disk_dir=tmp_path)
    segmenter = tiny(cache)
    segmenter.embed(images[:2])
    other_window = IntensityWindow.from_percentiles(image.array, 5, 95)
    segmenter.embed([other_window.to_rgb(frame.extract(image.array, k)) for k in (20, 21)])
    assert segmenter.encoded_slices == 4
    other_model = tiny(cache, sha="sha-b")
    other_model.embed(images[:2])
    assert other_model.encoded_slices == 2
    edited = images[0].copy()
    edited[10, 10] ^= 1
    segmenter.embed([edited])
    assert segmenter.encoded_slices == 5


def test_corrupt_disk_entry_is_recomputed_not_trusted(slices, tmp_path):
    _, _, images = slices
    cache = EmbeddingCache(disk_dir=tmp_path)
    segmenter = tiny(cache)
    original = segmenter.embed(images[:1])[0]
    entry = next(tmp_path.rglob("*.npz"))
    data = bytearray(entry.read_bytes())
    data[len(data) // 2:len(data) // 2 + 64] = bytes(64)  # zero a run inside the features
    entry.write_bytes(bytes(data))
    cache.clear_memory()
    again = segmenter.embed(images[:1])[0]
    assert cache.stats.corrupt == 1 and segmenter.encoded_slices == 2
    assert np.array_equal(again.features.numpy(), original.features.numpy())
    cache.clear_memory()
    assert cache.get(original.key) is not None and cache.stats.disk_hits == 1  # the rewritten entry is sound


def test_no_partial_files_are_left_in_the_cache(slices, tmp_path):
    _, _, images = slices
    tiny(EmbeddingCache(disk_dir=tmp_path)).embed(images)
    names = [p.name for p in tmp_path.rglob("*") if p.is_file()]
    assert len(names) == 6 and not any("partial" in n for n in names)


def test_memory_level_is_bounded_lru():
    features = np.zeros((10, 8, 8), np.float32)  # 2560 bytes each
    from promptregister.models.grid import EmbeddingGrid

    grid = EmbeddingGrid.longest_side((8, 8), 8, (8, 8))
    cache = EmbeddingCache(memory_bytes=3 * features.nbytes)
    for key in "abcd":
        cache.put(key, features, grid)
    assert cache.get("a") is None  # evicted first
    assert cache.get("d") is not None and cache.get("b") is not None
    cache.put("e", features, grid)
    assert cache.get("c") is None  # b was used more recently than c
