"""The module's parameters, kept in a vtkMRMLScriptedModuleNode so they are
saved with the scene and come back when it is reopened.

Values are stored as the node's string parameters and node choices as node
references, written the way Slicer's parameterNodeWrapper writes them (bools
"True"/"False", numbers as str(), strings as they are, a node as an empty
parameter plus a reference of the same name), so a wrapper class with the same
field names reads them. Paths that belong to one machine (the worker's Python, a weights file) are not here:
they live in the application settings (PromptRegisterLib.settings), since a scene is sent to colleagues. This
module needs no Slicer application: it works
under the slicer-core wheel (tests, batch) and inside Slicer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from typing import Any, Dict, Optional

MODULE_NAME = "PromptRegister"

NODE_ROLES = ("fixedVolume", "movingVolume", "pointPrompts", "fixedPointPrompts", "outputTransform",
              "fixedSegmentation", "movingSegmentation")
"""Node references held by the parameter node."""

# Only light imports here: this runs in a stock Slicer (no torch, no scikit-image). The defaults are the engine's
# own, read from its light options package.
from promptregister.options.panel import (DEVICES, MODELS, PANEL_DEFAULTS, PRESET_GRID_SPACING_MM,  # noqa: E402
                                          PRESET_SLICE_STEP, PRESETS)


@dataclass
class Parameters:
    """Everything the module lets a user choose (nodes are referenced by role, see NODE_ROLES)."""

    use_text: bool = False
    use_points: bool = True
    use_auto: bool = False
    text: str = ""
    model: str = "auto"
    device: str = "auto"
    preset: str = "default"
    search_mm: float = float(PANEL_DEFAULTS["search_mm"])
    threshold: float = float(PANEL_DEFAULTS["threshold"])
    marginal_samples: int = int(PANEL_DEFAULTS["marginal_samples"])
    slice_step: int = int(PANEL_DEFAULTS["slice_step"])
    grid_spacing_mm: float = float(PANEL_DEFAULTS["grid_spacing_mm"])
    smoothness: float = float(PANEL_DEFAULTS["smoothness"])
    seed: int = int(PANEL_DEFAULTS["seed"])
    last_summary: Dict[str, Any] = field(default_factory=dict)

    def check_choices(self) -> None:
        """Refuse a model or device the engine does not know (a ValueError naming the choices)."""
        if self.model not in MODELS:
            raise ValueError(f"model must be one of {', '.join(MODELS)}; got {self.model!r}")
        if self.device not in DEVICES:
            raise ValueError(f"device must be one of {', '.join(DEVICES)}; got {self.device!r}")
        if self.preset not in PRESETS:
            raise ValueError(f"images (preset) must be one of {', '.join(PRESETS)}; got {self.preset!r}")

    @property
    def has_method(self) -> bool:
        """Whether a prompt kind is ticked; with none, Register registers the images alone."""
        return self.use_text or self.use_points or self.use_auto

    def validate(self) -> None:
        """Everything a registration needs from the settings (a ValueError saying what to change)."""
        self.check_choices()
        if self.preset == "paper" and not self.has_method:
            raise ValueError("the paper preset fits region pairs alone, so it needs a prompt: tick Text, Points or "
                             "Automatic, or choose other images (preset)")

    def choose_preset(self, preset: str) -> None:
        """Switch to `preset`; the control-point spacing and SAMReg's slice step take the preset's (they were
        chosen with it)."""
        if preset != self.preset:
            self.preset = preset
            self.grid_spacing_mm = float(PRESET_GRID_SPACING_MM.get(preset, self.grid_spacing_mm))
            self.slice_step = int(PRESET_SLICE_STEP.get(preset, self.slice_step))

    def request_options(self) -> Dict[str, Any]:
        """The worker's "options" for these parameters."""
        return {"search_mm": self.search_mm, "threshold": self.threshold, "marginal_samples": self.marginal_samples,
                "auto_slice_step": self.slice_step, "grid_spacing_mm": self.grid_spacing_mm,
                "smoothness": self.smoothness, "seed": self.seed, "preset": self.preset}


def find_or_create_parameter_node(scene):
    """The scene's PromptRegister parameter node: the singleton tagged with the module's name, created with
    defaults when missing.

    As ScriptedLoadableModuleLogic.getParameterNode does: the node is found by its singleton tag, not by its
    ModuleName, because Close Scene keeps singleton nodes but resets them (the reset clears ModuleName), and the
    ModuleName attribute is set again so getAllParameterNodes() and node selectors find it. The node returned is
    the one in the scene: AddNode merges a new node into an existing singleton and returns that one.
    """
    import slicer

    node = scene.GetSingletonNode(MODULE_NAME, "vtkMRMLScriptedModuleNode")
    if node is None:
        new = slicer.vtkMRMLScriptedModuleNode()
        new.SetSingletonTag(MODULE_NAME)
        new.SetName(scene.GenerateUniqueName(MODULE_NAME))
        write_parameters(new, Parameters())
        node = scene.AddNode(new)
    if node.GetAttribute("ModuleName") != MODULE_NAME:
        node.SetAttribute("ModuleName", MODULE_NAME)
    return node


def _encode(value: Any) -> str:
    """parameterNodeWrapper's text for a value: bool "True"/"False", numbers str(), strings as they are
    (and, having no wrapper equivalent here, a dict as JSON)."""
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, dict):
        return json.dumps(value)
    return str(value)


def _decode(text: str, default: Any) -> Any:
    """The value `text` encodes, of the default's type."""
    if isinstance(default, bool):
        if text not in ("True", "False"):
            raise ValueError(f"not a bool: {text!r}")
        return text == "True"
    if isinstance(default, dict):
        value = json.loads(text)
        if not isinstance(value, dict):
            raise ValueError("not a JSON object")
        return value
    return type(default)(text)


def write_parameters(node, parameters: Parameters) -> None:
    """Store every value (no method ticked is allowed here: the user may be half-way through changing it)."""
    parameters.check_choices()
    for item in fields(parameters):
        node.SetParameter(item.name, _encode(getattr(parameters, item.name)))


def read_parameters(node) -> Parameters:
    """Parameters from the node; missing or unreadable values keep their defaults."""
    defaults = Parameters()
    values = {}
    for item in fields(Parameters):
        if not node.HasParameter(item.name):
            continue
        try:
            values[item.name] = _decode(node.GetParameter(item.name), getattr(defaults, item.name))
        except ValueError:  # json.JSONDecodeError is a ValueError too
            continue
    return Parameters(**values)


def set_node(parameter_node, role: str, node: Optional[object]) -> None:
    if role not in NODE_ROLES:
        raise ValueError(f"unknown node role {role!r}; known: {', '.join(NODE_ROLES)}")
    parameter_node.SetParameter(role, "")  # as parameterNodeWrapper marks a node parameter as present
    parameter_node.SetNodeReferenceID(role, node.GetID() if node is not None else None)


def get_node(parameter_node, role: str):
    if role not in NODE_ROLES:
        raise ValueError(f"unknown node role {role!r}; known: {', '.join(NODE_ROLES)}")
    return parameter_node.GetNodeReference(role)


def preselect_volumes(scene, parameter_node) -> None:
    """As Slicer's module template does: an empty fixed volume takes the scene's first scalar volume, and an empty
    moving volume the first other one, so two loaded scans are ready to register. A moving volume that is the
    fixed one (Slicer's volume selectors both select the first volume loaded) takes the first other one as soon as
    there is one."""
    volumes = [scene.GetNthNodeByClass(index, "vtkMRMLScalarVolumeNode")
               for index in range(scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode"))]
    volumes = [node for node in volumes if not node.IsA("vtkMRMLLabelMapVolumeNode")]
    fixed = get_node(parameter_node, "fixedVolume")
    if fixed is None and volumes:
        fixed = volumes[0]
        set_node(parameter_node, "fixedVolume", fixed)
    moving = get_node(parameter_node, "movingVolume")
    if moving is None or moving is fixed:
        others = [node for node in volumes if node is not fixed]
        if others:
            set_node(parameter_node, "movingVolume", others[0])
