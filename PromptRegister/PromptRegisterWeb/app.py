"""The browser app: a trame server with Slicer's slice views over one MRML scene, driving the module's logic.

`serve(config)` runs it until Ctrl-C; `WebApp` wires the pieces so tests can build one on a server of their own:
- trame-slicer's SlicerApp (scene, volumes logic) and its remote slice views, laid out by pair_views.layout();
- a BrowserSession (the module's RegistrationRun and InteractiveLoop) for the user's actions;
- the page (page.py), whose state is refreshed from BrowserSession.view_state() as the worker answers;
- downloads written by exports.py into the server's private folder.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional

from promptregister.errors import PromptRegisterError

from .access import UPLOAD_LIMIT_MB, DataFolder, check_upload
from .browser_session import BrowserSession
from .exports import export
from .pair_views import VIEW_NAMES, PairViews, layout

POLL_SECONDS = 0.1
"""How often the worker's answers are applied (the Slicer panel's timer runs at 200 ms)."""

log = logging.getLogger("promptregister.web")


@dataclass
class WebConfig:
    """What `promptregister web` was started with (checked by the command line before anything starts)."""

    host: str = "127.0.0.1"
    port: int = 8080
    token: Optional[str] = None  # None: no token (loopback only; access.access_token decides)
    data: DataFolder = field(default_factory=lambda: DataFolder(None))
    fixed: Optional[Path] = None
    moving: Optional[Path] = None
    upload_limit_mb: float = UPLOAD_LIMIT_MB
    model: str = "auto"
    device: str = "auto"
    options: dict = field(default_factory=dict)
    checkpoint: Optional[str] = None
    worker_command: Optional[List[str]] = None
    open_browser: bool = False


class WebApp:
    def __init__(self, server, config: WebConfig):
        from trame_slicer import module as trame_slicer_module
        from trame_slicer.core import LayoutManager, SlicerApp
        from trame_slicer.rca_view import register_rca_factories

        from PromptRegisterLib.registration_run import RegistrationRun

        from .page import build_page, slice_view_gutter

        self.server, self.config = server, config
        self.private = Path(tempfile.mkdtemp(prefix="promptregister-web-"))  # uploads and downloads, 0700
        server.enable_module(trame_slicer_module)
        self.slicer = SlicerApp()
        register_rca_factories(self.slicer.view_manager, server, slice_view_ui_f=slice_view_gutter)
        self.layout_manager = LayoutManager(self.slicer.scene, self.slicer.view_manager, server)
        self.layout_manager.register_layout("pairs", layout())
        self.layout_manager.set_layout("pairs")
        views = PairViews({name: self.slicer.view_manager.get_view(name) for name in VIEW_NAMES})
        self.session = BrowserSession(self.slicer.scene, self.slicer.volumes_logic, views,
                                      RegistrationRun(command=config.worker_command), model=config.model,
                                      device=config.device, options=config.options, checkpoint=config.checkpoint)
        self.session.on_change = self.push
        self._shown: dict = {}

        state = server.state
        state.trame__title = "PromptRegister"
        state.update({"data_files": config.data.names(), "uploads_allowed": config.upload_limit_mb > 0,
                      "volumes": "", "fixed_name": None, "moving_name": None})
        state.update(self.session.view_state())
        state.uploads_ready = False  # set here once both files have reached the server, not when the page has them
        state.change("fixed_upload", "moving_upload")(lambda fixed_upload=None, moving_upload=None, **_: setattr(
            state, "uploads_ready", bool(fixed_upload) and bool(moving_upload)))
        state.change("opacity")(lambda opacity, **_: self.session.set_opacity(opacity))
        state.change("after_every_change")(lambda after_every_change, **_: setattr(
            self.session, "after_every_change", bool(after_every_change)))
        server.trigger("download")(self.download)
        server.trigger("choose_pair")(self.choose_pair)
        build_page(server, self, self.layout_manager)
        server.controller.on_server_ready.add(self._start_polling)
        server.controller.on_server_exited.add(lambda **_: self.close())
        if config.fixed is not None and config.moving is not None:
            self._open(config.fixed, config.moving)

    # -- volumes -------------------------------------------------------------------------------------------------
    def _open(self, fixed: Path, moving: Path) -> None:
        self.session.load(fixed, moving)
        self.server.state.volumes = f"fixed: {Path(fixed).name}; moving: {Path(moving).name}"
        self.push()

    def open_named(self) -> None:
        state = self.server.state
        self._guard(lambda: self._open(self.config.data.resolve(state.fixed_name),
                                       self.config.data.resolve(state.moving_name)))

    def open_uploads(self) -> None:
        state = self.server.state

        def save(upload, role: str) -> Path:
            upload = upload[0] if isinstance(upload, list) else upload
            if not isinstance(upload, dict) or "content" not in upload:
                raise PromptRegisterError(f"choose the {role} file to upload first")
            content = upload["content"]
            name = check_upload(upload.get("name", ""), len(content), self.config.upload_limit_mb)
            folder = Path(tempfile.mkdtemp(prefix=f"{role}-", dir=self.private))
            (folder / name).write_bytes(content)
            return folder / name

        self._guard(lambda: self._open(save(state.fixed_upload, "fixed"), save(state.moving_upload, "moving")))
        state.fixed_upload = state.moving_upload = None

    # -- the workflow's buttons ----------------------------------------------------------------------------------
    def register(self) -> None:
        self._guard(self.session.register)

    def update_transform(self) -> None:
        self._guard(self.session.update_transform)

    def auto(self) -> None:
        self._guard(self.session.auto)

    def text(self) -> None:
        self._guard(lambda: self.session.text(self.server.state.phrase or ""))

    def undo(self) -> None:
        self._guard(self.session.undo)

    def delete(self) -> None:
        self._guard(self.session.delete)

    def cancel(self) -> None:
        self._guard(self.session.cancel)

    def choose_pair(self, pair_id: Optional[str] = None) -> None:
        """A row of the pairs table: the pair a click on the fixed view corrects (a second click unselects)."""
        self.session.selected = None if self.session.selected == pair_id else pair_id
        self.push()

    def download(self, what: str):
        """A download button: the file, written whole, sent as an attachment (the browser saves it)."""
        try:
            path = export(self.session, what, Path(tempfile.mkdtemp(prefix="download-", dir=self.private)))
        except PromptRegisterError as error:
            self.session.say(str(error))
            self.push()
            return None
        content = path.read_bytes()
        shutil.rmtree(path.parent, ignore_errors=True)
        return self.server.protocol.addAttachment(content)

    def _guard(self, action) -> None:
        """Run a button's action; a problem the user can fix becomes the page's message, never a traceback."""
        try:
            action()
        except (PromptRegisterError, ValueError, RuntimeError) as error:
            self.session.say(str(error))
        self.push()

    # -- answers -------------------------------------------------------------------------------------------------
    def push(self) -> None:
        """Show the session's state on the page (values that did not change are not sent)."""
        shown = self.session.view_state()
        changed = {key: value for key, value in shown.items() if self._shown.get(key) != value}
        if changed:
            self._shown.update(changed)
            with self.server.state as state:
                state.update(changed)

    def _start_polling(self, **_) -> None:
        async def poll_forever():
            while True:
                try:
                    self.session.poll()
                    self.push()  # only what changed reaches the browser
                except Exception as error:  # keep the page alive; the message says what went wrong
                    log.exception("poll failed")
                    self.session.say(f"internal error: {error}")
                await asyncio.sleep(POLL_SECONDS)

        self._poller = asyncio.ensure_future(poll_forever())

    def close(self) -> None:
        self.session.close()
        shutil.rmtree(self.private, ignore_errors=True)


def trame_arguments(config: WebConfig) -> List[str]:
    """What trame is told on its command line (it reads sys.argv itself): only what this command decided."""
    argv = [sys.argv[0] if sys.argv else "promptregister", "--server"]
    if config.token is not None:  # one word with its option: a token may begin with "-"
        argv += [f"--authKey={config.token}"]
    return argv


def largest_message(config: WebConfig) -> int:
    """The web socket's message limit in bytes: an upload at the cap, with room for its framing; larger
    messages are refused by the server before they are read whole."""
    return int(max(config.upload_limit_mb, 1) * 1024 * 1024 * 1.1) + (1 << 20)


def serve(config: WebConfig) -> None:
    """Start the server and block until Ctrl-C."""
    os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")  # no display needed
    from trame.app import get_server

    argv = trame_arguments(config)
    saved, sys.argv = sys.argv, argv
    try:
        server = get_server("promptregister-web", client_type="vue3")
        server.options["ws_max_msg_size"] = largest_message(config)
        app = WebApp(server, config)
        query = f"?secret={config.token}" if config.token else ""
        host_shown = "127.0.0.1" if config.host in ("0.0.0.0", "::") else config.host
        server.controller.on_server_ready.add(lambda **_: print(
            f"PromptRegister is serving on http://{host_shown}:{server.port}/{query}\n"
            "Open that address in a browser (it carries the access token). Ctrl-C stops the server.", flush=True))
        try:
            server.start(host=config.host, port=config.port, open_browser=config.open_browser,
                         show_connection_info=False, timeout=0)
        finally:
            app.close()
    finally:
        sys.argv = saved
