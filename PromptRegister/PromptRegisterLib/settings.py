"""Settings that belong to one machine, not to a scene: the worker's Python or command line, and a weights file.

A saved scene is sent to colleagues, and a path such as /home/me/venv/bin/python means nothing on their
computer, so these are kept in the application settings (QSettings, as SlicerElastix keeps its executable
folder) rather than in the parameter node.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, List, Optional, Protocol


class SettingsStore(Protocol):
    """What is used of QSettings (slicer.app.settings() or qt.QSettings() inside Slicer)."""

    def value(self, key: str, default: Any = None) -> Any: ...

    def setValue(self, key: str, value: Any) -> None: ...


SETTINGS_GROUP = "PromptRegister"


@dataclass
class MachineSettings:
    """Attributes:
        worker_python: the interpreter the worker runs with ("" = Slicer's own Python).
        checkpoint: a model weights file to use instead of the registry's ("" = none).
        worker_command: a whole command line that starts the worker instead, e.g.
            "ssh gpu-box /opt/venv/bin/python -m promptregister.worker" ("" = start it here); its requests then
            travel over the command's stdin and stdout (no port), and files through the protocol.
    """

    worker_python: str = ""
    checkpoint: str = ""
    worker_command: str = ""

    def command(self) -> Optional[List[str]]:
        """worker_command split as a shell would (None when empty)."""
        import os
        import shlex

        text = self.worker_command.strip()
        return shlex.split(text, posix=os.name != "nt") if text else None

    @staticmethod
    def key(name: str) -> str:
        return f"{SETTINGS_GROUP}/{name}"

    @classmethod
    def load(cls, store: SettingsStore) -> "MachineSettings":
        values = {}
        for item in fields(cls):
            value = store.value(cls.key(item.name), "")
            values[item.name] = "" if value is None else str(value)
        return cls(**values)

    def save(self, store: SettingsStore) -> None:
        for item in fields(self):
            store.setValue(self.key(item.name), getattr(self, item.name))
