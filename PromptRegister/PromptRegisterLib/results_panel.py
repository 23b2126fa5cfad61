"""The panel's Results section: the last result's region pairs and summary, and what the user does with the result
(show the regions, apply or remove the transform, resample, harden, view the volumes side by side).

Kept out of PromptRegister.py so the Widget stays thin. No Qt import: the widgets are the .ui's (given), table
cells are made by `table_item` (qt.QTableWidgetItem in Slicer), and dialogs go through `error_display`.
"""

from __future__ import annotations

from typing import Callable, List, Optional, Tuple

import slicer

from .parameters import get_node
from .views import show_side_by_side

COLUMNS = ("pair", "source", "similarity", "overlap after")


def pair_rows(summary: dict) -> List[Tuple[str, str, str, str]]:
    """One row per region pair of a result summary, in the table's columns."""
    return [(pair.get("name", ""), pair.get("source", {}).get("method", ""), f"{pair.get('score', 0):.3f}",
             f"{pair.get('dice_after', 0):.3f}") for pair in summary.get("pairs", [])]


def summary_text(summary: dict) -> Tuple[str, str]:
    """(the panel's summary line, its tooltip): pairs, their overlap, folding, the report, what was dropped, and
    every warning (a result worse than the pre-alignment is said where the user looks)."""
    pairs = summary.get("pairs", [])
    text = (f"{len(pairs)} region pairs; mean pair overlap after {summary.get('mean_dice_after')} (how "
            "well each pair's two regions coincide, not a score of your structures); "
            f"folding {summary.get('jacobian', {}).get('folding_percent', 0):.3f}%")
    if summary.get("report"):
        text += f"\nPictures of the result: {summary['report']}"
    dropped = summary.get("dropped_pairs") or []
    if dropped:  # listed, never silent: the user may want to re-prompt those structures
        text += f"; dropped {len(dropped)} contradicted pairs: " + ", ".join(d["name"] for d in dropped)
    warnings = summary.get("warnings") or []
    return "\n".join([text] + [f"Warning: {warning}." for warning in warnings]), "\n".join(warnings)


class ResultsPanel:
    def __init__(self, ui, logic, parameter_node: Callable[[], object], error_display: Callable[[str], None],
                 table_item: Callable[[str], object]):
        self.ui = ui
        self.logic = logic  # ModuleLogic
        self.parameter_node = parameter_node
        self.error_display = error_display
        self.table_item = table_item
        self._shown: Optional[dict] = None  # the summary the table shows

    def setup(self) -> None:
        ui = self.ui
        ui.resultsTable.setHorizontalHeaderLabels(list(COLUMNS))
        ui.showRoisCheckBox.connect("toggled(bool)", self.show_rois)
        ui.applyTransformButton.connect("toggled(bool)", self.apply_transform)
        ui.resampleButton.connect("clicked(bool)", self.resample)
        ui.hardenTransformButton.connect("clicked(bool)", self.harden)
        ui.layoutButton.connect("clicked(bool)", self.side_by_side)

    def show_rois(self, visible: bool) -> None:
        self.logic.setRoisVisible(self.parameter_node(), visible)

    def apply_transform(self, applied: bool) -> None:
        self.logic.setTransformApplied(self.parameter_node(), applied)

    def harden(self, checked: bool = False) -> None:
        self.logic.hardenTransform(self.parameter_node())

    def refresh(self, summary: Optional[dict]) -> None:
        """Show the last result; the table is rebuilt only when the result changes (the GUI updates every 200 ms
        during a run, and a rebuilt table loses the user's selection and scroll position)."""
        node = self.parameter_node()
        has_result = node is not None and get_node(node, "outputTransform") is not None
        applied = node is not None and self.logic.transformApplied(node)
        if self.ui.applyTransformButton.checked != applied:
            self.ui.applyTransformButton.checked = applied
        for button in (self.ui.applyTransformButton, self.ui.resampleButton, self.ui.hardenTransformButton):
            button.enabled = has_result
        if summary == self._shown:
            return
        self._shown = summary
        table = self.ui.resultsTable
        rows = pair_rows(summary) if summary else []
        table.setRowCount(len(rows))
        for row, cells in enumerate(rows):
            for column, text in enumerate(cells):
                table.setItem(row, column, self.table_item(text))
        # no result in this scene (a new or closed scene): nothing of an earlier one stays
        text, tooltip = summary_text(summary) if summary else ("", "")
        self.ui.summaryLabel.text = text
        self.ui.summaryLabel.toolTip = tooltip

    def resample(self, checked: bool = False) -> None:
        node = self.parameter_node()
        try:
            nodes = self.logic.resample(node, self.ui.resampleExtraSelector.currentNode())
        except ValueError as error:
            self.error_display(f"Resampling failed: {error}")
            return
        slicer.util.setSliceViewerLayers(background=get_node(node, "fixedVolume"), foreground=nodes[0],
                                         foregroundOpacity=0.5)

    def side_by_side(self, checked: bool = False) -> None:
        node = self.parameter_node()
        try:
            views = show_side_by_side(slicer.mrmlScene, get_node(node, "fixedVolume"), get_node(node, "movingVolume"))
        except ValueError as error:
            self.error_display(str(error))
            return
        layout_manager = slicer.app.layoutManager()
        for name in views:
            layout_manager.sliceWidget(name).sliceLogic().FitSliceToAll()
