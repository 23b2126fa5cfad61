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

CHECKABLE = ("QCheckBox", "QRadioButton", "ctkCheckBox")
"""Classes whose buttons are checkable by default (a QPushButton is when its .ui says checkable)."""

_DEFAULTS = {"checked": False, "text": "", "currentText": "", "value": 0, "currentPath": "", "enabled": True,
             "toolTip": "", "collapsed": False}


def cpp_slot(method):
    """Marks a stand-in method that is a C++ slot in the real class (QTimer.start, qMRMLNodeComboBox.setCurrentNode):
    PythonQt hands a C++ slot every argument of the signal (deliver)."""
    method.cpp_slot = True
    return method


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
        changed = self._state.get(prop) != value
        self._state[prop] = value
        if prop == "checked" and changed and self._state.get("checkable", self._class in CHECKABLE):
            self.emit("toggled(bool)", value)  # QAbstractButton::setChecked emits toggled when the state changes

    def className(self) -> str:
        return self._class

    def connect(self, signal: str, slot) -> None:
        self.connections[signal].append(slot)

    def emit(self, signal: str, *args) -> None:
        """What Qt does when the user acts on the widget: each connected slot is called as PythonQt calls it
        (deliver)."""
        for slot in list(self.connections[signal]):
            deliver(slot, args)

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

    @cpp_slot
    def setCurrentNode(self, node) -> None:
        object.__setattr__(self, "node", node)
        self.sets["currentNode"] += 1

    @cpp_slot
    def setMRMLScene(self, scene) -> None:
        pass

    def setHorizontalHeaderLabels(self, labels) -> None:
        pass

    def setRowCount(self, count: int) -> None:
        self.sets["rowCount"] += 1
        self._state["rowCount"] = count

    def setItem(self, row: int, column: int, item) -> None:  # replaces the item: its selection goes (QTableWidget)
        self.sets["item"] += 1
        self.cells[(row, column)] = item

    # QComboBox.clear, qMRMLTableView.setMRMLTableNode
    def clear(self) -> None:
        self.items.clear()
        self._state["currentText"] = ""

    def setMRMLTableNode(self, node) -> None:
        object.__setattr__(self, "node", node)


def deliver(slot, args) -> None:
    """Call `slot` with a signal's arguments as PythonQt does (PythonQtSignalTarget::call in
    src/PythonQtSignalReceiver.cpp, commontk/PythonQt patched-9): a Python function, or a method of one, with no
    *args gets only as many arguments as its code takes (co_argcount, less self); anything else, such as a wrapped
    C++ slot (QTimer.start) or a functools.partial, gets all of them. So clicked(bool) -> QTimer.start calls
    start(False), which Qt takes as start(int msec=0)."""
    function = getattr(slot, "__func__", slot)
    if isinstance(function, types.FunctionType) and not getattr(function, "cpp_slot", False):
        code = function.__code__
        if not code.co_flags & inspect.CO_VARARGS:
            args = args[:code.co_argcount - (1 if inspect.ismethod(slot) else 0)]
    slot(*args)


def _property_value(element):
    strings = element.find("stringlist")
    if strings is not None:
        return [item.text or "" for item in strings.findall("string")]
    for kind, convert in (("bool", lambda t: t == "true"), ("number", int), ("double", float), ("string", str)):
        found = element.find(kind)
        if found is not None:
            return convert(found.text or "")
    return None


def load_ui(path: str) -> types.SimpleNamespace:
    """Every named widget of a Qt Designer file as a FakeWidget (a FakeNodeComboBox for qMRMLNodeComboBox) with
    the file's property values. The top widget's setMRMLScene emits mrmlSceneChanged, which reaches the widgets the
    file's <connections> name, as qMRMLWidget and uic wire it in Slicer."""
    from slicer_standin_app import FakeNodeComboBox

    root = ElementTree.parse(path).getroot()
    widgets = {}
    for element in root.iter("widget"):
        properties = {}
        for prop in element.findall("property"):
            value = _property_value(prop)
            if value is not None:
                properties[prop.get("name")] = value
        kind = FakeNodeComboBox if element.get("class") == "qMRMLNodeComboBox" else FakeWidget
        widgets[element.get("name")] = kind(element.get("name"), element.get("class"), properties)
    receivers = [connection.findtext("receiver") for connection in root.iter("connection")
                 if connection.findtext("signal") == "mrmlSceneChanged(vtkMRMLScene*)"]

    def set_scene(scene) -> None:
        for name in receivers:
            deliver(widgets[name].setMRMLScene, (scene,))

    return types.SimpleNamespace(**widgets, _widgets=widgets, setMRMLScene=set_scene)


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
        """QTimer (qtbase src/corelib/kernel/qtimer.cpp): start() and start(int msec), both slots; start(msec) sets
        the interval first, so a signal's False arriving at start gives a 0 ms timer (it fires on every turn of
        the event loop)."""

        def __init__(self) -> None:
            self.active, self.interval, self.slots = False, 0, []

        def setInterval(self, milliseconds: int) -> None:
            self.interval = milliseconds

        def connect(self, signal: str, slot) -> None:
            self.slots.append(slot)

        @cpp_slot
        def start(self, msec=None) -> None:
            if msec is not None:
                self.interval = int(msec)
            self.active = True

        @cpp_slot
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
        """As Base/Python/slicer/ScriptedLoadableModule.py (v5.6.2-v5.10.0): __init__ calls super().__init__()
        with no argument, so a mixin after it in the MRO is initialised with its defaults first."""

        def __init__(self, parent=None) -> None:
            super().__init__()
            self.moduleName = self.__class__.__name__[:-5] if self.__class__.__name__.endswith("Logic") else \
                self.__class__.__name__
            self.isSingletonParameterNode = True

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
    saved = {name: sys.modules.get(name) for name in ("qt", "slicer.ScriptedLoadableModule", "PromptRegister", "SampleData")}
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
    from slicer_standin_app import FakeApplication

    slicer_module.app = FakeApplication()
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
