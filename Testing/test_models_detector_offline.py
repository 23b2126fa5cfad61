"""`register --text` without local detector weights must fail at once and never touch the network (it once
waited 145 s on the model hub). These run the real command in a fresh process with every offline switch
removed and the hub address pointed at a local listener that counts connections and never answers: any hub
request would both show up in the count and hang."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Dict, List

import pytest

from promptregister.models.weights import sha256_of
from tiny_models import save_tiny_hf_grounding_dino

OFFLINE_SWITCHES = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "PROMPTREGISTER_OFFLINE", "PROMPTREGISTER_WEIGHTS_DIR",
                    "HF_HUB_CACHE", "TRANSFORMERS_CACHE", "HF_ENDPOINT")
PROXIES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")


class SilentHub:
    """A TCP listener on 127.0.0.1 that accepts connections, counts them and never replies."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.server.settimeout(0.1)
        self.connections: List[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.getsockname()[1]}"

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = self.server.accept()
            except (socket.timeout, OSError):
                continue
            self.connections.append(connection)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        for connection in self.connections:
            connection.close()
        self.server.close()


@pytest.fixture
def silent_hub():
    hub = SilentHub()
    yield hub
    hub.close()


def online_env(tmp_path: Path, hub: SilentHub) -> Dict[str, str]:
    """The environment of a user who never asked for offline mode, with empty caches and the hub at `hub`."""
    env = {k: v for k, v in os.environ.items() if k not in OFFLINE_SWITCHES + PROXIES}
    env.update(HF_ENDPOINT=hub.url, HF_HOME=str(tmp_path / "hf"), PROMPTREGISTER_CACHE_DIR=str(tmp_path / "cache"))
    return env


def test_register_text_without_detector_weights_says_so_at_once_without_the_network(
        silent_hub, hippocampus_paths, tmp_path):
    """The message names the missing model, the cache folder to put it in, the env var, the option that takes a
    local folder and the command that fetches it; no connection reached the hub, and it came in seconds."""
    fixed, _ = hippocampus_paths("001")
    moving, _ = hippocampus_paths("004")
    out = tmp_path / "out"
    started = time.monotonic()
    try:
        result = subprocess.run(
            [sys.executable, "-m", "promptregister", "register", "--fixed", str(fixed), "--moving", str(moving),
             "--text", "hippocampus", "--model", "classical", "--device", "cpu", "--out-dir", str(out), "--quiet"],
            capture_output=True, text=True, env=online_env(tmp_path, silent_hub), timeout=120)
    except subprocess.TimeoutExpired:
        pytest.fail(f"register --text hung for 120 s ({len(silent_hub.connections)} connections to the hub)")
    elapsed = time.monotonic() - started
    assert result.returncode == 2, result.stdout + result.stderr
    assert silent_hub.connections == [], "the hub was contacted"
    assert elapsed < 60, f"the error took {elapsed:.0f} s"  # process start and imports; the hub would hang it
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    message = errors[0]
    assert "grounding-dino-tiny" in message and "is not available" in message
    assert str(tmp_path / "cache" / "weights" / "grounding-dino-tiny") in message  # where to put it
    assert "PROMPTREGISTER_WEIGHTS_DIR" in message and "--detector-checkpoint" in message
    assert "`promptregister weights fetch grounding-dino-tiny`" in message
    assert "a2bb814dd30d776dcf7e30523b00659f4f141c71" in message  # the pinned revision to download by hand
    assert not out.exists() or not any(out.iterdir())


SCRIPT = """
import sys
from promptregister import PromptRegisterError
from promptregister.models import build_detector
from promptregister.models.weights import Checkpoint, WeightsManager

sha, size, revision, empty = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
for label, pin in (("pinned", sha), ("other", "0" * 64)):
    manager = WeightsManager(weights_dir=empty, cache_dir=empty, allow_download=False)
    manager.add(Checkpoint("tiny-gdino", "test-org/tiny-gdino", "hf-groundingdino", "tiny-gdino",
                           "https://example.invalid", pin, size, "test", revision=revision,
                           weight_file="model.safetensors"))
    try:
        detector = build_detector("tiny-gdino", manager=manager, device="cpu")
        print(label, "loaded", detector.name)
    except PromptRegisterError as error:
        print(label, "error", error)
"""


def test_a_pinned_model_already_in_the_hugging_face_cache_is_used_offline(silent_hub, tmp_path):
    """A user who already has the model in ~/.cache/huggingface gets it without a download, and only when its
    weights match the pin; neither case contacts the hub."""
    source = save_tiny_hf_grounding_dino(tmp_path / "tiny")
    revision = "1234567890abcdef1234567890abcdef12345678"
    repo = tmp_path / "hf" / "hub" / "models--test-org--tiny-gdino"
    shutil.copytree(source, repo / "snapshots" / revision)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)
    weights = source / "model.safetensors"
    (tmp_path / "empty").mkdir()
    try:
        result = subprocess.run(
            [sys.executable, "-c", SCRIPT, sha256_of(weights), str(weights.stat().st_size), revision,
             str(tmp_path / "empty")],
            capture_output=True, text=True, env=online_env(tmp_path, silent_hub), timeout=120)
    except subprocess.TimeoutExpired:
        pytest.fail(f"loading hung for 120 s ({len(silent_hub.connections)} connections to the hub)")
    assert result.returncode == 0, result.stderr
    assert "pinned loaded tiny-gdino" in result.stdout
    assert "other error model tiny-gdino" in result.stdout and "is not available" in result.stdout
    assert silent_hub.connections == [], "the hub was contacted"
