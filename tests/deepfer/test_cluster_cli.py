"""What README tells a new user, with real processes: ``ray start --head``, ``ray start --address`` for a second node,
``deepfer serve --cluster HEAD:PORT``; and the one-line error when no head answers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.redis_helpers import free_port, unique_prefix
from tests.streamer.test_cluster import wait_for

pytest.importorskip("ray", reason="the cluster extra is not installed (pip install 'deepfer[cluster]')")
pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def ray_start(token: str, *args: str) -> subprocess.Popen:
    """``ray start ... --block`` as a child of this test: terminating it stops that node's processes (and only them)."""
    ray_cli = Path(sys.executable).with_name("ray")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "DEEPFER_"))} | {
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": token,
    }
    return subprocess.Popen(
        [str(ray_cli), "start", "--block", "--disable-usage-stats", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM to ``ray start`` itself: it drains its node and stops that node's processes (SIGKILL to the group if
    not)."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(45)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def test_readme_steps_ray_start_head_join_a_node_and_serve_with_cluster(redis_url, media, tmp_path):
    """What README tells a new user: `ray start --head`, `ray start --address` on the second node, then
    `deepfer serve --cluster HEAD:PORT`; a camera added through the API runs on the joined node."""
    import secrets
    import shutil
    import tempfile

    from tests.dashboard_helpers import served_process

    token = secrets.token_hex(32)  # this cluster's own, as README says to share it with every node and the dashboard
    port = free_port()
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's unix socket paths must fit 107 characters
    head = ray_start(
        token,
        "--head",
        "--node-ip-address=127.0.0.1",
        f"--port={port}",
        "--num-cpus=0",
        "--include-dashboard=false",
        f"--temp-dir={temp}",
    )
    node = None
    proc = None
    try:
        wait_for("the head's GCS port", lambda: head.poll() is None and _listens(port), 90, 0.5)
        node = ray_start(
            token,
            f"--address=127.0.0.1:{port}",
            "--node-ip-address=127.0.0.1",
            "--num-cpus=1",
            '--resources={"second": 1}',
        )
        with unique_prefix(redis_url, "test-cluster-cli") as prefix:
            web = free_port()
            env = {"DEEPFER_REDIS__KEY_PREFIX": prefix, "DEEPFER_PATHS__DATA_DIR": str(tmp_path / "data"),
                   "DEEPFER_CLASSIFIER__DEVICE": "cpu", "DEEPFER_DETECTOR__DEVICE": "cpu",
                   "DEEPFER_DETECTOR__DETECT_EVERY": "4", "DEEPFER_CLUSTER__POLL_S": "0.5",
                   "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token,
                   "DEEPFER_SOURCES__MEDIA_DIRS": json.dumps([str(media)])}
            with served_process(["--cluster", f"127.0.0.1:{port}", "--redis", redis_url], env, web,
                                tmp_path / "serve.log", cwd=tmp_path, start_timeout_s=180, stop_timeout_s=90) as served:
                proc = served.proc
                assert f"Ray cluster at 127.0.0.1:{port}" in served.output(), served.output()
                base = served.url
                workers = wait_for(
                    "a worker on the joined node",
                    lambda: [w for w in httpx.get(f"{base}/health").json()["workers"] if w["state"] == "ready"],
                    300,
                    1,
                )
                assert len(workers) == 1  # the head has no CPUs for cameras
                res = httpx.post(f"{base}/api/cameras", json={"id": "lobby", "url": str(media / "woman2.mp4")},
                                 timeout=60)
                assert res.status_code == 201, res.text
                view = wait_for(
                    "lobby analysed on the worker",
                    lambda: (
                        (v := httpx.get(f"{base}/api/cameras/lobby").json())["stats"]
                        and v["stats"]["frames_processed"] > 0
                        and v
                    ),
                    120,
                )
                assert view["worker"] == workers[0]["name"] and view["node"] == workers[0]["node"]
            assert proc.returncode == 0, served.output()  # Ctrl-C: a clean stop
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
        for p in (node, head):
            if p is not None:
                stop(p)
        shutil.rmtree(temp, ignore_errors=True)


def _listens(port: int) -> bool:
    import socket

    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


@pytest.mark.e2e  # serve finds Redis (or starts redis-server) before it asks Ray
def test_serve_cluster_with_nobody_at_the_address_is_one_line(free_port):
    from typer.testing import CliRunner

    from deepfer.cli import app

    result = CliRunner().invoke(app, ["serve", "--cluster", f"127.0.0.1:{free_port}"])
    assert result.exit_code == 2 and "no Ray head answers" in result.output and "Traceback" not in result.output
