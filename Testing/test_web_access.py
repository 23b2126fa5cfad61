"""The browser app's safety defaults, checked before anything is served: who may connect, which files may be read,
how large an upload may be. No browser here (test_web_browser.py has the real one)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from promptregister.errors import PromptRegisterError

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "PromptRegister"))

from PromptRegisterWeb.access import DataFolder, access_token, check_upload, is_loopback  # noqa: E402


@pytest.mark.parametrize("host, loopback", [("127.0.0.1", True), ("127.0.0.2", True), ("localhost", True),
                                            ("::1", True), ("0.0.0.0", False), ("192.168.1.20", False),
                                            ("::", False), ("example.org", False)])
def test_loopback_is_this_machine_only(host, loopback):
    assert is_loopback(host) is loopback


def test_a_non_loopback_address_without_a_token_is_refused():
    with pytest.raises(PromptRegisterError, match="--no-token is refused with --host 0.0.0.0"):
        access_token("0.0.0.0", None, no_token=True)
    assert access_token("127.0.0.1", None, no_token=True) is None  # loopback: the user's choice


def test_the_token_is_random_and_long_unless_the_user_gives_one():
    first, second = access_token("0.0.0.0", None, False), access_token("0.0.0.0", None, False)
    assert first != second and len(first) >= 32
    assert access_token("0.0.0.0", "a-token-of-my-own-1234", False) == "a-token-of-my-own-1234"
    with pytest.raises(PromptRegisterError, match="at least 16"):
        access_token("0.0.0.0", "short", False)


def test_only_volumes_inside_the_data_folder_are_read(tmp_path):
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    (data / "a.nii.gz").write_bytes(b"x")
    (data / "sub" / "b.nrrd").write_bytes(b"x")
    (data / "notes.txt").write_text("x")
    secret = tmp_path / "secret.nii.gz"
    secret.write_bytes(b"x")
    os.symlink(secret, data / "link.nii.gz")  # a link that leads out of the folder
    folder = DataFolder(data)
    assert folder.names() == ["a.nii.gz", "sub/b.nrrd"]
    assert folder.resolve("sub/b.nrrd") == (data / "sub" / "b.nrrd").resolve()
    for name, reason in (("../secret.nii.gz", "outside the data folder"), (str(secret), "not a file name inside"),
                         ("link.nii.gz", "outside the data folder"), ("notes.txt", "not a volume file"),
                         ("missing.nii.gz", "not a file"), ("", "not a file name")):
        with pytest.raises(PromptRegisterError, match=reason):
            folder.resolve(name)
    with pytest.raises(PromptRegisterError, match="no data folder"):
        DataFolder(None).resolve("a.nii.gz")
    with pytest.raises(PromptRegisterError, match="is not a folder"):
        DataFolder(tmp_path / "nowhere")


def test_uploads_are_capped_and_keep_only_their_base_name():
    assert check_upload("../../etc/case.nii.gz", 1000) == "case.nii.gz"
    assert check_upload("C:\\scans\\case.mha", 1000) == "case.mha"
    with pytest.raises(PromptRegisterError, match="over the upload limit of 10 MB"):
        check_upload("big.nii.gz", 11 * 1024 * 1024, limit_mb=10)
    with pytest.raises(PromptRegisterError, match="not a volume file"):
        check_upload("script.py", 10)


def run_cli(*arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "promptregister", "web", *arguments], capture_output=True,
                          text=True, timeout=120)


def test_the_command_refuses_unsafe_or_wrong_settings_in_one_line_before_serving(tmp_path):
    for arguments, message in (
            (("--host", "0.0.0.0", "--no-token"), "--no-token is refused with --host 0.0.0.0"),
            (("--fixed", str(tmp_path / "f.nii.gz")), "give both --fixed and --moving"),
            (("--fixed", str(tmp_path / "f.nii.gz"), "--moving", str(tmp_path / "m.nii.gz")), "does not exist"),
            (("--sample", "--fixed", "x", "--moving", "y"), "not both"),
            (("--data-dir", str(tmp_path / "none")), "is not a folder"),
            (("--port", "70000"), "is not a port number")):
        result = run_cli(*arguments)
        assert result.returncode == 2, (arguments, result.stderr)
        assert result.stderr.strip().splitlines() == [f"error: {result.stderr.strip()[7:]}"], result.stderr
        assert message in result.stderr
        assert "Traceback" not in result.stderr and "serving" not in result.stdout


def test_trame_gets_the_token_even_when_it_begins_with_a_dash():
    import argparse

    from wslink import server as wslink_server

    from PromptRegisterWeb.app import WebConfig, largest_message, trame_arguments

    parser = argparse.ArgumentParser()
    wslink_server.add_arguments(parser)
    for token in ("-starts-with-a-dash-0123", "plain-token-0123456789"):
        options, _ = parser.parse_known_args(trame_arguments(WebConfig(token=token))[1:])
        assert options.authKey == token
    assert 10 * 1024 * 1024 < largest_message(WebConfig(upload_limit_mb=10)) < 20 * 1024 * 1024
