"""The Slicer extension's files: a valid Extension Wizard layout, a .ui that Qt
Designer can read, and every widget the Widget uses present in the .ui. (The
GUI itself needs the Slicer application, which cannot run here; its logic is
tested through PromptRegisterLib with the slicer-core wheel.)"""

from __future__ import annotations

import py_compile
import re
import xml.etree.ElementTree as ElementTree
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MODULE = REPO / "PromptRegister"
UI = MODULE / "Resources" / "UI" / "PromptRegister.ui"


def ui_widgets():
    root = ElementTree.parse(UI).getroot()
    return root, {w.get("name"): w.get("class") for w in root.iter("widget")}


def test_ui_parses_as_qt_designer_xml():
    root, widgets = ui_widgets()
    assert root.tag == "ui" and root.get("version") == "4.0"
    assert root.find("class").text == "PromptRegister"
    top = root.find("widget")
    assert top.get("class") == "qMRMLWidget" and top.get("name") == "PromptRegister"
    names = [w.get("name") for w in root.iter("widget")]
    assert len(names) == len(set(names)), "widget names must be unique"
    declared = {c.find("class").text for c in root.iter("customwidget")}
    used = {cls for cls in widgets.values() if not cls.startswith("Q")}
    assert used <= declared, f"custom widgets without a declaration: {used - declared}"
    for connection in root.iter("connection"):  # scene hand-over to every MRML widget
        assert connection.find("receiver").text in widgets


def test_every_widget_the_module_uses_exists_in_the_ui():
    _, widgets = ui_widgets()
    source = (MODULE / "PromptRegister.py").read_text()
    used = set(re.findall(r"self\.ui\.(\w+)", source))
    assert used, "the Widget binds no widget?"
    missing = sorted(used - set(widgets))
    assert not missing, f"PromptRegister.py uses widgets missing from the .ui: {missing}"
    assert widgets["fixedVolumeSelector"] == widgets["movingVolumeSelector"] == "qMRMLNodeComboBox"
    assert widgets["pointsPlaceWidget"] == "qSlicerMarkupsPlaceWidget"


def test_module_script_compiles_and_has_the_template_classes(tmp_path):
    py_compile.compile(str(MODULE / "PromptRegister.py"), cfile=str(tmp_path / "m.pyc"), doraise=True)
    source = (MODULE / "PromptRegister.py").read_text()
    for name in ("PromptRegister(ScriptedLoadableModule)", "PromptRegisterWidget(ScriptedLoadableModuleWidget",
                 "PromptRegisterLogic(ScriptedLoadableModuleLogic", "PromptRegisterTest(ScriptedLoadableModuleTest)"):
        assert f"class {name}" in source


def test_extension_cmake_layout():
    top = (REPO / "CMakeLists.txt").read_text()
    for variable in ("EXTENSION_HOMEPAGE", "EXTENSION_CATEGORY", "EXTENSION_CONTRIBUTORS", "EXTENSION_DESCRIPTION",
                     "EXTENSION_ICONURL", "EXTENSION_SCREENSHOTURLS", "EXTENSION_DEPENDS"):
        assert re.search(rf"set\({variable} ", top), variable
    assert 'set(EXTENSION_CATEGORY "Registration")' in top
    assert "add_subdirectory(PromptRegister)" in top and "find_package(Slicer REQUIRED)" in top
    module = (MODULE / "CMakeLists.txt").read_text()
    assert "slicerMacroBuildScriptedModule(" in module
    resources = re.findall(r"Resources/[\w/${}.]+", module)
    for resource in resources:
        assert (MODULE / resource.replace("${MODULE_NAME}", "PromptRegister")).exists(), resource
    assert (REPO / "Resources" / "Icons" / "PromptRegister.png").exists()
    # the engine and the MRML helpers ship with the module
    assert "promptregister/*.py" in module and "PromptRegisterLib/*.py" in module
