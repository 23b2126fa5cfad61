"""What the worker's Python needs, whether it has it, and how to install it.

This file uses only the standard library, because it also runs as a script in
another interpreter (`python dependencies.py --json`): the worker's Python may
not be Slicer's, and that is the one to check. Versions are read from the
installed distributions' metadata (nothing heavy is imported) and compared
with the requirement's specifiers, so an old scikit-image counts as missing.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Optional, Sequence, Tuple

REQUIREMENTS: Tuple[str, ...] = (
    "numpy>=1.24",
    "scipy>=1.10",
    "SimpleITK>=2.2",
    "scikit-image>=0.21",
    "tqdm>=4.60",
    "onnxruntime>=1.17",
    "onnx>=1.15",
    "torch>=2.1",
    "torchvision>=0.16",
    "segment-anything==1.0",
    "mobilesam-mirror==1.0.0",
    "timm>=0.9",
    "transformers>=4.40",
)
"""The engine's run-time needs as pip requirements (pyproject.toml's core, sam and text extras)."""

SHIPPED_WITH_SLICER = ("numpy", "scipy", "SimpleITK", "vtk")
"""Packages Slicer builds and ships itself (Slicer 5.6: numpy 1.26, scipy 1.11, SimpleITK 2.2.1, VTK 9.2). Never
installed over in Slicer's own Python: Slicer's modules depend on its builds (sitkUtils' `slicer:` image addresses
need Slicer's ITK IO plugin, for one)."""

TORCH_DISTRIBUTIONS = ("torch", "torchvision")
"""Installed through light-the-torch (as the PyTorch extension does), which picks the GPU build; never plain pip,
which on Windows gives a CPU-only build."""

_SPECIFIER = re.compile(r"(~=|==|!=|<=|>=|<|>)\s*([^,\s]+)")


def split_requirement(requirement: str) -> Tuple[str, List[Tuple[str, str]]]:
    """'scikit-image>=0.21,<1' -> ('scikit-image', [('>=', '0.21'), ('<', '1')])."""
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(.*)$", requirement)
    if match is None:
        raise ValueError(f"not a requirement: {requirement!r}")
    return match.group(1), _SPECIFIER.findall(match.group(2))


def version_tuple(version: str) -> Tuple[int, ...]:
    """The release numbers of a version ('2.14.1+cu121' -> (2, 14, 1); '0.26.0rc1' -> (0, 26, 0))."""
    numbers = []
    for part in version.split("+")[0].split("."):
        digits = re.match(r"\d+", part)
        if digits is None:
            break
        numbers.append(int(digits.group()))
        if digits.group() != part:
            break
    return tuple(numbers)


def satisfies(version: str, specifiers: Sequence[Tuple[str, str]]) -> bool:
    """Whether a version meets every (operator, version) specifier (release numbers only)."""
    have = version_tuple(version)
    for operator, wanted in specifiers:
        want = version_tuple(wanted)
        width = max(len(have), len(want))
        a, b = have + (0,) * (width - len(have)), want + (0,) * (width - len(want))
        if operator == "~=":
            ok = a >= b and a[:max(len(want) - 1, 1)] == b[:max(len(want) - 1, 1)]
        else:
            ok = {"==": a == b, "!=": a != b, ">=": a >= b, "<=": a <= b, ">": a > b, "<": a < b}[operator]
        if not ok:
            return False
    return True


def installed_version(distribution: str) -> Optional[str]:
    from importlib import metadata

    for name in dict.fromkeys((distribution, distribution.lower(), distribution.replace("-", "_"),
                               distribution.lower().replace("-", "_"))):
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


def unmet(requirements: Optional[Sequence[str]] = None) -> Dict[str, Optional[str]]:
    """The requirements (default REQUIREMENTS) this Python does not meet -> the version it has (None: absent)."""
    found = {}
    for requirement in requirements or REQUIREMENTS:
        name, specifiers = split_requirement(requirement)
        version = installed_version(name)
        if version is None or not satisfies(version, specifiers):
            found[requirement] = version
    return found


def unmet_in(python: Optional[str], requirements: Optional[Sequence[str]] = None,
             timeout: float = 60) -> Dict[str, Optional[str]]:
    """`unmet` for another interpreter (this file run there as a script), waiting for the answer; this one when
    `python` is empty. (A GUI polls a RequirementsProbe instead.)"""
    if is_this_python(python):
        return unmet(requirements)
    probe = RequirementsProbe(python, requirements)
    deadline = time.monotonic() + timeout
    while True:
        answer = probe.poll()
        if answer is not None:
            return answer
        if time.monotonic() > deadline:
            probe.cancel()
            raise ValueError(f"the worker Python '{python}' did not say which packages it has within {timeout:.0f} s")
        time.sleep(0.05)


def is_this_python(python: Optional[str]) -> bool:
    """Whether `python` is this interpreter (empty: Slicer's own), which is asked directly, at once."""
    return not python or os.path.realpath(python) == os.path.realpath(sys.executable)


class RequirementsProbe:
    """Which requirements another interpreter lacks, found by running this file there as a background process
    that writes its answer to a file: nothing waits and no thread reads a pipe (in Slicer, Python threads run only
    while the main thread runs Python). `poll()` is None until the answer is in."""

    def __init__(self, python: str, requirements: Optional[Sequence[str]] = None):
        if not (os.path.isfile(python) and os.access(python, os.X_OK)):
            raise ValueError(f"the worker Python '{python}' is not an executable file; choose the python executable "
                             "of the environment that should run the worker (Advanced > Worker Python)")
        self.python = python
        self._folder = tempfile.mkdtemp(prefix="promptregister-probe-")
        self._out = open(os.path.join(self._folder, "answer.json"), "w+")
        self._err = open(os.path.join(self._folder, "errors.txt"), "w+")
        self._process = subprocess.Popen([python, os.path.abspath(__file__), "--json", *(requirements or REQUIREMENTS)],
                                         stdin=subprocess.DEVNULL, stdout=self._out, stderr=self._err,
                                         **hidden_console())

    def poll(self) -> Optional[Dict[str, Optional[str]]]:
        """The unmet requirements once the probe has finished (ValueError when it failed); None before."""
        code = self._process.poll()
        if code is None:
            return None
        self._out.seek(0)
        self._err.seek(0)
        answer, errors = self._out.read(), self._err.read()
        self._close()
        if code != 0:
            raise ValueError(f"the worker Python '{self.python}' could not be asked for its packages: "
                             f"{errors.strip()[-400:] or code}")
        return json.loads(answer)

    def cancel(self) -> None:
        if self._process.poll() is None:
            self._process.kill()
            self._process.wait()
        self._close()

    def _close(self) -> None:
        for stream in (self._out, self._err):
            stream.close()
        shutil.rmtree(self._folder, ignore_errors=True)


def hidden_console() -> dict:
    """Popen arguments that hide Windows console windows (the worker client's; imported late, because in probe
    mode this file runs where the engine may not be importable)."""
    from promptregister.worker.client import hidden_console as worker_hidden_console

    return worker_hidden_console()


# -- installing ---------------------------------------------------------------------------------------
_driver: Dict[str, object] = {"query": None, "answer": None}
"""nvidia-smi's background query and, once it has answered, its first line ('' when it found no GPU)."""


def start_driver_query() -> None:
    """Ask nvidia-smi for the GPU and driver in the background (the panel does it when it opens), so that the
    installation dialog can name them without waiting for it."""
    smi = shutil.which("nvidia-smi")
    if smi and _driver["query"] is None and _driver["answer"] is None:
        try:
            _driver["query"] = subprocess.Popen([smi, "--query-gpu=name,driver_version", "--format=csv,noheader"],
                                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                                stderr=subprocess.DEVNULL, text=True, **hidden_console())
        except OSError:
            _driver["answer"] = ""


def _driver_answer() -> Optional[str]:
    """nvidia-smi's first line once it has answered ('' when it found no GPU); None while it runs."""
    query = _driver["query"]
    if _driver["answer"] is None and query is not None and query.poll() is not None:
        output = query.stdout.read()
        query.stdout.close()
        lines = output.strip().splitlines() if query.returncode == 0 else []
        _driver["answer"], _driver["query"] = (lines[0] if lines else ""), None
    return _driver["answer"]


def torch_build_description() -> str:
    """Which PyTorch build light-the-torch will pick here, in words for the confirmation dialog (never waits for
    nvidia-smi: start_driver_query asked it earlier)."""
    if sys.platform == "darwin":
        return "the macOS build (Apple GPU through Metal where available)"
    if not shutil.which("nvidia-smi"):
        return "a CPU-only build (no NVIDIA driver was found); registration will run on the CPU, more slowly"
    start_driver_query()
    driver = _driver_answer()
    if driver:
        return (f"a CUDA build matching this computer's NVIDIA driver ({driver}); registration will run on that "
                "GPU")
    if driver == "":
        return "a CPU-only build (the NVIDIA driver reports no GPU); registration will run on the CPU, more slowly"
    return "a CUDA build matching this computer's NVIDIA driver (or CPU-only if its GPU does not answer)"


def shipped_with_slicer(missing: Sequence[str]) -> List[str]:
    """The requirements among `missing` that name a package Slicer ships (SHIPPED_WITH_SLICER)."""
    shipped = {name.lower() for name in SHIPPED_WITH_SLICER}
    return [r for r in missing if split_requirement(r)[0].lower() in shipped]


def install_commands(python: str, missing: Sequence[str], keep: Sequence[str] = ()) -> List[List[str]]:
    """The commands that install `missing` into `python`: torch and torchvision through light-the-torch (installed
    first when absent), everything else with pip. Packages named in `keep` are never installed (Slicer's own, for
    Slicer's Python). An empty list when nothing is left to install (never a bare pip)."""
    kept = {name.lower() for name in keep}
    missing = [r for r in missing if split_requirement(r)[0].lower() not in kept]
    torch_part = [r for r in missing if split_requirement(r)[0] in TORCH_DISTRIBUTIONS]
    others = [r for r in missing if r not in torch_part]
    commands = []
    if torch_part:
        commands.append([python, "-m", "pip", "install", "light-the-torch>=0.5"])
        commands.append([python, "-m", "light_the_torch", "install", *torch_part])
    if others:
        commands.append([python, "-m", "pip", "install", *others])
    return commands


def slicer_python() -> str:
    """The interpreter that runs Slicer's Python packages as a program (PythonSlicer, as slicer.util uses)."""
    return shutil.which("PythonSlicer") or sys.executable


if __name__ == "__main__":  # probe mode, run in the worker's Python by unmet_in()
    arguments = [a for a in sys.argv[1:] if a != "--json"]
    print(json.dumps(unmet(arguments or REQUIREMENTS)))
