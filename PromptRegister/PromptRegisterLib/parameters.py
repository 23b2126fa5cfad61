"""The module's parameters, kept in a vtkMRMLScriptedModuleNode so they are
saved with the scene and come back when it is reopened.

Values are stored as the node's string parameters and node choices as node
references, written the way Slicer's parameterNodeWrapper writes them (bools
"True"/"False", numbers as str(), strings as they are, a node as an empty
parameter plus a reference of the same name), so a wrapper class with the same
field names reads them. This module needs no Slicer application: it works
under the slicer-core wheel (tests, batch) and inside Slicer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from typing import Any, Dict, Optional

MODULE_NAME = "PromptRegister"

NODE_ROLES = ("fixedVolume", "movingVolume", "pointPrompts", "outputTransform", "fixedSegmentation",
              "movingSegmentation")
"""Node references held by the parameter node."""

from promptregister.dense.fit import FitOptions  # noqa: E402
from promptregister.methods import PromptRegOptions, SamRegOptions  # noqa: E402

_SAMREG, _PROMPTREG, _FIT = SamRegOptions(), PromptRegOptions(), FitOptions()
"""The engine's defaults: the module starts from them rather than from copies that could drift."""

MODELS = ("vit_b", "vit_l", "vit_h", "medsam", "mobilesam", "classical", "custom", "auto")
DEVICES = ("auto", "cuda", "cpu")


@dataclass
class Parameters:
    """Everything the module lets a user choose (nodes are referenced by role, see NODE_ROLES)."""

    use_text: bool = False
    use_points: bool = True
    use_auto: bool = False
    text: str = ""
    model: str = "auto"
    device: str = "auto"
    worker_python: str = ""
    checkpoint: str = ""
    search_mm: float = _SAMREG.search_mm
    threshold: float = _SAMREG.threshold
    marginal_samples: int = _PROMPTREG.marginal_samples
    slice_step: int = _SAMREG.slice_step
    grid_spacing_mm: float = _FIT.grid_spacing_mm
    smoothness: float = _FIT.smoothness
    seed: int = _FIT.seed
    last_summary: Dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        if self.model not in MODELS:
            raise ValueError(f"model must be one of {', '.join(MODELS)}; got {self.model!r}")
        if self.device not in DEVICES:
            raise ValueError(f"device must be one of {', '.join(DEVICES)}; got {self.device!r}")
        if not (self.use_text or self.use_points or self.use_auto):
            raise ValueError("choose at least one way to register: text, points or automatic")

    def request_options(self) -> Dict[str, Any]:
        """The worker's "options" for these parameters."""
        return {"search_mm": self.search_mm, "threshold": self.threshold, "marginal_samples": self.marginal_samples,
                "slice_step": self.slice_step, "grid_spacing_mm": self.grid_spacing_mm,
                "smoothness": self.smoothness, "seed": self.seed}


def find_or_create_parameter_node(scene):
    """The scene's PromptRegister parameter node (a singleton, created with defaults when missing)."""
    import slicer

    for index in range(scene.GetNumberOfNodesByClass("vtkMRMLScriptedModuleNode")):
        node = scene.GetNthNodeByClass(index, "vtkMRMLScriptedModuleNode")
        if node.GetModuleName() == MODULE_NAME:
            return node
    node = slicer.vtkMRMLScriptedModuleNode()
    node.SetModuleName(MODULE_NAME)
    node.SetName(f"{MODULE_NAME} parameters")
    node.SetSingletonTag(MODULE_NAME)
    scene.AddNode(node)
    write_parameters(node, Parameters())
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
    parameters.validate()
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
