"""What a request that the worker refuses is: ProtocolError (it becomes an error event) and the rule for plain
names. Apart from protocol.py so that the field checks (fields.py) and the parser can both use them."""

from __future__ import annotations

import re
from typing import Union

RequestId = Union[str, int, None]


class ProtocolError(Exception):
    """A request the worker cannot serve; becomes an error event."""

    def __init__(self, code: str, message: str, request_id: "RequestId" = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.request_id = request_id


SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,120}$")
"""A name the worker turns into a file or folder name (uploads, sessions): plain, never a path."""
