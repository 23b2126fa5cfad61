"""Where a cohort runs on Dask: the local cluster takes no connection without its own TLS certificate (any user
of the machine could otherwise submit tasks to its 127.0.0.1 ports while a cohort runs), and a --scheduler that
is not an address is one clean error before any work.

Real parts: a real LocalCluster of two worker processes as `batch` starts it, probed over real sockets with
distributed's own rpc; the real command line.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import List, Optional

import pytest

from promptregister.batch import BatchSettings
from promptregister.cli import main as cli_main
from promptregister.errors import PromptRegisterError

pytest.importorskip("distributed")  # (no skip without cryptography: the local cluster needs it, and says so)

SETTINGS = BatchSettings(model="classical", options={"marginal_samples": 0}, report=False)


def identity(address: str, security=None) -> dict:
    """Ask a Dask server who it is: what any client must be able to do before it can submit anything."""
    from distributed.core import rpc

    async def ask() -> dict:
        arguments = security.get_connection_args("client") if security is not None else {}
        async with rpc(address, connection_args=arguments, timeout=10) as remote:
            return await remote.identity()

    return asyncio.run(ask())


def test_the_local_cluster_refuses_peers_without_its_certificate():
    """Scheduler, workers and nannies: a plain TCP client and a TLS client with another certificate are refused;
    the cluster's own certificate is accepted (so the probe itself works, and the refusals mean something)."""
    from distributed import Client
    from distributed.security import Security

    from promptregister.batch.cluster import dask_client

    notes: List[str] = []
    with dask_client(2, None, SETTINGS, notes.append) as (client, _):
        assert client.submit(sum, [1, 2]).result() == 3  # the cluster works over its TLS
        info = client.scheduler_info()
        addresses = [client.scheduler.address] + [address for address in info["workers"]]
        addresses += [worker["nanny"] for worker in info["workers"].values()]
        assert len(addresses) == 5
        for address in addresses:
            scheme, _, location = address.partition("://")
            assert scheme == "tls" and location.startswith("127.0.0.1:"), address
            assert identity(address, client.security)["type"] in ("Scheduler", "Worker", "Nanny")
            with pytest.raises((OSError, TimeoutError)):
                identity(f"tcp://{location}")  # no encryption, no certificate
            with pytest.raises((OSError, TimeoutError)):
                identity(address, Security.temporary())  # TLS, but a certificate this cluster did not make
        with pytest.raises((OSError, TimeoutError)):  # the tester's own check: a plain Client to the scheduler
            Client(f"tcp://{client.scheduler.address.partition('://')[2]}", timeout="5s")
    assert any("local Dask cluster: 2 worker process(es)" in note for note in notes)


@pytest.mark.parametrize("given", ["tcp://head-node:8786", "head-node:8786", "tls://10.0.0.5:8786",
                                   "tls://[::1]:8786", "ws://head:80"])
def test_scheduler_addresses_that_dask_takes_pass_as_they_are(given: str):
    from promptregister.batch.cluster import scheduler_address

    assert scheduler_address(given) == given


@pytest.mark.parametrize("given", ["not a url", "tcp://head-node", "http://head-node:8786", "head-node:99999",
                                   "tcp://:8786", "h" * 5000])  # the last: too long for a file name, no OSError
def test_a_scheduler_that_is_not_an_address_is_refused_with_what_one_looks_like(given: str):
    from promptregister.batch.cluster import scheduler_address

    with pytest.raises(PromptRegisterError, match="tcp://host:8786"):
        scheduler_address(given)


def test_a_scheduler_file_gives_its_address_and_a_bad_one_is_refused(tmp_path: Path):
    """The JSON `dask scheduler --scheduler-file FILE` writes; an absent file or one without an address is a
    clean error (distributed's own Client would wait forever for an absent one)."""
    from promptregister.batch.cluster import scheduler_address

    good = tmp_path / "scheduler.json"
    good.write_text(json.dumps({"type": "Scheduler", "address": "tcp://10.1.2.3:8786"}))
    assert scheduler_address(str(good)) == "tcp://10.1.2.3:8786"
    with pytest.raises(PromptRegisterError, match="does not exist"):
        scheduler_address(str(tmp_path / "absent.json"))
    bad = tmp_path / "bad.json"
    bad.write_text("{\"type\": \"Scheduler\"}")
    with pytest.raises(PromptRegisterError, match="holds no scheduler address"):
        scheduler_address(str(bad))


def one_pair_manifest(folder: Path, hippocampus_paths) -> Path:
    (fixed, _), (moving, _) = hippocampus_paths("001"), hippocampus_paths("004")
    path = folder / "pairs.csv"
    path.write_text(f"id,fixed,moving\np1,{fixed},{moving}\n")
    return path


def error_line(captured: str) -> Optional[str]:
    """The command's stderr when it is exactly one `error: ...` line, else None."""
    lines = captured.strip().splitlines()
    return lines[0] if len(lines) == 1 and lines[0].startswith("error: ") else None


def test_the_command_refuses_a_malformed_scheduler_in_one_line_before_any_work(tmp_path, hippocampus_paths,
                                                                               capsys):
    manifest = one_pair_manifest(tmp_path, hippocampus_paths)
    code = cli_main(["batch", str(manifest), "--out-dir", str(tmp_path / "out"), "--model", "classical",
                     "--scheduler", "not a url", "--quiet"])
    captured = capsys.readouterr()
    line = error_line(captured.err)
    assert code == 2 and line is not None, captured.err
    assert "'not a url' is not a Dask scheduler address" in line and "tcp://host:8786" in line
    assert "scheduler file" in line
    assert not (tmp_path / "out").exists() and "model:" not in captured.err  # nothing was started
