"""The pairs of one interactive session under stable ids, with the history that undo walks back.

Every user change (a new pair, a correction, a deletion, a batch of pairs from "auto" or a text prompt) is one
step of the history; undo reverts the last step. A background refinement replaces a pair in place without a
step of its own (undoing the click removes the pair, whichever version it had by then), and only when the pair
is still the version the refinement started from.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Dict, List, Optional, Tuple

from ..errors import PromptRegisterError
from ..methods.pairs import SlicePair
from ..methods.promptreg import PointPrompt
from ..roipairs import RoiPair


@dataclass
class InteractivePair:
    """One pair as the user sees it.

    Attributes:
        id: stable across requests ("p1", "p2", ...).
        number: creation order, 1-based (names and seeds PromptReg's prompt as in one batch call).
        slice_pair: the method's 2D pair (kept for corrections and refinement).
        roi: the 3D pair the fit uses.
        method: promptreg, samreg, tell2reg or correction.
        points: the moving prompt points (PromptReg).
        version: increases with every change; a refinement applies only to the version it started from.
        refined: a fast first answer has been replaced by the full method's (marginalised) one.
        corrected_lps: the user's own fixed point, when the fixed ROI was corrected.
    """

    id: str
    number: int
    slice_pair: SlicePair
    roi: RoiPair
    method: str
    points: List[PointPrompt] = field(default_factory=list)
    version: int = 1
    refined: bool = False
    corrected_lps: Optional[Tuple[float, float, float]] = None


class PairBook:
    """Live pairs by id, in creation order, and the history of changes."""

    def __init__(self) -> None:
        self.pairs: Dict[str, InteractivePair] = {}
        self.deleted: Dict[str, InteractivePair] = {}
        self.history: List[Tuple[str, List[Tuple[str, Optional[InteractivePair]]]]] = []
        self.created = 0

    def new_id(self) -> Tuple[str, int]:
        self.created += 1
        return f"p{self.created}", self.created

    def get(self, pair_id: str) -> InteractivePair:
        """A live pair; a clear error for an id that was deleted or never existed."""
        if pair_id in self.pairs:
            return self.pairs[pair_id]
        if pair_id in self.deleted:
            raise PromptRegisterError(f"pair {pair_id} was deleted; undo the deletion to use it again")
        known = ", ".join(self.pairs) or "none"
        raise PromptRegisterError(f"there is no pair {pair_id!r} in this session (pairs: {known})")

    def add(self, pairs: List[InteractivePair], action: str) -> None:
        for pair in pairs:
            self.pairs[pair.id] = pair
        self.history.append((action, [(pair.id, None) for pair in pairs]))

    def change(self, new: InteractivePair, action: str) -> InteractivePair:
        """Replace a live pair by a new version (a correction, more points); one step of the history."""
        old = self.get(new.id)
        new = replace(new, version=old.version + 1)
        self.pairs[new.id] = new
        self.history.append((action, [(new.id, old)]))
        return new

    def refine(self, new: InteractivePair, version: int) -> bool:
        """Put a refined pair in place of the version it was computed from; False when the pair changed or was
        deleted meanwhile (the refinement is then dropped)."""
        current = self.pairs.get(new.id)
        if current is None or current.version != version:
            return False
        self.pairs[new.id] = replace(new, version=version, refined=True)
        return True

    def delete(self, pair_id: str) -> None:
        pair = self.get(pair_id)
        del self.pairs[pair_id]
        self.deleted[pair_id] = pair
        self.history.append(("delete", [(pair_id, pair)]))

    def undo(self) -> Tuple[str, List[str], List[InteractivePair]]:
        """Revert the last change: (what it was, ids removed, pairs put back as they were)."""
        if not self.history:
            raise PromptRegisterError("nothing to undo")
        action, steps = self.history.pop()
        removed, restored = [], []
        for pair_id, before in steps:
            if before is None:  # the step made this pair: remove it
                if self.pairs.pop(pair_id, None) is not None:
                    removed.append(pair_id)
            else:  # the step changed or deleted it: put the earlier version back
                self.deleted.pop(pair_id, None)
                self.pairs[pair_id] = before
                restored.append(before)
        return action, removed, restored

    def live(self, ids: Optional[List[str]] = None) -> List[InteractivePair]:
        """The live pairs (all, or those named, in the order given)."""
        if ids is None:
            return list(self.pairs.values())
        return [self.get(pair_id) for pair_id in ids]
