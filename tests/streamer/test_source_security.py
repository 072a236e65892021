"""Camera URLs and the network policy at the source level: parsing and rebuilding, the policy checked in the connect
path of every attempt (a real listener that must see nothing), DNS rebinding, rtsps:// names and certificates with a
real TLS listener, redaction, and ``deepfer run`` still reading any file its user names."""

from __future__ import annotations

import asyncio
import datetime
import logging
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from deepfer_core.redact import RedactFilter, redact
from deepfer_core.settings import DashboardSettings, Settings, SourceSettings, max_cameras
from streamer.netpolicy import (
    HostUnresolved,
    NetworkPolicy,
    PolicyRefused,
    service_endpoints,
)
from streamer.source_url import SourceError, parse_camera_url
from streamer.sources import RtspSource, open_source
from tests.net_helpers import TcpRecorder
from tests.rtsp_server import RtspServer, available

pytestmark = pytest.mark.timeout(120)
FAST = dict(connect_timeout_s=1.0, read_timeout_s=1.0, reconnect_initial_s=0.2, reconnect_max_s=0.5,
            reconnect_jitter=0.0)


# ----- parsing and rebuilding -----------------------------------------------------------------------------------------

def test_urls_are_rebuilt_from_their_parts():
    u = parse_camera_url("RTSP://Admin:p%40ss:w%2F@Cam.Example.:8554/Streaming/101?channel=1&subtype=0")
    assert (u.scheme, u.user, u.password, u.host, u.port) == ("rtsp", b"Admin", b"p@ss:w/", "cam.example", 8554)
    assert u.url == "rtsp://Admin:p%40ss%3Aw%2F@cam.example:8554/Streaming/101?channel=1&subtype=0"
    assert u.with_host("10.0.0.5").url == "rtsp://Admin:p%40ss%3Aw%2F@10.0.0.5:8554/Streaming/101?channel=1&subtype=0"
    v6 = parse_camera_url("rtsps://[2001:DB8::1]/live")
    assert (v6.host, v6.effective_port, v6.url) == ("2001:db8::1", 322, "rtsps://[2001:db8::1]/live")
    assert parse_camera_url("rtsp://h/a|b{c}^").path == "/a%7Cb%7Bc%7D%5E"  # odd characters escaped, never dropped
    assert parse_camera_url("rtsp://u:%C3%A9%FF@h/").password == "é".encode() + b"\xff"  # bytes kept exactly


@pytest.mark.parametrize("url, reason", [
    ("rtsp://h/x\r\nSET k 1", "whitespace"), ("rtsp://h/x y", "whitespace"), ("rtsp://h/\x7f", "whitespace"),
    ("rtsp://h/caf\u00e9", "non-ASCII"), ("rtsp://h/x%0D%0A", "percent-encoded control"),
    ("rtsp://h/%7f", "percent-encoded control"), ("rtsp://u%00:p@h/", "percent-encoded control"),
    ("rtsp://h/%g1", "two hex digits"), ("rtsp://h:99999/", "malformed"),
    ("rtsp://h:0/", "1-65535"), ("rtsp:///x", "host"), ("rtsp://-bad-/x", "host"), ("rtsp://h/x#frag", "fragment"),
    ("rtsp://[fe80::1%25eth0]/x", "IPv6"), ("http://h/x", "rtsp:// or rtsps://"),
])
def test_hostile_or_broken_urls_are_refused_with_one_line(url, reason):
    with pytest.raises(SourceError) as err:
        parse_camera_url(url)
    message = str(err.value)
    assert reason in message and "\n" not in message and "SET" not in message and url not in message


def test_cli_refuses_a_smuggling_url_in_one_line(tmp_path):
    res = subprocess.run([sys.executable, "-m", "deepfer", "run", "--source", "rtsp://127.0.0.1:9/x\r\nSET k 1",
                          "--no-redis"], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert res.returncode == 2 and "camera URL has whitespace" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr


# ----- the network policy ---------------------------------------------------------------------------------------------

def test_policy_with_the_system_resolver():
    policy = NetworkPolicy.from_settings(SourceSettings(), ["redis://:pw@localhost:6380/0"])
    assert policy.check("127.0.0.1", 554).compressed == "127.0.0.1"
    assert str(policy.check("localhost", 8554)) in ("127.0.0.1", "::1")
    for host, port in (("localhost", 6380), ("127.0.0.2", 6380), ("0.0.0.0", 554), ("169.254.169.254", 80),
                       ("fd00:ec2::254", 80), ("::ffff:169.254.169.254", 80), ("2852039166", 80)):
        with pytest.raises(PolicyRefused):
            policy.check(host, port)
    with pytest.raises(HostUnresolved):
        policy.check("no-such-camera.invalid", 554)
    only_lan = NetworkPolicy.from_settings(SourceSettings(allowed_networks=["10.0.0.0/8"], denied_networks=[]))
    assert str(only_lan.check("10.1.2.3", 554)) == "10.1.2.3"
    with pytest.raises(PolicyRefused, match="not in sources.allowed_networks"):
        only_lan.check("127.0.0.1", 554)
    assert service_endpoints("unix:///tmp/redis.sock") == []
    with pytest.raises(ValueError, match="CIDR"):
        SourceSettings(denied_networks=["not-a-net"])


async def test_policy_is_checked_in_the_connect_path_of_every_attempt(caplog):
    """A camera the policy refuses is never connected to, however it got there (restored, CLI, or added earlier)."""
    caplog.set_level(logging.WARNING, logger="streamer.sources")
    with TcpRecorder() as target:
        settings = SourceSettings(denied_networks=["127.0.0.0/8"], **FAST)
        src = RtspSource(f"rtsp://cam:pw-Secret9@127.0.0.1:{target.port}/x", "cam", settings, 1,
                         policy=NetworkPolicy.from_settings(settings))
        src.start()
        await asyncio.sleep(1.5)
        await src.aclose()
        assert target.connections == 0 and target.received == b""
    assert src.reconnects >= 2 and "network policy" in src.last_error
    assert "network policy" in caplog.text and "pw-Secret9" not in caplog.text


@pytest.fixture
def rtsp_server(media: Path, free_port: int):
    reason = available()
    if reason:
        pytest.skip(reason)
    server = RtspServer(free_port, media / "woman2.mp4").start()
    yield server
    server.kill()


async def test_dns_rebinding_after_the_check_is_refused_at_the_next_connect(rtsp_server):
    """FFmpeg is handed the checked address (it never resolves the name itself), and the name is resolved and
    checked again before each reconnect: a name rebound into a refused network gets no connection."""
    lookups: list[str] = []
    answer = {"ip": "127.0.0.1"}

    def resolver(host: str, port: int) -> list[str]:  # a name that exists only here: FFmpeg could not resolve it
        lookups.append(host)
        return [answer["ip"]]

    with TcpRecorder("127.0.0.2", rtsp_server.port) as rebound:
        settings = SourceSettings(denied_networks=["127.0.0.2/32"], **FAST)
        src = RtspSource(f"rtsp://camera.test:{rtsp_server.port}/live", "cam", settings, 1,
                         policy=NetworkPolicy.from_settings(settings, resolver=resolver))
        src.start()
        async with asyncio.timeout(30):
            assert (await src.get()) is not None  # connected through the pinned 127.0.0.1
        answer["ip"] = "127.0.0.2"
        rtsp_server.kill()
        deadline = time.monotonic() + 20
        while not (src.last_error and "network policy" in src.last_error):
            assert time.monotonic() < deadline, src.last_error
            await asyncio.sleep(0.1)
        await src.aclose()
        assert rebound.connections == 0
    assert lookups.count("camera.test") >= 2


def tls_listener(cert: Path, key: Path):
    """A TLS server on loopback recording the SNI name and whatever arrives after the handshake."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    seen = {"sni": [], "data": b""}
    ctx.sni_callback = lambda sock, name, c: seen["sni"].append(name)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    listener.settimeout(8)

    def serve():
        try:
            raw, _ = listener.accept()
            with ctx.wrap_socket(raw, server_side=True) as conn:
                conn.settimeout(2)
                seen["data"] += conn.recv(4096)
        except (OSError, ssl.SSLError):
            pass

    threading.Thread(target=serve, daemon=True).start()
    return listener, seen


def make_cert(tmp_path: Path, name: str) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / f"{name}.crt", tmp_path / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


async def run_briefly(src: RtspSource, seconds: float = 1.5) -> None:
    src.start()
    await asyncio.sleep(seconds)
    await src.aclose()


async def test_rtsps_names_are_kept_only_when_certificates_are_verified(tmp_path):
    cert, key = make_cert(tmp_path, "localhost")
    # not verified (FFmpeg's default): the checked IP is pinned, so no name goes out (no SNI)
    listener, seen = tls_listener(cert, key)
    port = listener.getsockname()[1]
    await run_briefly(RtspSource(f"rtsps://localhost:{port}/x", "a", SourceSettings(**FAST), 1))
    listener.close()
    assert seen["sni"] == [None] and seen["data"].startswith(f"OPTIONS rtsps://127.0.0.1:{port}/x".encode())
    # verified against sources.rtsps_ca_file: the name is kept (SNI, and the certificate must match it)
    listener, seen = tls_listener(cert, key)
    port = listener.getsockname()[1]
    verified = SourceSettings(rtsps_ca_file=str(cert), **FAST)
    await run_briefly(RtspSource(f"rtsps://localhost:{port}/x", "b", verified, 1))
    listener.close()
    assert seen["sni"] == ["localhost"] and seen["data"].startswith(f"OPTIONS rtsps://localhost:{port}/x".encode())
    # a certificate for another name fails the handshake: not one RTSP byte is sent
    other, other_key = make_cert(tmp_path, "cam.example")
    listener, seen = tls_listener(other, other_key)
    port = listener.getsockname()[1]
    src = RtspSource(f"rtsps://localhost:{port}/x", "c", SourceSettings(rtsps_ca_file=str(other), **FAST), 1)
    await run_briefly(src)
    listener.close()
    assert seen["data"] == b"" and src.frames_read == 0 and src.reconnects >= 1


# ----- redaction ------------------------------------------------------------------------------------------------------

def test_redact_hides_user_password_secret_parameters_and_known_secrets():
    assert redact("rtsp://admin:hunter2@10.0.0.5:554/Streaming/101") == "rtsp://***@10.0.0.5:554/Streaming/101"
    assert (redact("rtsps://user@cam.example/live?token=abc123&channel=2")
            == "rtsps://***@cam.example/live?token=***&channel=2")
    assert redact("rtsp://cam.local/live") == "rtsp://cam.local/live" and redact("videos/clip.mp4") == "videos/clip.mp4"
    assert redact("redis://:p@ss@127.0.0.1:6379/0") == "redis://***@127.0.0.1:6379/0"  # the last '@' ends the user info
    line = "error opening 'rtsp://admin:hunter2@h/x': refused; see rediss://u:pw-9@r:6380 and GET /a?api_key=k1&x=2"
    out = redact(line)
    assert "hunter2" not in out and "pw-9" not in out and "k1" not in out and "x=2" in out
    assert redact("TURN user turn-user-1 said hi", secrets=["turn-user-1", "ab"]) == "TURN user *** said hi"


def test_the_cli_log_filter_redacts_every_record():
    record = logging.LogRecord("x", logging.WARNING, __file__, 1, "Redis at %s is down (%s)",
                               ("redis://:pw-77@h:1", "pass-token-5"), None)
    RedactFilter(["pass-token-5"]).filter(record)
    assert record.getMessage() == "Redis at redis://***@h:1 is down (***)"


# ----- files from the command line, and the camera cap's default ------------------------------------------------------

def test_deepfer_run_still_reads_any_file_its_user_names(media, tiny_checkpoint, tmp_path):
    """``sources.media_dirs`` limits the dashboard API only: the CLI user names files with their own rights."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("DEEPFER_")}
    environ["DEEPFER_SOURCES__MEDIA_DIRS"] = f'["{tmp_path / "elsewhere"}"]'
    summary = tmp_path / "summary.json"
    res = subprocess.run([sys.executable, "-m", "deepfer", "run", "--source", str(media / "fer_test.mp4"),
                          "--weights", str(tiny_checkpoint), "--device", "cpu", "--detect-every", "6", "--no-redis",
                          "--summary-json", str(summary)], capture_output=True, text=True, cwd=tmp_path, env=environ,
                         timeout=240)
    assert res.returncode == 0, res.stderr[-2000:]
    assert '"frames_processed": 115' in summary.read_text()


def test_max_cameras_default_is_sized_for_the_machine():
    assert max_cameras(DashboardSettings()) == 4 * len(os.sched_getaffinity(0))
    assert max_cameras(DashboardSettings(max_cameras=3)) == 3
    assert Settings(dashboard={"max_cameras": 0}).dashboard.max_cameras == 0


def test_open_source_checks_urls_before_anything_starts():
    with pytest.raises(SourceError, match="whitespace"):
        open_source("rtsp://h/x\r\n", None, SourceSettings())
    with pytest.raises(SourceError, match="unsupported source"):
        open_source("gopher://h/x", None, SourceSettings())
