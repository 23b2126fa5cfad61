"""The fields each request type takes and their JSON types, checked where a request is parsed.

A malformed request is refused there with code "bad_request" and a message that names the field and what it
should be, before any handler, file or model sees it: handlers may then trust the types (nested shapes such as
points are checked by their own parsers in session.py, with the same messages). Every value of a request is also
walked once for what JSON lets through but no field takes: NaN and infinities (Python's json reads the `NaN` and
`Infinity` literals, and 1e400 as infinity), integers beyond 64 bits and lone UTF-16 surrogates (which no file
name or text can hold). A null field counts as not given. Fields not listed here are ignored, as before.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable, Dict, Mapping, Tuple

from .bad_requests import SAFE_NAME, ProtocolError, RequestId

LARGEST_INTEGER = 2 ** 63 - 1
"""The largest whole number a request may carry (JSON numbers beyond 64 bits are not portable between clients)."""


class TooLong:
    """An integer literal with too many digits to convert (Python refuses more than 4,300): kept as a marker, so
    that the walk can name its field."""

    def __init__(self, digits: int):
        self.digits = digits


def read_integer(text: str) -> Any:
    """json's parse_int: an int, or TooLong for a literal no field could take."""
    return int(text) if len(text) <= 40 else TooLong(len(text))


Check = Callable[[Any], bool]
Spec = Tuple[Check, str]  # (whether a value fits, what the field should be, for the message)


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _text(value: Any) -> bool:
    return isinstance(value, str) and bool(value)


def _path(value: Any) -> bool:
    return _text(value) and "\x00" not in value


TEXT: Spec = (_text, "a non-empty string")
STRING: Spec = (lambda value: isinstance(value, str), "a string")
PATH: Spec = (_path, "a non-empty path (a string without NUL characters)")
VOLUME: Spec = (_path, 'a volume id from "load" or an image file\'s path')
FILE: Spec = (lambda value: isinstance(value, str) and "\x00" not in value,
              'a file\'s path (a string without NUL characters; "" for none)')
FLAG: Spec = (lambda value: isinstance(value, bool), "true or false")
COUNT: Spec = (lambda value: _whole(value) and value >= 0, "a whole number, 0 or more")
OBJECT: Spec = (lambda value: isinstance(value, dict), "an object")
LIST: Spec = (lambda value: isinstance(value, list), "a list")
IDS: Spec = (lambda value: isinstance(value, list) and all(_text(item) for item in value), "a list of pair ids")
TARGET: Spec = (lambda value: _text(value) or _whole(value), "a request id (a non-empty string or an integer)")
SESSION: Spec = (_text, 'a session id from "open"')
NEW_SESSION: Spec = (lambda value: isinstance(value, str) and bool(SAFE_NAME.match(value)),
                     'a new plain name (letters, digits, ".", "_", "-", starting with a letter or digit)')
WORKERS: Spec = (lambda value: _whole(value) and 0 <= value <= 256,
                 "a whole number from 0 (in the worker process itself) to 256")

MODEL = {"model": TEXT, "device": TEXT, "checkpoint": FILE, "decoder": FILE}
OPTIONAL, REQUIRED = False, True

FIELDS: Dict[str, Dict[str, Tuple[Spec, bool]]] = {
    "hello": {},
    "shutdown": {},
    "load": {"path": (PATH, REQUIRED)},
    "cancel": {"target": (TARGET, OPTIONAL)},
    "embed": {"volume": (VOLUME, REQUIRED), **{name: (spec, OPTIONAL) for name, spec in MODEL.items()}},
    "register": {"fixed": (VOLUME, REQUIRED), "moving": (VOLUME, REQUIRED), "out_dir": (PATH, REQUIRED),
                 "text": (STRING, OPTIONAL), "points": (LIST, OPTIONAL), "point_pairs": (LIST, OPTIONAL),
                 "auto": (FLAG, OPTIONAL), "sample_points": (COUNT, OPTIONAL), "options": (OBJECT, OPTIONAL),
                 "detector": (TEXT, OPTIONAL), "detector_checkpoint": (FILE, OPTIONAL),
                 "resampled": (FLAG, OPTIONAL), "overwrite": (FLAG, OPTIONAL), "report": (FLAG, OPTIONAL),
                 **{name: (spec, OPTIONAL) for name, spec in MODEL.items()}},
    "batch": {"manifest": (PATH, REQUIRED), "out_dir": (PATH, REQUIRED), "workers": (WORKERS, OPTIONAL),
              "scheduler": (STRING, OPTIONAL), "settings": (OBJECT, OPTIONAL)},
    "open": {"fixed": (VOLUME, REQUIRED), "moving": (VOLUME, REQUIRED), "options": (OBJECT, OPTIONAL),
             "session": (NEW_SESSION, OPTIONAL), **{name: (spec, OPTIONAL) for name, spec in MODEL.items()}},
    "prompt": {"session": (SESSION, REQUIRED), "points": (LIST, REQUIRED), "pair": (TEXT, OPTIONAL)},
    "correct": {"session": (SESSION, REQUIRED), "pair": (TEXT, REQUIRED), "lps": (LIST, REQUIRED)},
    "delete": {"session": (SESSION, REQUIRED), "pair": (TEXT, REQUIRED)},
    "undo": {"session": (SESSION, REQUIRED)},
    "auto": {"session": (SESSION, REQUIRED)},
    "text": {"session": (SESSION, REQUIRED), "text": (TEXT, REQUIRED), "detector": (TEXT, OPTIONAL),
             "device": (TEXT, OPTIONAL), "detector_checkpoint": (FILE, OPTIONAL)},
    "fit": {"session": (SESSION, REQUIRED), "pairs": (IDS, OPTIONAL), "warm": (FLAG, OPTIONAL)},
    "pairs": {"session": (SESSION, REQUIRED)},
    "close": {"session": (SESSION, REQUIRED)},
    "upload": {"name": (TEXT, REQUIRED), "offset": (COUNT, REQUIRED), "last": (FLAG, OPTIONAL),
               "data": (STRING, REQUIRED), "chunk_sha256": (STRING, REQUIRED), "sha256": (STRING, OPTIONAL)},
    "download": {"path": (PATH, REQUIRED), "offset": (COUNT, OPTIONAL)},
}
"""Per request type: field -> ((check, what it should be), required)."""


def shown(value: Any, limit: int = 200) -> str:
    """A value for a message, cut short (a fuzzer's megabyte string must not come back whole)."""
    text = repr(value) if not isinstance(value, TooLong) else f"a number of {value.digits} digits"
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} characters)"


def check_values(value: Any, where: str, request_id: RequestId = None) -> None:
    """Refuse a non-finite number, an integer beyond 64 bits or a lone surrogate anywhere in `value` (a parsed
    request, nested at most protocol.MAX_NESTING deep), naming where it is (e.g. options.smoothness)."""
    def refuse(what: str) -> None:
        raise ProtocolError("bad_request", f'"{where}" {what}', request_id)

    if isinstance(value, float) and not math.isfinite(value):
        written = "NaN" if math.isnan(value) else "Infinity" if value > 0 else "-Infinity"
        refuse(f"must be a finite number; got {written} (NaN, Infinity and numbers beyond 1.8e308 are refused)")
    elif isinstance(value, TooLong) or (_whole(value) and abs(value) > LARGEST_INTEGER):
        refuse(f"is too large a number ({shown(value)}); whole numbers must fit in 64 bits")
    elif isinstance(value, str):
        if any("\ud800" <= character <= "\udfff" for character in value):  # only from "\udXXX" escapes
            refuse(f"holds a lone UTF-16 surrogate ({shown(value)}), which is not text")
    elif isinstance(value, dict):
        for key, item in value.items():
            inside = f"{where}.{key}" if where else key
            check_values(key, f"{inside} (its name)", request_id)
            check_values(item, inside, request_id)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            check_values(item, f"{where}[{index}]", request_id)


def check_fields(request: Dict[str, Any]) -> Dict[str, Any]:
    """The request with each known field of its type checked (nulls dropped), or ProtocolError("bad_request")
    naming the first field that is missing or of the wrong type."""
    kind, request_id = request["type"], request["id"]
    request = {name: value for name, value in request.items() if value is not None}
    for name, ((fits, what), required) in FIELDS.get(kind, {}).items():
        if name not in request:
            if required:
                raise ProtocolError("bad_request", f'"{kind}" needs "{name}": {what}', request_id)
        elif not fits(request[name]):
            raise ProtocolError("bad_request", f'"{kind}": "{name}" must be {what}; got {shown(request[name])}',
                                request_id)
    return request


def three_numbers(value: Any, what: str) -> Tuple[float, float, float]:
    """[x, y, z] (LPS mm) as floats, or ProtocolError naming `what` (strings and booleans are not numbers)."""
    if not (isinstance(value, list) and len(value) == 3 and all(_number(v) for v in value)):
        raise ProtocolError("bad_request", f"{what} must be three numbers [x, y, z] (LPS mm); got {shown(value)}")
    return tuple(float(v) for v in value)


@functools.lru_cache(maxsize=1)
def _option_kinds() -> Dict[str, Spec]:
    """Each flat option's spec, from the type of its default (options.flat: the one table of options)."""
    from ..options.flat import FLAT_OPTIONS, flat_default

    by_type = {bool: FLAG, int: (lambda v: _whole(v) or (isinstance(v, float) and v.is_integer()), "a whole number"),
               float: (_number, "a number"), str: (lambda v: isinstance(v, str), "a string"),
               type(None): (lambda v: isinstance(v, list) and all(_whole(i) for i in v), "a list of whole numbers")}
    return {name: by_type[type(flat_default(name))] for name in FLAT_OPTIONS if type(flat_default(name)) in by_type}


def check_options(values: Mapping[str, Any], where: str = "options") -> Dict[str, Any]:
    """A request's flat options with each known option's value of its type (whole numbers given as 5.0 become 5);
    unknown names are left for options_from_flat, which lists the known ones."""
    kinds = _option_kinds()
    checked = {}
    for name, value in values.items():
        fits, what = (_text, "a preset's name") if name == "preset" else kinds.get(name, (lambda v: True, ""))
        if not fits(value):
            raise ProtocolError("bad_request", f'"{where}.{name}" must be {what}; got {shown(value)}')
        checked[name] = int(value) if isinstance(value, float) and what == "a whole number" else value
    return checked
