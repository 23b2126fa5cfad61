"""FAKE stand-ins for what only the running 3D Slicer application provides, so PromptRegister.py's Widget and
Logic can be imported and driven here: the PythonQt `qt` module, the scripted-module base classes
(`slicer.ScriptedLoadableModule`), `slicer.app`, and the GUI helpers of `slicer.util` (loadUI, dialogs).

Everything else is real: the MRML scene and nodes (slicer-core), VTK, the worker. The widgets are built from the
real .ui file (names, classes and initial property values), so a widget the code uses but the .ui lacks is an
AttributeError, as in Slicer. Properties record how often they were set, which is how the typing tests see
whether the panel wrote into a field the user is editing.
"""

from __future__ import annotations

import collections
import contextlib
import inspect
import sys
import types
import unittest
import xml.etree.ElementTree as ElementTree
from pathlib import Path
from typing import Any, Dict, List

MODULE_DIR = Path(__file__).resolve().parents[1] / "PromptRegister"

_DEFAULTS = {"checked": False, "text": "", "currentText": "", "value": 0, "currentPath": "", "enabled": True,
             "toolTip": "", "collapsed": False}


class FakeWidget:
    """A Qt widget as PythonQt shows it: properties as attributes, connect(signal, slot), a few methods."""

    def __init__(self, name: str, class_name: str, properties: Dict[str, Any]):
        object.__setattr__(self, "_state", {**_DEFAULTS, **properties})
        object.__setattr__(self, "sets", collections.Counter())
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "_class", class_name)
        object.__setattr__(self, "connections", collections.defaultdict(list))
        object.__setattr__(self, "items", [])
        object.__setattr__(self, "node", None)
        object.__setattr__(self, "cells", {})

    def __getattr__(self, prop: str) -> Any:
        state = object.__getattribute__(self, "_state")
        if prop in state:
            return state[prop]
        raise AttributeError(f"{self.name} ({self._class}) has no property or method {prop!r} here")

    def __setattr__(self, prop: str, value: Any) -> None:
        self.sets[prop] += 1
        if prop == "currentText" and self.items and value not in self.items:
            return  # a QComboBox ignores text that is not one of its items
        self._state[prop] = value

    def className(self) -> str:
        return self._class

    def connect(self, signal: str, slot) -> None:
        self.connections[signal].append(slot)

    def emit(self, signal: str, *args) -> None:
        """What Qt does when the user acts on the widget. Like PythonQt, a slot gets only as many of the signal's
        arguments as it accepts (Slicer's template connects clicked(bool) to a method without arguments)."""
        for slot in self.connections[signal]:
            slot(*args[:_accepted_arguments(slot, len(args))])

    def user_sets(self, prop: str, value: Any, signal: str) -> None:
        """The user changes a value (the property changes, then the widget's signal fires)."""
        self._state[prop] = value
        self.emit(signal, value)

    # QComboBox, qMRMLNodeComboBox, QTableWidget, qMRMLWidget
    def addItems(self, items: List[str]) -> None:
        self.items.extend(items)
        if self._state["currentText"] == "" and items:
            self._state["currentText"] = items[0]

    def currentNode(self):
        return self.node

    def setCurrentNode(self, node) -> None:
        object.__setattr__(self, "node", node)
        self.sets["currentNode"] += 1

    def setMRMLScene(self, scene) -> None:
        pass

    def setHorizontalHeaderLabels(self, labels) -> None:
        pass

    def setRowCount(self, count: int) -> None:
        self._state["rowCount"] = count

    def setItem(self, row: int, column: int, item) -> None:
        self.cells[(row, column)] = item

    # QComboBox.clear, qMRMLTableView.setMRMLTableNode
    def clear(self) -> None:
        self.items.clear()
        self._state["currentText"] = ""

    def setMRMLTableNode(self, node) -> None:
        object.__setattr__(self, "node", node)


def _accepted_arguments(slot, offered: int) -> int:
    try:
        parameters = inspect.signature(slot).parameters.values()
    except (TypeError, ValueError):
        return offered
    if any(p.kind == inspect.Parameter.VAR_POSITIONAL for p in parameters):
        return offered
    return min(offered, sum(p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
                            for p in parameters))


def _property_value(element):
    for kind, convert in (("bool", lambda t: t == "true"), ("number", int), ("double", float), ("string", str)):
        found = element.find(kind)
        if found is not None:
            return convert(found.text or "")
    return None


def load_ui(path: str) -> types.SimpleNamespace:
    """Every named widget of a Qt Designer file as a FakeWidget with the file's property values."""
    root = ElementTree.parse(path).getroot()
    widgets = {}
    for element in root.iter("widget"):
        properties = {}
        for prop in element.findall("property"):
            value = _property_value(prop)
            if value is not None:
                properties[prop.get("name")] = value
        widgets[element.get("name")] = FakeWidget(element.get("name"), element.get("class"), properties)
    return types.SimpleNamespace(**widgets, _widgets=widgets, setMRMLScene=lambda scene: None)


class Dialogs:
    """Records the messages the module shows; `confirm_answer` is what the user clicks."""

    def __init__(self) -> None:
        self.errors: List[str] = []
        self.confirmations: List[str] = []
        self.confirm_answer = False

    def error(self, text: str, *args, **kwargs) -> None:
        self.errors.append(text)

    def confirm(self, text: str, *args, **kwargs) -> bool:
        self.confirmations.append(text)
        return self.confirm_answer


def application_modules(dialogs: Dialogs) -> Dict[str, types.ModuleType]:
    """FAKE `qt` and `slicer.ScriptedLoadableModule` modules (see the module docstring)."""
    qt = types.ModuleType("qt")

    class QTimer:
        def __init__(self) -> None:
            self.active, self.interval, self.slots = False, 0, []

        def setInterval(self, milliseconds: int) -> None:
            self.interval = milliseconds

        def connect(self, signal: str, slot) -> None:
            self.slots.append(slot)

        def start(self) -> None:
            self.active = True

        def stop(self) -> None:
            self.active = False

        def isActive(self) -> bool:
            return self.active

    class QSettings:
        store: Dict[str, Any] = {}  # one application's settings, shared by every QSettings() as in Qt

        def value(self, key: str, default: Any = None) -> Any:
            return self.store.get(key, default)

        def setValue(self, key: str, value: Any) -> None:
            self.store[key] = value

    class QTableWidgetItem:
        def __init__(self, text: str) -> None:
            self.text = text

    qt.QTimer, qt.QSettings, qt.QTableWidgetItem = QTimer, QSettings, QTableWidgetItem

    base = types.ModuleType("slicer.ScriptedLoadableModule")

    class ScriptedLoadableModule:
        def __init__(self, parent) -> None:
            self.parent = parent

    class ScriptedLoadableModuleWidget:
        def __init__(self, parent=None) -> None:
            self.parent = parent or types.SimpleNamespace(isEntered=True)
            self.layout = types.SimpleNamespace(widgets=[])
            self.layout.addWidget = self.layout.widgets.append

        def setup(self) -> None:
            pass

        def resourcePath(self, relative: str) -> str:
            return str(MODULE_DIR / "Resources" / relative)

    class ScriptedLoadableModuleLogic:
        def __init__(self, parent=None) -> None:
            self.parent = parent

    class ScriptedLoadableModuleTest(unittest.TestCase):
        def delayDisplay(self, message: str, *args) -> None:
            dialogs.confirmations.append(message)

    base.ScriptedLoadableModule = ScriptedLoadableModule
    base.ScriptedLoadableModuleWidget = ScriptedLoadableModuleWidget
    base.ScriptedLoadableModuleLogic = ScriptedLoadableModuleLogic
    base.ScriptedLoadableModuleTest = ScriptedLoadableModuleTest
    return {"qt": qt, "slicer.ScriptedLoadableModule": base}


def install(slicer_module, dialogs: Dialogs) -> Dict[str, Any]:
    """Put the stand-ins in place; returns what was there before (for restore)."""
    saved = {name: sys.modules.get(name) for name in ("qt", "slicer.ScriptedLoadableModule", "PromptRegister")}
    saved_attributes = {name: getattr(slicer_module.util, name, None)
                        for name in ("loadUI", "childWidgetVariables", "errorDisplay", "confirmOkCancelDisplay",
                                     "setSliceViewerLayers")}
    saved["_util"] = saved_attributes
    saved["_app"] = getattr(slicer_module, "app", None)
    sys.modules.update(application_modules(dialogs))
    slicer_module.util.loadUI = load_ui
    slicer_module.util.childWidgetVariables = lambda ui: types.SimpleNamespace(**ui._widgets)
    slicer_module.util.errorDisplay = dialogs.error
    slicer_module.util.confirmOkCancelDisplay = dialogs.confirm
    slicer_module.util.setSliceViewerLayers = lambda **layers: None
    fitted = []
    slice_widget = types.SimpleNamespace(sliceLogic=lambda: types.SimpleNamespace(FitSliceToAll=lambda: fitted.append(1)))
    slicer_module.app = types.SimpleNamespace(layoutManager=lambda: types.SimpleNamespace(
        sliceWidget=lambda name: slice_widget), fitted=fitted)
    return saved


def restore(slicer_module, saved: Dict[str, Any]) -> None:
    for name, value in saved.pop("_util").items():
        if value is None:
            if hasattr(slicer_module.util, name):
                delattr(slicer_module.util, name)
        else:
            setattr(slicer_module.util, name, value)
    app = saved.pop("_app")
    if app is None:
        if hasattr(slicer_module, "app"):
            del slicer_module.app
    else:
        slicer_module.app = app
    for name, value in saved.items():
        if value is None:
            sys.modules.pop(name, None)
        else:
            sys.modules[name] = value


@contextlib.contextmanager
def loaded_module(slicer_module, dialogs: Dialogs):
    """PromptRegister.py imported as Slicer imports it, against a real scene (slicer.mrmlScene), with the stand-ins
    in place; everything is put back afterwards."""
    import importlib.util

    saved = install(slicer_module, dialogs)
    had_scene = hasattr(slicer_module, "mrmlScene")
    slicer_module.mrmlScene = slicer_module.vtkMRMLScene()
    if str(MODULE_DIR) not in sys.path:
        sys.path.insert(0, str(MODULE_DIR))
    spec = importlib.util.spec_from_file_location("PromptRegister", MODULE_DIR / "PromptRegister.py")
    loaded = importlib.util.module_from_spec(spec)
    sys.modules["PromptRegister"] = loaded
    spec.loader.exec_module(loaded)
    try:
        yield loaded
    finally:
        restore(slicer_module, saved)
        if not had_scene:
            del slicer_module.mrmlScene
