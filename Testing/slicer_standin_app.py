"""FAKE stand-ins, as strict as the real classes in the ways the module depends on: qMRMLNodeComboBox's selection
rules, slicer.app's startupCompleted signal and the Sample Data module's registration call (5.6's signature or
5.8's). Each says which Slicer or Qt source it imitates. See slicer_standins.py for the rest."""

from __future__ import annotations

import collections
import sys
import types
import weakref
from typing import Any, Dict, List

from slicer_standins import FakeWidget, cpp_slot, deliver


class FakeNodeComboBox(FakeWidget):
    """qMRMLNodeComboBox (Libs/MRML/Widgets/qMRMLNodeComboBox.cxx, v5.6.2-v5.10.0) over QComboBox (qtbase
    src/widgets/widgets/qcombobox.cpp, QComboBoxPrivate::_q_rowsInserted / _q_rowsRemoved).

    - It lists the scene's nodes of `nodeTypes`; subclasses too unless `showChildNodeTypes` is false (a label map
      is a vtkMRMLScalarVolumeNode).
    - With noneEnabled false, when nodes arrive in an empty list QComboBox makes the first one current, and
      emitCurrentNodeChanged emits currentNodeChanged(node): the panel hears of it like a user's choice.
    - When the current node leaves the scene, the row that takes its place becomes current (or none).
    - setCurrentNode emits currentNodeChanged when the node changes (currentIndexChanged -> emitCurrentNodeChanged),
      and nothing when it does not.
    """

    SIGNAL = "currentNodeChanged(vtkMRMLNode*)"

    def __init__(self, name: str, class_name: str, properties: Dict[str, Any]):
        super().__init__(name, class_name, {"noneEnabled": False, "showChildNodeTypes": True, "nodeTypes": [],
                                            **properties})
        object.__setattr__(self, "scene", None)
        object.__setattr__(self, "observations", [])
        object.__setattr__(self, "listed", [])

    @cpp_slot
    def setMRMLScene(self, scene) -> None:
        for tag in self.observations:
            self.scene.RemoveObserver(tag)
        object.__setattr__(self, "scene", scene)
        object.__setattr__(self, "observations", [])
        object.__setattr__(self, "listed", [])
        if scene is not None:  # the observer holds the combo box weakly: no cycle through VTK for the collector
            combo = weakref.ref(self)

            def changed(caller, event) -> None:
                if combo() is not None:
                    combo()._scene_changed()

            for event in (scene.NodeAddedEvent, scene.NodeRemovedEvent, scene.EndCloseEvent, scene.EndImportEvent):
                self.observations.append(scene.AddObserver(event, changed))
        self._scene_changed()

    def nodes(self) -> List[Any]:
        """The nodes the combo box lists, in the scene's order."""
        if self.scene is None:
            return []
        found = []
        for index in range(self.scene.GetNumberOfNodes()):
            node = self.scene.GetNthNode(index)
            wanted = (node.GetClassName() in self.nodeTypes if not self.showChildNodeTypes
                      else any(node.IsA(kind) for kind in self.nodeTypes))
            if wanted and not node.GetHideFromEditors():
                found.append(node)
        return found

    def _scene_changed(self, *args) -> None:
        before, now = self.listed, self.nodes()
        object.__setattr__(self, "listed", now)
        current = self.node
        if current is not None and current not in now:  # the current row was removed
            row = before.index(current) if current in before else 0
            self._select(now[min(row, len(now) - 1)] if now else None)
        elif current is None and not before and now and not self.noneEnabled:
            self._select(now[0])  # rows arrived in an empty QComboBox: it makes row 0 current

    def _select(self, node) -> None:
        if node is not self.node:
            object.__setattr__(self, "node", node)
            self.emit(self.SIGNAL, node)

    @cpp_slot
    def setCurrentNode(self, node) -> None:
        self.sets["currentNode"] += 1
        if node is not None and self.scene is not None and node not in self.nodes():
            node = None  # setCurrentNodeID finds no row for it: no current node
        self._select(node)


class FakeApplication:
    """slicer.app (qSlicerApplication, Base/QTGUI/qSlicerApplication.h): the startupCompleted() signal that
    scripted modules connect to in their module class, and layoutManager()."""

    def __init__(self) -> None:
        self.connections: Dict[str, list] = collections.defaultdict(list)
        self.fitted: List[int] = []
        slice_logic = types.SimpleNamespace(FitSliceToAll=lambda: self.fitted.append(1))
        self._slice_widget = types.SimpleNamespace(sliceLogic=lambda: slice_logic)

    def connect(self, signal: str, slot) -> None:
        if signal != "startupCompleted()":
            raise AttributeError(f"slicer.app has no signal {signal!r} here")
        self.connections[signal].append(slot)

    def emit(self, signal: str, *args) -> None:
        for slot in list(self.connections[signal]):
            deliver(slot, args)

    def layoutManager(self):
        return types.SimpleNamespace(sliceWidget=lambda name: self._slice_widget)


def sample_data_module(version: str) -> types.ModuleType:
    """The SampleData scripted module as far as registerCustomSampleDataSource goes, with the keyword arguments
    of Slicer `version` (Modules/Scripted/SampleData/SampleData.py): 5.6 knows loadFileType only; 5.8 and later
    take loadFileTypes and keep loadFileType as an alias, refusing both at once. Registered sources are kept in
    `module.sources`."""
    module = types.ModuleType("SampleData")
    module.sources = []

    if version == "5.6":
        def register(category="Custom", sampleName=None, uris=None, fileNames=None, nodeNames=None,
                     customDownloader=None, thumbnailFileName=None, loadFileType="VolumeFile", loadFiles=None,
                     loadFileProperties={}, checksums=None):
            module.sources.append({"category": category, "sampleName": sampleName, "uris": uris,
                                   "fileNames": fileNames, "nodeNames": nodeNames, "checksums": checksums,
                                   "loadFileTypes": loadFileType})
    else:
        def register(category="Custom", sampleName=None, uris=None, fileNames=None, nodeNames=None,
                     customDownloader=None, thumbnailFileName=None, loadFileTypes=None, loadFiles=None,
                     loadFileProperties={}, checksums=None, loadFileType=None):
            if loadFileType is not None and loadFileTypes is not None:
                raise ValueError("loadFileType and loadFileTypes cannot be specified at the same time")
            module.sources.append({"category": category, "sampleName": sampleName, "uris": uris,
                                   "fileNames": fileNames, "nodeNames": nodeNames, "checksums": checksums,
                                   "loadFileTypes": loadFileTypes if loadFileTypes is not None else loadFileType})

    module.SampleDataLogic = type("SampleDataLogic", (), {"registerCustomSampleDataSource": staticmethod(register)})
    return module


def install_sample_data(version: str) -> types.ModuleType:
    """Put a SampleData stand-in of `version` in sys.modules (the caller restores it)."""
    module = sample_data_module(version)
    sys.modules["SampleData"] = module
    return module
