"""Where a cohort's pairs run on Dask: a local cluster of worker processes, or a scheduler someone else started.

The local cluster listens on 127.0.0.1 only, and speaks TLS with a certificate made for this run and kept in
memory (distributed's `Security.temporary()`, which needs the `cryptography` package): the scheduler, nannies
and workers accept only peers that present that certificate, so another user of the machine cannot connect and
submit tasks while a cohort runs. (Dask's HTTP pages, the dashboard and the workers' health and metrics, stay
plain HTTP on 127.0.0.1; they show the run but take no tasks.)

A given scheduler is checked as an address (tcp://host:8786, tls://, ws://, wss://) or a scheduler file (the JSON
that `dask scheduler --scheduler-file FILE` writes) before anything runs; its security is the user's Dask
configuration (distributed.comm.tls.*).
"""

from __future__ import annotations

import json
import os
import re
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Dict, Iterator, Optional

from ..errors import PromptRegisterError
from .settings import BatchSettings

MAX_ATTEMPTS = 3
"""A pair whose worker dies is retried until this many workers have died on it (Dask's allowed-failures + 1)."""
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                    "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS")
SCHEDULER_WAIT_S = 60.0
"""How long to wait for the first worker of a given scheduler before saying it has none."""
NETWORK_SCHEMES = ("tcp", "tls", "ws", "wss", "ucx")
ADDRESS = re.compile(r"^(?:(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://)?"
                     r"(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(?P<port>[0-9]{1,5})$")
"""A Dask scheduler address: [scheme://]host:port, an IPv6 host in brackets."""

LogCallback = Callable[[str], None]


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def scheduler_address(given: str) -> str:
    """The scheduler address that `given` names: an address as it is, or the one in a scheduler file.

    Arguments:
        given: "tcp://host:8786" (tls://, ws://, wss://, ucx://; no scheme means tcp), "inproc://..." (a scheduler
            in this process, from Python), or the path of a scheduler file.
    Returns the address. Raises PromptRegisterError, saying what an address looks like, for anything else; this
    runs before the manifest is read, so a typo costs nothing.
    """
    text = str(given).strip()
    path = Path(os.path.expanduser(text))
    try:
        is_file = bool(text) and path.is_file()
    except (OSError, ValueError):  # a name too long for a path, say: then it is no file
        is_file = False
    if is_file:
        try:
            address = json.loads(path.read_text(encoding="utf-8"))["address"]
        except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError):
            raise PromptRegisterError(f"the scheduler file {path} holds no scheduler address (a JSON object with "
                                      "\"address\", as `dask scheduler --scheduler-file FILE` writes)") from None
        if not isinstance(address, str) or not _is_address(address):
            raise PromptRegisterError(f"the scheduler file {path} holds {address!r}, not a scheduler address")
        return address
    if text.lower().endswith(".json"):
        raise PromptRegisterError(f"the scheduler file {path} does not exist; start the scheduler with "
                                  f"`dask scheduler --scheduler-file {path}` or give its address (tcp://host:8786)")
    if not _is_address(text):
        shown = repr(given) if len(repr(given)) <= 80 else repr(given)[:77] + "..."
        raise PromptRegisterError(f"--scheduler {shown} is not a Dask scheduler address: give it as "
                                  "tcp://host:8786 (or tls://, ws://, wss://; the port the scheduler printed, 8786 "
                                  "by default) or as the scheduler file that `dask scheduler --scheduler-file FILE` "
                                  "wrote")
    return text


def _is_address(text: str) -> bool:
    if text.startswith("inproc://"):
        return len(text) > len("inproc://") and not any(character.isspace() for character in text)
    match = ADDRESS.match(text)
    return bool(match and (match["scheme"] or "tcp").lower() in NETWORK_SCHEMES and 0 < int(match["port"]) < 65536)


def local_security():
    """A Security with a fresh self-signed certificate, in memory only, for every part of the local cluster
    (mutual TLS: a peer without this run's certificate is refused)."""
    from distributed.security import Security

    try:
        return Security.temporary()
    except ImportError:
        raise PromptRegisterError("the local Dask cluster needs the cryptography package for its TLS certificate "
                                  "(so that other users of this machine cannot submit tasks to it): pip install "
                                  "cryptography (the batch extra includes it); --workers 0 runs the pairs in this "
                                  "process without a cluster") from None


@contextmanager
def dask_client(workers: int, scheduler: Optional[str], settings: BatchSettings,
                log: LogCallback) -> Iterator[tuple]:
    """A Dask client on the given scheduler or on a new LocalCluster (TLS, local_security); yields (client, task
    resources)."""
    try:
        import dask
        from dask.distributed import Client, LocalCluster
    except ImportError:
        raise PromptRegisterError("cohorts on several processes need Dask: pip install \"dask[distributed]\" (or "
                                  "the extra: pip install \"promptregister[batch]\"); --workers 0 runs them in this "
                                  "process without it") from None
    if scheduler:
        client = _connect(Client, scheduler_address(scheduler))
        try:
            yield client, _scheduler_resources(client, settings)
        finally:
            client.close()
        return
    security = local_security()
    gpus = _local_gpus(settings)
    if gpus:
        workers = min(workers, gpus)
        log(f"{gpus} GPU(s): {workers} worker process(es), one pair at a time per GPU")
    threads = max(1, cores() // workers)
    thread_env = {name: str(threads) for name in THREAD_VARIABLES}
    saved = {name: os.environ.get(name) for name in THREAD_VARIABLES}
    # Dask's own pre-spawn environment also sets MALLOC_TRIM_THRESHOLD_=65536, which makes glibc hand every freed
    # array back to the kernel: the fit's allocations then spend most of their time in page faults (measured:
    # half of a worker's CPU time was system time). Only the thread counts are set here.
    pre_spawn = thread_env
    try:
        with dask.config.set({"distributed.scheduler.allowed-failures": MAX_ATTEMPTS - 1,
                              "distributed.nanny.pre-spawn-environ": pre_spawn,
                              # the statistical profiler samples the running pair's stack 100 times a second,
                              # taking the GIL from it each time
                              "distributed.worker.profile.enabled": False}):
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                                   protocol="tls://", security=security,
                                   dashboard_address="127.0.0.1:0" if _has_bokeh() else None,
                                   resources={"GPU": 1} if gpus else None, silence_logs=40)
        log(f"local Dask cluster: {workers} worker process(es), {threads} thread(s) each")
        client = Client(cluster)  # takes the cluster's security
        try:
            yield client, ({"GPU": 1} if gpus else None)
        finally:
            client.close()
            cluster.close()
    finally:
        for name, value in saved.items():  # a Nanny sets its pre-spawn environment in this process too
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _connect(client_class, scheduler: str):
    try:
        client = client_class(scheduler, timeout="30s")
    except (OSError, TimeoutError, ValueError) as error:
        raise PromptRegisterError(f"cannot reach the Dask scheduler at {scheduler} ({error}); check the address "
                                  "(for example tcp://host:8786) and that the scheduler runs") from None
    try:
        client.wait_for_workers(1, timeout=SCHEDULER_WAIT_S)
    except TimeoutError:
        client.close()
        raise PromptRegisterError(f"the Dask scheduler at {scheduler} has no workers (waited {SCHEDULER_WAIT_S:.0f} "
                                  "s); start some with `dask worker " + scheduler + " --nthreads 1`") from None
    return client


def _scheduler_resources(client, settings: BatchSettings) -> Optional[Dict[str, float]]:
    """On a given scheduler, pairs for an explicit CUDA device ask for one GPU each, so a worker started with
    `--resources GPU=1` runs one pair at a time on its GPU."""
    if not settings.device.startswith("cuda"):
        return None
    workers = client.scheduler_info().get("workers", {}).values()
    if not any(worker.get("resources", {}).get("GPU") for worker in workers):
        raise PromptRegisterError("--device cuda on a Dask scheduler needs workers that declare their GPU: start "
                                  "them with `dask worker ADDRESS --nthreads 1 --resources GPU=1`")
    return {"GPU": 1}


def _local_gpus(settings: BatchSettings) -> int:
    if settings.device == "cpu" or settings.model == "classical":
        return 0
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def _has_bokeh() -> bool:
    import importlib.util

    return importlib.util.find_spec("bokeh") is not None


def dashboard_link(client, log: LogCallback) -> Optional[str]:
    """The dashboard's address when the scheduler serves one (logged), else None."""
    link = None
    try:
        if client.scheduler_info().get("services", {}).get("dashboard"):
            link = client.dashboard_link
    except Exception:  # noqa: BLE001 - the dashboard is a convenience; its absence is not an error
        link = None
    if link:
        log(f"Dask dashboard: {link}")
    return link
