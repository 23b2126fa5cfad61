"""Where the module's result transform sits among the transforms a user already has.

A user may have placed the moving volume under a transform of their own (a
manual or landmark pre-alignment). The module never drops such a transform:
it registers the moving volume as that chain places it (linear chains only:
the engine sees the voxels through the chain's matrix, exactly, without
resampling), and puts its result at the top of the chain, so that

    world point = result.ToParent( user chain( voxel ) )

and "fixed point -> moving voxel" is the result's FromParent followed by the
inverse of the user's chain. Transforms the module wrote carry RESULT_ATTRIBUTE
and are the only ones it ever detaches.
"""

from __future__ import annotations

from typing import List, Optional

import numpy as np

RESULT_ATTRIBUTE = "PromptRegister.result"
"""Set to "1" on every transform node the module created."""


class TransformChainError(ValueError):
    """A transform hierarchy the module cannot register through; the message says what to do."""


def is_module_transform(node) -> bool:
    return node is not None and node.GetAttribute(RESULT_ATTRIBUTE) == "1"


def mark_module_transform(node) -> None:
    node.SetAttribute(RESULT_ATTRIBUTE, "1")


def user_chain(node) -> List[object]:
    """The transforms above `node` that the user set, nearest first, up to (not including) the first one the
    module made."""
    chain = []
    parent = node.GetParentTransformNode()
    while parent is not None and not is_module_transform(parent):
        chain.append(parent)
        parent = parent.GetParentTransformNode()
    return chain


def chain_matrix(chain: List[object]) -> np.ndarray:
    """The 4x4 RAS matrix of a linear chain (nearest transform applied first)."""
    import vtk

    matrix = np.eye(4)
    for transform in chain:
        step = vtk.vtkMatrix4x4()
        transform.GetMatrixTransformToParent(step)
        matrix = np.array([[step.GetElement(r, c) for c in range(4)] for r in range(4)]) @ matrix
    return matrix


def placement_matrix(node) -> Optional[np.ndarray]:
    """The RAS matrix of the user's chain above `node` (for mrml.volume_from_node), or None when there is none."""
    chain = user_chain(node)
    return chain_matrix(chain) if chain else None


def check_registration_inputs(fixed_node, moving_node) -> List[object]:
    """The moving volume's user chain, after refusing what cannot be registered through (TransformChainError);
    send the moving voxels with placement_matrix(moving_node).

    The fixed volume must not be under a transform: the result lives on its grid as stored. The moving volume's
    own transforms must be linear; a non-linear one has to be hardened first."""
    if fixed_node is moving_node:
        raise TransformChainError(
            f"The fixed and the moving volume are the same volume ('{fixed_node.GetName()}'): choose the volume to "
            "align as the moving volume and the one to align it to as the fixed volume.")
    if fixed_node.GetParentTransformNode() is not None:
        name = fixed_node.GetParentTransformNode().GetName()
        raise TransformChainError(
            f"The fixed volume '{fixed_node.GetName()}' is under the transform '{name}'. PromptRegister aligns the "
            "moving volume to the fixed volume as it is stored: harden that transform (Data module, right-click > "
            "Harden transform) or remove it, then register again.")
    chain = user_chain(moving_node)
    for transform in chain:
        if not transform.IsLinear():
            raise TransformChainError(
                f"The moving volume '{moving_node.GetName()}' is under the non-linear transform "
                f"'{transform.GetName()}'. Only a linear pre-alignment can be kept: harden that transform (Data "
                "module, right-click > Harden transform) or remove it, then register again.")
    linear = chain_matrix(chain)[:3, :3]
    gram = linear.T @ linear
    if chain and not np.allclose(gram, np.eye(3) * np.trace(gram) / 3, rtol=0, atol=1e-6 * np.trace(gram)):
        raise TransformChainError(
            f"The moving volume '{moving_node.GetName()}' is under a linear transform that shears or stretches it "
            "unevenly; only a rigid (or uniformly scaled) pre-alignment can be kept exactly. Harden the transform "
            "(Data module, right-click > Harden transform), then register again.")
    return chain


def top_of_chain(node) -> object:
    """The node whose parent the result becomes: the last user transform above `node`, or `node` itself."""
    chain = user_chain(node)
    return chain[-1] if chain else node


def attach(moving_node, result_node) -> None:
    """Place the result above the moving volume and its user chain (replacing an earlier result there)."""
    top_of_chain(moving_node).SetAndObserveTransformNodeID(result_node.GetID())


def detach(moving_node, result_node: Optional[object] = None) -> bool:
    """Take the module's result (or the given one) off the moving volume's chain; user transforms stay.
    Returns whether anything was taken off."""
    top = top_of_chain(moving_node)
    parent = top.GetParentTransformNode()
    if parent is None or not is_module_transform(parent):
        return False
    if result_node is not None and parent.GetID() != result_node.GetID():
        return False
    top.SetAndObserveTransformNodeID(None)
    return True
