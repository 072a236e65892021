"""A Ray cluster without token auth (issue 27, item 4), with real Ray heads on loopback: started as Ray's default
(no ``RAY_AUTH_MODE``), any client joins it, so ``deepfer serve --cluster`` refuses it in one line (or, with
``cluster.allow_unauthenticated``, warns loudly); a head in token mode passes the check in seconds."""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from deepfer_core.settings import Settings
from streamer.runtime.ray_connect import ClusterError, check_auth
from tests.deepfer.test_cluster_cli import _listens, stop
from tests.redis_helpers import free_port

pytest.importorskip("ray", reason="the cluster extra is not installed (pip install 'deepfer[cluster]')")
pytestmark = [pytest.mark.slow, pytest.mark.timeout(300), pytest.mark.e2e]  # real Ray heads


def head(token: str | None) -> tuple[subprocess.Popen, int, str]:
    """``ray start --head --block`` on loopback, in token mode when ``token`` is given; its port and temp dir."""
    port = free_port()
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's unix socket paths must fit 107 characters
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "DEEPFER_"))}
    env["HOME"] = temp  # no ~/.ray/auth_token of the machine's user switches token mode on by itself
    if token:  # as README says: the token in ~/.ray/auth_token (mode 600), never on a command line
        (Path(temp) / ".ray").mkdir()
        (Path(temp) / ".ray" / "auth_token").write_text(token)
        (Path(temp) / ".ray" / "auth_token").chmod(0o600)
        env["RAY_AUTH_MODE"] = "token"
    proc = subprocess.Popen(
        [str(Path(sys.executable).with_name("ray")), "start", "--block", "--disable-usage-stats", "--head",
         "--node-ip-address=127.0.0.1", f"--port={port}", "--num-cpus=0", "--include-dashboard=false",
         f"--temp-dir={temp}"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 90
    while not _listens(port):
        assert proc.poll() is None and time.monotonic() < deadline, "the Ray head did not start"
        time.sleep(0.5)
    time.sleep(2)  # the GCS listens a moment before it answers clients
    return proc, port, temp


@pytest.fixture(scope="module")
def open_head():
    proc, port, temp = head(None)
    yield f"127.0.0.1:{port}"
    stop(proc)
    shutil.rmtree(temp, ignore_errors=True)


def test_serve_refuses_a_cluster_that_lets_anyone_in(open_head: str):
    from typer.testing import CliRunner

    from deepfer.cli import app

    result = CliRunner().invoke(app, ["serve", "--cluster", open_head])
    assert result.exit_code == 2, result.output
    assert f"the Ray cluster at {open_head} lets in clients without a token" in result.output
    assert "RAY_AUTH_MODE=token" in result.output and "Traceback" not in result.output


def test_allowed_it_runs_with_a_loud_warning(open_head: str, caplog):
    caplog.set_level(logging.WARNING, logger="streamer.runtime.ray_connect")
    settings = Settings(cluster={"address": open_head, "allow_unauthenticated": True})
    assert check_auth(settings) is True
    assert any(r.getMessage().startswith("SECURITY: the Ray cluster") for r in caplog.records)


def test_a_head_in_token_mode_passes_quickly():
    token = secrets.token_hex(32)
    proc, port, temp = head(token)
    try:
        started = time.monotonic()
        assert check_auth(Settings(cluster={"address": f"127.0.0.1:{port}"})) is False  # it refused the probe
        assert time.monotonic() - started < 10
    finally:
        stop(proc)
        shutil.rmtree(temp, ignore_errors=True)
    with pytest.raises(ClusterError, match="no Ray head answers"):  # nobody there: connect's one line, as before
        check_auth(Settings(cluster={"address": f"127.0.0.1:{port}"}))
