"""The browser app's page: a toolbar with the workflow's buttons, a side panel (volumes, status, verdict, pairs,
downloads) and the three slice views. Only layout here: every button calls a method of the app (app.py).

Elements the tests find carry ids ("register", "update-transform", "pairs-table", "verdict", ...) and each view
carries its name ("view-Fixed", ...).
"""

from __future__ import annotations

from trame.ui.vuetify3 import SinglePageWithDrawerLayout
from trame.widgets import html
from trame.widgets import vuetify3 as v3

from .exports import DOWNLOADS
from .pair_views import VIEW_COLOURS

TABLE_HEADERS = [{"title": title, "key": key} for title, key in (
    ("pair", "pair"), ("similarity", "similarity"), ("overlap", "dice after fit"), ("flag", "flag"))]

HELP = ("Click a structure on the moving view: it becomes a pair, one colour on both volumes. Update transform "
        "registers with the pairs. To correct a pair, choose its row, then click where it is on the fixed view.")


def slice_view_gutter(server, view_id: str, view) -> None:
    """Over each slice view: its name (coloured as in the layout), a reset button and its slice slider."""
    from trame_slicer.app.logic.slice_view_logic import connect_slice_view_slider_to_state
    from trame_slicer.app.ui.slider import Slider

    name = view.get_singleton_tag()
    with html.Div(style="position:absolute;top:0;left:0;right:0;display:flex;align-items:center;gap:6px;"
                        "padding:4px 8px;background:rgba(0,0,0,0.35);z-index:1;pointer-events:none;"):
        html.Span(name, id=f"view-{name}", classes="view-name",
                  style=f"color:{VIEW_COLOURS.get(name, '#fff')};font-weight:600;")
        v3.VSpacer()
        with v3.VBtn(size="small", variant="text", click=view.reset_view, style="pointer-events:auto;",
                     title="Fit the slice to the view"):
            v3.VIcon("mdi-fit-to-screen-outline", color="white")
    with html.Div(style="position:absolute;bottom:0;left:0;width:100%;"):
        Slider(typed_state=connect_slice_view_slider_to_state(server, view), classes="slice-slider", theme="dark",
               dense=True)


def build_page(server, app, layout_manager, title: str = "PromptRegister"):
    """The whole page; `app` (WebApp) holds the handlers, `layout_manager` places the three views."""
    state = server.state
    with SinglePageWithDrawerLayout(server, full_height=True, width=380) as layout:
        layout.title.set_text(title)
        layout.footer.hide()
        with layout.toolbar:
            v3.VSpacer()
            _button("Register", "register", app.register, "mdi-play", "The image registration alone (no prompt)")
            _button("Update transform", "update-transform", app.update_transform, "mdi-refresh",
                    "Fit the transform to the pairs")
            _button("Auto", "auto", app.auto, "mdi-auto-fix", "Find pairs everywhere (segment everything and match)")
            v3.VTextField(v_model=("phrase", ""), id="phrase", placeholder="text prompt", density="compact",
                          hide_details=True, style="max-width:180px;", disabled=("!ready",),
                          __events=[("keyup_enter", "keyup.enter")], keyup_enter=app.text)
            _button("Undo", "undo", app.undo, "mdi-undo", "Undo the last change to the pairs")
            _button("Delete", "delete", app.delete, "mdi-delete", "Delete the pair chosen in the table",
                    disabled="!ready || !selected")
            _button("Cancel", "cancel", app.cancel, "mdi-stop", "Stop the running step",
                    disabled="working.length === 0")
        with layout.drawer:
            with v3.VContainer(classes="pa-3"):
                with v3.VCard(classes="mb-3", variant="outlined"):
                    v3.VCardTitle("Status", classes="text-subtitle-1")
                    with v3.VCardText():
                        html.Div("{{ status }}", id="status", classes="text-body-2")
                        v3.VProgressLinear(v_if=("working.length > 0",), indeterminate=("!progress",),
                                           model_value=("progress ? 100 * progress.fraction : 0",),
                                           color="primary", classes="my-2", id="progress")
                        html.Div("{{ message }}", id="message", classes="text-caption mt-1")
                        html.Div("{{ cursor }}", id="cursor", classes="text-caption text-medium-emphasis")
                        v3.VAlert(v_if=("verdict",), text=("verdict",), id="verdict", density="compact",
                                  classes="mt-2", type=("verdict.startsWith('Better') ? 'success' : 'warning'",))
                with v3.VCard(classes="mb-3", variant="outlined"):
                    v3.VCardTitle("Pairs", classes="text-subtitle-1")
                    with v3.VCardText():
                        html.Div(HELP, classes="text-caption mb-2")
                        v3.VDataTable(headers=("pair_headers", TABLE_HEADERS), items=("rows", []), id="pairs-table",
                                      density="compact", items_per_page=-1, hide_default_footer=True,
                                      item_value="pair", row_props=("row => ({class: row.item.pair === selected ? "
                                                                    "'pair-row bg-primary' : 'pair-row'})",),
                                      __events=[("click_row", "click:row")],  # not among trame's declared events
                                      click_row="(event, row) => trigger('choose_pair', [row.item.pair])")
                        v3.VSwitch(v_model=("after_every_change", False), label="Update after every change",
                                   density="compact", hide_details=True, color="primary")
                        v3.VSlider(v_model=("opacity", 0.5), min=0, max=1, step=0.05, label="Overlay: moving",
                                   density="compact", hide_details=True)
                _volumes_card(app, state)
                _downloads_card(app)
        with layout.content:
            with html.Div(style="position:relative;width:100%;height:100%;"):
                layout_manager.initialize_layout_grid(layout)
    return layout


def _button(text: str, element_id: str, handler, icon: str, tip: str, disabled: str = "!ready"):
    with v3.VBtn(id=element_id, click=handler, disabled=(disabled,), variant="text", title=tip,
                 prepend_icon=icon):
        html.Span(text)


def _volumes_card(app, state) -> None:
    with v3.VCard(classes="mb-3", variant="outlined"):
        v3.VCardTitle("Volumes", classes="text-subtitle-1")
        with v3.VCardText():
            with html.Div(v_if=("data_files.length > 0",)):
                v3.VSelect(v_model=("fixed_name", None), items=("data_files", []), label="Fixed (from the data folder)",
                           density="compact", id="fixed-name")
                v3.VSelect(v_model=("moving_name", None), items=("data_files", []),
                           label="Moving (from the data folder)", density="compact", id="moving-name")
                v3.VBtn("Open", id="open", click=app.open_named, disabled=("!fixed_name || !moving_name",),
                        color="primary", variant="tonal", classes="mb-2")
            with html.Div(v_if=("uploads_allowed",)):
                v3.VFileInput(v_model=("fixed_upload", None), label="Fixed (upload)", density="compact",
                              show_size=True, id="fixed-upload")
                v3.VFileInput(v_model=("moving_upload", None), label="Moving (upload)", density="compact",
                              show_size=True, id="moving-upload")
                v3.VBtn("Open uploads", id="open-uploads", click=app.open_uploads,
                        disabled=("!uploads_ready",), variant="tonal")
            html.Div("{{ volumes }}", id="volumes", classes="text-caption mt-2")


def _downloads_card(app) -> None:
    labels = {"transform": "Transform (.h5)", "fixed_segmentation": "Fixed pairs (.seg.nrrd)",
              "moving_segmentation": "Moving pairs (.seg.nrrd)", "scene": "Scene (.mrb)"}
    with v3.VCard(variant="outlined"):
        v3.VCardTitle("Download", classes="text-subtitle-1")
        with v3.VCardText(classes="d-flex flex-wrap ga-2"):
            for what, file_name in DOWNLOADS.items():
                needs = "!has_transform" if what in ("transform", "scene") else "!ready"
                v3.VBtn(labels[what], id=f"download-{what.replace('_', '-')}", size="small", variant="tonal",
                        disabled=(needs,),
                        click=f"utils.download('{file_name}', trigger('download', ['{what}']), "
                              "'application/octet-stream')")
