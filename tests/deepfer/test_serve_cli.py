"""``deepfer serve`` as a user starts it: a fresh machine (no Redis answering: an embedded redis-server), no camera,
its address printed, /health answering, Ctrl-C stopping it cleanly; bad start-up options are one line, exit 2."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from deepfer.cli import app
from tests.dashboard_helpers import served_process
from tests.redis_helpers import free_port

pytestmark = pytest.mark.timeout(180)


def test_serve_on_a_fresh_machine_starts_embedded_redis_and_prints_its_address(tiny_checkpoint: Path, tmp_path: Path):
    import shutil

    if shutil.which("redis-server") is None:
        pytest.skip("needs the redis-server binary (apt-get install redis-server)")
    port, dead = free_port(), free_port()
    # no Redis answers at default_url: serve must start its own under paths.data_dir
    env = {"DEEPFER_REDIS__DEFAULT_URL": f"redis://127.0.0.1:{dead}", "DEEPFER_PATHS__DATA_DIR": str(tmp_path / "data"),
           "DEEPFER_CLASSIFIER__DEVICE": "cpu", "DEEPFER_DETECTOR__DEVICE": "cpu"}
    with served_process(["--weights", str(tiny_checkpoint)], env, port, tmp_path / "serve.log", cwd=tmp_path) as s:
        lines = s.output().splitlines()
        found = re.search(r"http://\S+", next(line for line in lines if "DeepFER dashboard on" in line))
        assert found is not None, s.output()
        address = found.group(0)
        assert address == f"http://127.0.0.1:{port}/"
        health = httpx.get(f"{address}health", timeout=5)
        assert health.status_code == 200 and health.json() == {
            **health.json(),
            "status": "ok",
            "redis": True,
            "cameras": 0,
        }
        assert (tmp_path / "data" / "redis" / "url").is_file()  # the embedded server is running
        assert httpx.get(f"{address}api/cameras").json() == []  # loopback without a token: open
    assert s.proc.returncode == 0, s.output()  # Ctrl-C: a clean stop
    assert not (tmp_path / "data" / "redis" / "url").exists()  # the embedded server was stopped


def test_serve_start_up_errors_are_one_line():
    runner = CliRunner()
    off_loopback = runner.invoke(app, ["serve", "--host", "0.0.0.0"], env={"DEEPFER_DASHBOARD__TOKEN": ""})
    assert off_loopback.exit_code == 2 and "token" in off_loopback.output and "Traceback" not in off_loopback.output
    missing = runner.invoke(app, ["serve", "--weights", "/nonexistent/model.pt"])
    assert missing.exit_code == 2 and "weights file not found" in missing.output


def test_serve_without_any_redis_is_one_line(tiny_checkpoint: Path, tmp_path: Path):
    dead = free_port()
    res = CliRunner().invoke(
        app,
        ["serve", "--weights", str(tiny_checkpoint)],
        env={
            "DEEPFER_REDIS__DEFAULT_URL": f"redis://127.0.0.1:{dead}",
            "DEEPFER_REDIS__EMBEDDED": "false",
            "DEEPFER_PATHS__DATA_DIR": str(tmp_path),
        },
    )
    assert res.exit_code == 2 and "no Redis answers" in res.output and "Traceback" not in res.output


def test_serve_over_https_for_the_live_demo(tiny_checkpoint: Path, tmp_path: Path, redis_url):
    """Browsers give a page the camera only over HTTPS (or on localhost): serve can terminate TLS itself."""
    import shutil

    if shutil.which("openssl") is None:
        pytest.skip("needs openssl to make a self-signed certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-days",
            "1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    port = free_port()
    args = ["--weights", str(tiny_checkpoint), "--tls-cert", str(cert), "--tls-key", str(key), "--redis", redis_url]
    env = {"DEEPFER_PATHS__DATA_DIR": str(tmp_path / "data"), "DEEPFER_CLASSIFIER__DEVICE": "cpu",
           "DEEPFER_DETECTOR__DEVICE": "cpu"}
    with served_process(args, env, port, tmp_path / "serve.log", cwd=tmp_path, tls=True) as s:
        assert f"https://127.0.0.1:{port}/" in s.output()
        assert httpx.get(f"{s.url}/health", verify=False).status_code == 200
        assert httpx.get(f"{s.url}/demo", verify=False).status_code == 200
    assert s.proc.returncode == 0, s.output()


def test_serve_bad_tls_options_are_one_line(tmp_path: Path):
    (tmp_path / "junk.pem").write_text("not a certificate\n")
    runner = CliRunner()
    alone = runner.invoke(app, ["serve", "--tls-cert", str(tmp_path / "junk.pem")])
    assert alone.exit_code == 2 and "tls_key go together" in alone.output and "Traceback" not in alone.output
    junk = runner.invoke(
        app, ["serve", "--tls-cert", str(tmp_path / "junk.pem"), "--tls-key", str(tmp_path / "junk.pem")]
    )
    assert junk.exit_code == 2 and "cannot use the TLS certificate" in junk.output and "Traceback" not in junk.output
    missing = runner.invoke(app, ["serve", "--tls-cert", "/nonexistent.pem", "--tls-key", "/nonexistent.pem"])
    assert missing.exit_code == 2 and "not found" in missing.output
