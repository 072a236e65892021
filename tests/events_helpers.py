"""Real parts for the events-out tests: tracked frames made up, a Mosquitto of a test's own (stop and start it: a
broker restart), an MQTT subscriber on it, and a webhook receiver on loopback that checks signatures the way
docs/events.md tells receivers to."""

from __future__ import annotations

import getpass
import hashlib
import hmac
import json
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from deepfer_core.types import EMOTIONS, UNCERTAIN, FaceBox, FaceResult, Frame, FrameResult

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def frame(at: float, people: dict[int, str], camera: str = "cam") -> FrameResult:
    """A tracked frame: each person (track id) shown with one emotion at 0.94. ``"uncertain"``: a face the tracker
    could not read (issue 32), its probabilities still peaked on ``sad`` (so counting it would show)."""
    faces = []
    for tid, emotion in people.items():
        p = np.full(len(EMOTIONS), 0.01, dtype=np.float32)
        p[EMOTIONS.index("sad" if emotion == UNCERTAIN else emotion)] = 0.94
        faces.append(FaceResult(FaceBox(0, 0, 10, 10), p, True, tid, p, emotion, confident=emotion != UNCERTAIN))
    return FrameResult(Frame(camera, int(at * 10), at, np.zeros((4, 4, 3), np.uint8)), faces, at)


def wait_for(pred: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


class Mosquitto:
    """``mosquitto`` on 127.0.0.1:``port``, persisting sessions in ``dir`` so a restart keeps queued messages."""

    def __init__(self, port: int, dir: Path):
        if not Path(MOSQUITTO).exists():
            pytest.skip("needs Debian's mosquitto (scripts/install-system-deps.sh installs it)")
        self.port, self.dir = port, dir
        self.conf = dir / "mosquitto.conf"
        # user: as root, mosquitto would switch to its own user, which cannot write the test's private folder
        self.conf.write_text(f"user {getpass.getuser()}\nlistener {port} 127.0.0.1\nallow_anonymous true\n"
                             f"persistence true\n"
                             f"persistence_location {dir}/\nautosave_interval 1\n")
        self.proc: subprocess.Popen | None = None

    def start(self) -> Mosquitto:
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        wait_for(lambda: answers(self.port), 10, "mosquitto to listen")
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None
        wait_for(lambda: not answers(self.port), 10, "mosquitto to stop")

    def crash(self) -> None:
        """SIGKILL: no wills sent, the retained messages as of the last autosave (every second) kept."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)
        self.proc = None
        wait_for(lambda: not answers(self.port), 10, "mosquitto to die")


class Subscriber:
    """Everything under ``topics``, in arrival order: (topic, payload bytes, retained). A persistent session
    (fixed id, QoS 1), so messages the broker holds for it while it is away arrive when it is back."""

    def __init__(self, port: int, topics: list[str], client_id: str = "deepfer-test-sub", clean: bool = True,
                 v5: bool = False):
        """``v5``: an MQTT 5 client, which also keeps each message's remaining expiry (``expiries``)."""
        self.messages: list[tuple[str, bytes, bool]] = []
        self.expiries: list[tuple[str, bytes, int | None]] = []
        self.lock = threading.Lock()
        self.topics = topics
        self.connected = threading.Event()
        if v5:
            self.c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        else:
            self.c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean)
        self.c.on_connect = self._on_connect
        self.c.on_message = self._on_message
        self.c.on_disconnect = lambda *a: self.connected.clear()
        self.c.reconnect_delay_set(0.1, 0.5)
        self.c.connect("127.0.0.1", port, keepalive=10)
        self.c.loop_start()
        wait_for(self.connected.is_set, 10, "the subscriber to connect")

    def _on_connect(self, client, userdata, flags, reason, properties):
        for t in self.topics:
            client.subscribe(t, qos=1)
        time.sleep(0.1)
        self.connected.set()

    def _on_message(self, client, userdata, msg):
        with self.lock:
            self.messages.append((msg.topic, msg.payload, bool(msg.retain)))
            expiry = getattr(getattr(msg, "properties", None), "MessageExpiryInterval", None)
            self.expiries.append((msg.topic, msg.payload, expiry))

    def on(self, topic: str) -> list[bytes]:
        with self.lock:
            return [p for t, p, _ in self.messages if t == topic]

    def json_on(self, topic: str) -> list[dict]:
        return [json.loads(p) for p in self.on(topic)]

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def retained(port: int, topic: str) -> list[bytes]:
    """What a new reader of ``topic`` is told at once: the broker's retained message (empty list: none; messages
    published meanwhile reach it with the retain flag cleared, so they are not counted)."""
    sub = Subscriber(port, [topic], client_id=f"deepfer-peek-{time.monotonic_ns()}")
    try:
        time.sleep(0.3)
        with sub.lock:
            return [p for t, p, kept in sub.messages if t == topic and kept]
    finally:
        sub.close()


class Broker311:
    """A broker that only speaks MQTT 3.1.1, just enough for one publisher: an MQTT 5 CONNECT gets CONNACK 0x01
    (unacceptable protocol version), a 3.1.1 one is accepted; QoS 1 PUBLISHes are acknowledged and kept (topic,
    payload, retained), SUBSCRIBE and PINGREQ answered."""

    def __init__(self, port: int):
        self.port = port
        self.versions: list[int] = []  # the protocol level of each CONNECT
        self.published: list[tuple[str, bytes, bool]] = []
        self.server = socket.create_server(("127.0.0.1", port))
        self.server.settimeout(0.2)
        self._stop = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.server.accept()
            except OSError:
                continue
            threading.Thread(target=self._client, args=(conn,), daemon=True).start()

    @staticmethod
    def _read(conn: socket.socket, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = conn.recv(n - len(data))
            if not chunk:
                raise ConnectionError
            data += chunk
        return data

    def _packet(self, conn: socket.socket) -> tuple[int, bytes]:
        header = self._read(conn, 1)[0]
        length, shift = 0, 0
        while True:
            byte = self._read(conn, 1)[0]
            length += (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        return header, self._read(conn, length)

    def _client(self, conn: socket.socket) -> None:
        with conn:
            try:
                header, body = self._packet(conn)
                level = body[6]  # after the protocol name "MQTT" with its 2-byte length
                self.versions.append(level)
                if header >> 4 != 1 or level != 4:
                    conn.sendall(b"\x20\x02\x00\x01")
                    return
                conn.sendall(b"\x20\x02\x00\x00")
                while not self._stop.is_set():
                    header, body = self._packet(conn)
                    kind = header >> 4
                    if kind == 3:  # PUBLISH
                        n = int.from_bytes(body[:2], "big")
                        topic = body[2:2 + n].decode()
                        qos = (header >> 1) & 3
                        rest = body[2 + n:]
                        if qos:
                            conn.sendall(b"\x40\x02" + rest[:2])
                            rest = rest[2:]
                        self.published.append((topic, bytes(rest), bool(header & 1)))
                    elif kind == 8:  # SUBSCRIBE: granted QoS 1 for each filter
                        count = 0
                        i = 2
                        while i < len(body):
                            i += 2 + int.from_bytes(body[i:i + 2], "big") + 1
                            count += 1
                        conn.sendall(bytes([0x90, 2 + count]) + body[:2] + b"\x01" * count)
                    elif kind == 12:  # PINGREQ
                        conn.sendall(b"\xd0\x00")
                    elif kind == 14:  # DISCONNECT
                        return
            except (ConnectionError, OSError, IndexError):
                return

    def stop(self) -> None:
        self._stop.set()
        self.server.close()


def verify(secret: bytes, headers, body: bytes, max_age_s: float = 300) -> bool:
    """docs/events.md's receiver check: the timestamp is recent and the signature is HMAC-SHA256(secret, ts + '.' +
    body)."""
    ts = headers["X-DeepFER-Timestamp"]
    if abs(time.time() - int(ts)) > max_age_s:
        return False
    expected = "sha256=" + hmac.new(secret, ts.encode() + b"." + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, headers["X-DeepFER-Signature"])


class Receiver:
    """A webhook receiver on 127.0.0.1:``port``: keeps (event type, JSON, signature ok) per POST, answers
    ``status``."""

    def __init__(self, port: int, secret: bytes):
        self.port, self.secret, self.status = port, secret, 200
        self.got: list[tuple[str, dict, bool]] = []
        self.server: ThreadingHTTPServer | None = None
        self.answered: list[int] = []

    def start(self) -> Receiver:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                status = outer.status
                outer.answered.append(status)
                if status == 200:
                    outer.got.append((self.headers["X-DeepFER-Event"], json.loads(body),
                                      verify(outer.secret, self.headers, body)))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None
