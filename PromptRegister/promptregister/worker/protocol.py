"""The worker's JSON-lines protocol (version 2; version 1's requests work as they did).

Every message is one JSON object on one line. Requests (client -> worker)
carry "id" (a string or an integer chosen by the client, as JSON-RPC clients send
either; events echo it unchanged) and "type":

    hello                                  -> result: protocol, engine version, private folder
    load      {path}                       -> result: volume id, shape, spacing
    embed     {volume, model, device}      -> progress..., result: slices embedded
    register  {fixed, moving, [text | points | point_pairs | auto | sample_points], model, device,
               checkpoint, decoder, options, out_dir, resampled, overwrite, report}
               (no prompt: the images alone, no model loaded; point_pairs: [{moving: [x,y,z], fixed: [x,y,z]}])
                                           -> progress..., log..., result: files, summary,
                                              model and model_reason (which model "auto" took, and why)
    batch     {manifest, out_dir, workers | scheduler, settings}
                                           -> progress "batch"..., result: records, counts, csv, html
                                              (a cohort: batch/runner.py; settings as BatchSettings' fields)
    cancel    {target}                     -> result: whether a running request was stopped
    shutdown                               -> result, then the worker exits

Version 2 adds the interactive requests (open, prompt, correct, delete, undo, auto, text, fit, pairs, close:
see interactive.py) and file transfer for a worker on another machine (upload, download: see transfer.py).

Events (worker -> client) carry the "id" of the request they answer and a
"type": "progress" {stage, fraction}, "log" {message}, "result" {...} or
"error" {code, message}. A line that is not a JSON object gets an error event
with id null. Error codes are listed in ERROR_CODES.

Each request's fields are checked where it is parsed (fields.py): a field missing or of the wrong JSON type, a
number that is NaN, infinite or beyond 64 bits, or a lone surrogate in a string is a "bad_request" naming the
field, answered before anything is loaded or written (a line holding bytes that are not UTF-8 is "bad_json");
"internal" is left for the worker's own bugs.
"""

from __future__ import annotations

import json
import re
from typing import Any, Dict

from .bad_requests import ProtocolError, RequestId

PROTOCOL_VERSION = 2
INTERACTIVE_REQUESTS = ("open", "prompt", "correct", "delete", "undo", "auto", "text", "fit", "pairs", "close")
TRANSFER_REQUESTS = ("upload", "download")
REQUEST_TYPES = ("hello", "load", "embed", "register", "batch", "cancel", "shutdown") + INTERACTIVE_REQUESTS + TRANSFER_REQUESTS
LONG_REQUESTS = ("embed", "register", "batch")  # run in the background, one at a time, cancellable
ERROR_CODES = {
    "bad_json": "the line is not a JSON object",
    "bad_request": "a required field is missing or has the wrong type",
    "unknown_type": "the request type is not one of REQUEST_TYPES",
    "busy": "another long request is running; cancel it or wait",
    "engine": "the engine refused the request (its message says what to change)",
    "cancelled": "the request was cancelled; nothing was written",
    "internal": "an unexpected failure inside the worker (see its stderr)",
}


MAX_NESTING = 32
"""Deepest nesting of arrays and objects a request may have (real requests use 4): deeper ones are refused before
anything walks them recursively."""


def nesting_depth(line: str) -> int:
    """How deeply the arrays and objects of a JSON text nest (strings skipped), without parsing it: json.loads
    recurses once a level and a 4 KB line of brackets would exhaust the interpreter's stack."""
    depth = deepest = 0
    in_string = escaped = False
    for character in line:
        if in_string:
            if escaped:
                escaped = False
            elif character == "\\":
                escaped = True
            elif character == '"':
                in_string = False
        elif character == '"':
            in_string = True
        elif character in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif character in "]}":
            depth -= 1
    return deepest


NOT_TEXT = re.compile("[\ud800-\udfff]")
"""What the worker's input decoder (UTF-8, surrogateescape) makes of bytes that are not UTF-8; JSON text itself
never holds these characters (an escaped "\\ud800" is six ASCII characters)."""


def parse_request(line: str) -> Dict[str, Any]:
    """One request line -> dict with a valid id, a known type and each of that type's fields of its JSON type
    (fields.py), or ProtocolError: "bad_json" for a line that is not a JSON object, "bad_request" for a malformed
    one (naming the field), "unknown_type"."""
    from .fields import LARGEST_INTEGER, check_fields, check_values, read_integer, shown

    if NOT_TEXT.search(line):
        raise ProtocolError("bad_json", "the line is not UTF-8 text")
    few_brackets = line.count("[") + line.count("{") <= MAX_NESTING  # counted in C: a chunk of data has none
    if not few_brackets and nesting_depth(line) > MAX_NESTING:
        raise ProtocolError("bad_json", f"the request nests arrays or objects more than {MAX_NESTING} deep")
    try:
        message = json.loads(line, parse_int=read_integer)
    except json.JSONDecodeError as error:
        raise ProtocolError("bad_json", f"not JSON ({error.msg} at column {error.colno})") from None
    except (ValueError, RecursionError) as error:  # not expected past the checks above; still not our bug
        raise ProtocolError("bad_json", f"not JSON that can be read ({error})") from None
    if not isinstance(message, dict):
        raise ProtocolError("bad_json", "a request must be a JSON object")
    request_id = message.get("id")
    is_integer = isinstance(request_id, int) and not isinstance(request_id, bool) and abs(request_id) <= LARGEST_INTEGER
    if not (is_integer or (isinstance(request_id, str) and request_id and not NOT_TEXT.search(request_id))):
        raise ProtocolError("bad_request", 'a request needs an "id": a non-empty string or a whole number (64 bits); '
                                           f"got {shown(request_id)}")
    check_values(message, "", request_id)
    kind = message.get("type")
    if kind not in REQUEST_TYPES:
        raise ProtocolError("unknown_type", f"unknown request type {shown(kind)}; expected one of "
                                            f"{', '.join(REQUEST_TYPES)}", request_id)
    return check_fields(message)



class Cancelled(Exception):
    """Raised inside the engine (from a progress callback) when the running request was cancelled."""


def error_fields(error: BaseException, cancelled_message: str) -> Dict[str, str]:
    """The error event's code and message for what ended a request (the same for batch and interactive
    requests); an unexpected exception is printed to stderr first, since its message alone may not say enough."""
    from ..errors import PromptRegisterError

    if isinstance(error, Cancelled):
        return {"code": "cancelled", "message": cancelled_message}
    if isinstance(error, ProtocolError):
        return {"code": error.code, "message": error.message}
    if isinstance(error, PromptRegisterError):
        return {"code": "engine", "message": str(error)}
    import sys
    import traceback

    traceback.print_exception(type(error), error, error.__traceback__, file=sys.stderr)
    return {"code": "internal", "message": f"{type(error).__name__}: {error}"}


def encode_event(request_id: RequestId, kind: str, **fields: Any) -> str:
    """One event as a JSON line (no newline inside; numpy scalars become numbers)."""
    return json.dumps({"id": request_id, "type": kind, **fields}, default=_plain, separators=(",", ":"))


def _plain(value: Any) -> Any:
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)
