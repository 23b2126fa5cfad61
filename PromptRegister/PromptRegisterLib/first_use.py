"""The steps before the first run, without Qt: is the worker's Python complete, and if not, install what it lacks.

Kept out of PromptRegister.py so the Widget stays thin. Nothing here waits: another Python is asked for its
packages by a background probe, and an installation runs in a background process; the Widget's timer calls
poll(), and the run that asked goes on (`then`) once they are done. The Widget gives the ui (stage label,
progress bar), its timer and the dialogs.
"""

from __future__ import annotations

from typing import Callable, Optional


class FirstUse:
    def __init__(self, ui, logic, timer, confirm: Callable[[str], bool], error: Callable[[str], None]):
        self.ui = ui
        self.logic = logic  # ModuleLogic
        self.timer = timer
        self.confirm = confirm
        self.error = error
        self._then: Optional[Callable[[], None]] = None  # what goes on once the probe or installation is done

    @property
    def busy(self) -> bool:
        return self.logic.probe is not None or self.logic.installing

    def offer_install(self, settings, then: Callable[[], None]) -> bool:
        """When the worker's Python lacks packages, offer to install them; True while the probe or an
        installation runs, or when the offer was declined; False when nothing is missing. A worker started by a
        command (over SSH on another machine) has its own packages there: nothing is asked of this Slicer."""
        if settings.worker_command.strip():
            return False
        worker_python = settings.worker_python
        missing = self.logic.knownUnmetRequirements(worker_python)
        if missing is None:  # another Python: asked in the background; `then` when it has answered
            self.ask(worker_python, then)
            return True
        if not missing:
            return False
        if not self.confirm(self.logic.installMessage(missing, worker_python)):
            return True
        self.logic.startInstall(missing, worker_python)
        self._then = then
        self.ui.progressBar.value = 0
        self.ui.stageLabel.text = "installing packages..."
        self.timer.start()
        return True

    def ask(self, worker_python: str, then: Callable[[], None]) -> None:
        """Ask the worker Python for its packages without waiting (dependencies.RequirementsProbe), then call
        `then` from the timer (ValueError when it is not a Python)."""
        self.logic.startProbe(worker_python)
        self._then = then
        self.ui.stageLabel.text = "asking the worker's Python which packages it has..."
        self.timer.start()

    def poll(self) -> bool:
        """One tick of the probe or the installation; False when neither runs (the tick is the run's)."""
        if self.logic.probe is not None:
            self._poll_probe()
            return True
        if self.logic.installing:
            self._poll_install()
            return True
        return False

    def _go_on(self) -> None:
        then, self._then = self._then, None
        if then is not None:
            then()

    def _poll_probe(self) -> None:
        try:
            answered = self.logic.pollProbe()
        except ValueError as error:
            self.timer.stop()
            self._then = None
            self.ui.stageLabel.text = "failed"
            self.error(str(error))
            return
        if answered:
            self.timer.stop()
            self.ui.stageLabel.text = ""
            self._go_on()

    def _poll_install(self) -> None:
        install = self.logic.install
        for line in install.lines():
            if line.strip():
                self.ui.stageLabel.text = line[-120:]
        self.ui.progressBar.value = int(100 * install.fraction)
        if not install.finished:
            return
        self.timer.stop()
        self.logic.install = None
        if install.cancelled:  # the user's Cancel, not a failure
            self._then = None
            self.ui.stageLabel.text = "installation cancelled; press Register to install again"
        elif install.returncode != 0:
            self._then = None
            tail = "\n".join(list(install.output)[-12:])
            self.error(f"Installing failed ({' '.join(install.failed_command or [])}):\n{tail}")
            self.ui.stageLabel.text = "installation failed"
        else:
            self.logic.forgetRequirements()  # asked again: the installation changed them
            self.ui.stageLabel.text = "installed; registering..."
            self._go_on()
