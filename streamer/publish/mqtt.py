"""MQTT out (paho-mqtt): availability with a last will, per-camera state (retained), enter/leave events, alerts,
service stats and, when asked, Home Assistant discovery.

Topics (``p`` = ``mqtt.prefix``; ids pass through ``segment``):

- ``p/available``: ``online`` / ``offline`` (retained): the service's one availability topic. A single process
  (``role="service"``: ``deepfer run``, ``deepfer serve`` without a cluster) says ``online`` and has ``offline`` as
  its last will. In cluster mode the head (``role="head"``, the ``deepfer serve`` that runs the ``ClusterRunner``)
  owns it: ``online`` while at least one worker's topic below says ``online``, ``offline`` when none does (or as the
  head's last will); workers never write it, so one worker's death cannot turn the whole service ``offline``.
- ``p/workers/<worker>/available``: ``online`` / ``offline`` (retained; ``offline`` is the worker's last will): one
  per cluster worker (``role="worker"``, each Ray ``CameraWorker``). Home Assistant discovery of a worker's cameras
  lists both topics with ``availability_mode: all``: a camera is unavailable when its worker is gone.
- ``p/<camera>/state``: the camera's ``CameraState`` JSON (retained, every ``events.state_every_s``); a removed
  camera's ``"status": "removed"`` once, then its retained state (and discovery) cleared
- ``p/events``: ``enter`` / ``leave`` JSON
- ``p/alerts``: alert JSON (``firing`` / ``cleared``); ``p/<camera>/alert/<rule>``: ``ON`` / ``OFF`` (retained)
- ``p/stats``: the service's stats JSON (retained): a single process's own; in cluster mode only the head writes it,
  the sum of its own and its live workers' latest (``cluster_stats``), with the list of workers and their ``at``
- ``p/workers/<worker>/stats``: a cluster worker's own stats JSON (retained, expiring like its ``online``, cleared on
  a clean stop); the head reads them
- ``p/<camera>/paused/set``: ``ON`` pauses the camera, ``OFF`` resumes it (only with ``mqtt.control``; retained
  commands are ignored, so a stale one cannot pause a camera at every reconnect)

**Expiry (MQTT 5).** A last will is lost when the broker dies with DeepFER's connection in it (a crash: Mosquitto
sends the wills on a clean stop, not after a restart from its persistence file) and DeepFER dies too before it is
back: the retained ``online`` would stay forever. So every ``online`` is published with a message expiry
(``mqtt.availability_expiry``) and sent again every ``mqtt.availability_refresh_s``: one that nobody refreshes
vanishes by itself. The head counts a worker live until its ``online`` would expire (the broker tells the remaining
lifetime), so its ``p/available`` follows the workers' within one refresh. The session expiry is the same, so a
broker that keeps a crashed session's will sends it when the session ends. A broker that only speaks MQTT 3.1.1 gets
the 3.1.1 behaviour (will only, no expiry), said in one log line.

Everything goes at QoS 1. ``offer`` only appends to a bounded deque; a thread of ours hands messages to paho in
order, keeping at most ``_WINDOW`` unacknowledged. paho resends unacknowledged QoS 1 messages after a reconnect, so
a broker restart loses nothing within ``mqtt.queue_size`` (delivery is at least once: a message in flight when the
broker went away may come twice).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Literal

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from deepfer_core.settings import EventSettings, MqttSettings
from streamer.netpolicy import NetworkPolicy
from streamer.publish.base import MAX_PAYLOAD_BYTES, checked_address, encode, segment

log = logging.getLogger(__name__)

_WINDOW = 100  # messages handed to paho and not yet acknowledged, at most
_SETTLE_S = 0.5  # the head waits this long after subscribing for the retained worker topics before it says anything
_UNSUPPORTED = "Unsupported protocol version"  # paho's reason when a 3.1.1 broker refuses an MQTT 5 CONNECT
Role = Literal["service", "head", "worker"]
_HA_SENSORS = {  # key: (name, value template, unit, device class)
    "people_now": ("People now", "{{ value_json.people_now }}", None, None),
    "satisfaction": ("Satisfaction", "{{ value_json.satisfaction }}", None, None),
    "dominant": ("Dominant emotion", "{{ value_json.dominant }}", None, None),
    "fps": ("Frames per second", "{{ value_json.fps }}", "fps", None),
}


class MqttPublisher:
    name = "mqtt"

    def __init__(self, settings: MqttSettings, policy: NetworkPolicy | None = None, role: Role = "service",
                 worker: str = "", events: EventSettings | None = None):
        """``role``: who owns ``p/available`` and ``p/stats`` (module docstring); ``worker``: a worker's name in its
        topics (default: the client id); ``events``: how often state and stats come (their expiries)."""
        self.s = settings
        self.prefix = settings.prefix
        self.role = role
        self.client_id = settings.client_id or f"deepfer-{segment(socket.gethostname())}-{os.getpid()}"
        self.worker = segment(worker or self.client_id)
        self.service_availability = f"{self.prefix}/available"
        self.workers_topic = f"{self.prefix}/workers/+/available"
        # the topic this client's last will turns offline: a worker's own, else the service's
        self.availability = (f"{self.prefix}/workers/{self.worker}/available" if role == "worker"
                             else self.service_availability)
        self.stats_topic = (f"{self.prefix}/workers/{self.worker}/stats" if role == "worker"
                            else f"{self.prefix}/stats")
        ev = events or EventSettings()
        self.expiry_s = settings.availability_expiry
        # a worker's stats expire too, but never between two of them; Home Assistant's sensors likewise
        self.stats_expiry_s = max(self.expiry_s, int(3 * ev.stats_every_s) + 1)
        self.state_expiry_s = max(self.expiry_s, int(3 * ev.state_every_s) + 1)
        self.v5 = True  # until a broker refuses MQTT 5
        self._next_refresh = 0.0
        self.workers: dict[str, float] = {}  # head: worker topic level -> monotonic time its online expires
        self.worker_stats: dict[str, tuple[dict[str, Any], float]] = {}  # head: level -> (stats, expires at)
        self._said: bytes | None = None  # head: what it last published on p/available (None: not yet, this connection)
        self._settled = False
        self.address = checked_address(policy, settings.host, settings.port, f"mqtt broker {settings.host}")
        self._queue: deque[tuple[str, bytes, bool, int]] = deque()  # topic, body, retain, expiry (0: none)
        self._pending: deque[mqtt.MQTTMessageInfo] = deque()
        self._cond = threading.Condition()
        self._connected = threading.Event()
        self._closing = False
        self._cameras: set[str] = set()  # announced to Home Assistant
        self.published = self.dropped = self.too_large = self.connects = 0
        self._thread: threading.Thread | None = None
        self.on_control: Callable[[str, bool], None] | None = None  # (camera topic level, paused), paho's thread
        self.commands = self.refused_commands = 0
        self.client = self._client()

    def _client(self) -> mqtt.Client:
        """A paho client: MQTT 5 (the last will; a session that expires like ``online``), or 3.1.1 after a refusal."""
        s = self.s
        if self.v5:
            c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=mqtt.MQTTv5)
        else:
            c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=mqtt.MQTTv311,
                            clean_session=True)
        c.will_set(self.availability, "offline", qos=1, retain=True)  # will delay 0: at once
        if s.username:
            c.username_pw_set(s.username, s.password or None)
        if s.tls:
            c.tls_set(ca_certs=s.tls_ca_file or None, cert_reqs=ssl.CERT_REQUIRED)
        c.max_inflight_messages_set(_WINDOW)
        c.reconnect_delay_set(1, 10)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        return c

    def _expiring(self, seconds: int) -> Properties | None:
        """PUBLISH properties with a message expiry (MQTT 5), or None (3.1.1, or ``seconds`` 0)."""
        if not self.v5 or not seconds:
            return None
        props = Properties(PacketTypes.PUBLISH)
        props.MessageExpiryInterval = seconds
        return props

    # --- lifecycle ---

    def start(self) -> None:
        self._connect()
        self._thread = threading.Thread(target=self._send, name="deepfer-mqtt", daemon=True)
        self._thread.start()

    def _connect(self) -> None:
        # TLS keeps the name (the certificate is checked against it); plain MQTT connects to the checked address
        host = self.s.host if self.s.tls else self.address
        if self.v5:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = self.expiry_s
            self.client.connect_async(host, self.s.port, keepalive=self.s.keepalive_s, clean_start=True,
                                      properties=props)
        else:
            self.client.connect_async(host, self.s.port, keepalive=self.s.keepalive_s)
        self.client.loop_start()

    def _fall_back(self) -> None:
        """The broker refused MQTT 5: the same client over 3.1.1 (no expiry: the last will only)."""
        log.warning("mqtt broker %s:%d speaks MQTT 3.1.1 only: availability has a last will but no expiry (a "
                    "DeepFER that dies while the broker is down may stay online there)", self.s.host, self.s.port)
        old = self.client
        old.loop_stop()
        old.disconnect()
        self.v5 = False
        self.client = self._client()
        if not self._closing:
            self._connect()

    def close(self, timeout_s: float) -> None:
        """Send what is queued (within ``timeout_s`` while connected), then ``offline`` and a clean disconnect."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(max(0.0, deadline - time.monotonic()))
        if self._connected.is_set():
            if self.role == "worker":  # its stats go with it (the head stops counting them)
                self.client.publish(self.stats_topic, b"", qos=1, retain=True)
            info = self.client.publish(self.availability, "offline", qos=1, retain=True)
            try:
                info.wait_for_publish(max(0.1, deadline - time.monotonic()))
            except (RuntimeError, ValueError):
                pass
        self.client.disconnect()
        self.client.loop_stop()

    # --- what the sink offers ---

    def offer(self, kind: str, payload: dict[str, Any]) -> None:
        body = encode(payload)
        if body is None:
            self.too_large += 1
            return
        camera = segment(str(payload.get("camera", "")))
        if kind == "state" and payload.get("status") == "removed":
            # said once, then the retained state (and Home Assistant's device) cleared: ids such as WebRTC
            # visitors' come and go, and the broker would keep each one's last state forever
            self._put(f"{self.prefix}/{camera}/state", body, False)
            self._put(f"{self.prefix}/{camera}/state", b"", True)
            if camera in self._cameras:
                self._cameras.discard(camera)
                for topic, _ in self.discovery(camera):
                    self._put(topic, b"", True)
        elif kind == "state":
            if self.s.homeassistant and camera not in self._cameras:
                self._cameras.add(camera)
                for topic, config in self.discovery(camera):
                    self._put(topic, config, True)
            self._put(f"{self.prefix}/{camera}/state", body, True)
        elif kind in ("enter", "leave"):
            self._put(f"{self.prefix}/events", body, False)
        elif kind == "alert":
            self._put(f"{self.prefix}/alerts", body, False)
            on = b"ON" if payload.get("state") == "firing" else b"OFF"
            self._put(f"{self.prefix}/{camera}/alert/{segment(str(payload.get('rule', '')))}", on, True)
        elif kind == "stats" and self.role == "worker":
            self._put(self.stats_topic, encode({**payload, "worker": self.worker}) or body, True,
                      self.stats_expiry_s)
        elif kind == "stats" and self.role == "head":
            body = encode(self.cluster_stats(payload)) or body
            self._put(self.stats_topic, body, True)
        elif kind == "stats":
            self._put(self.stats_topic, body, True)

    def _put(self, topic: str, body: bytes, retain: bool, expiry_s: int = 0) -> None:
        with self._cond:
            if len(self._queue) >= self.s.queue_size:
                self.dropped += 1
                return
            self._queue.append((topic, body, retain, expiry_s))
            self._cond.notify()

    def cluster_stats(self, own: dict[str, Any]) -> dict[str, Any]:
        """Head: the service's stats, its own (``own``: its local pipeline, e.g. WebRTC visitors) plus each live
        worker's latest: cameras, people now, payloads, alerts firing and every publisher counter summed."""
        now = time.monotonic()
        with self._cond:
            live = sorted(w for w, until in self.workers.items() if until > now)
            latest = {w: st for w, (st, until) in self.worker_stats.items() if until > now and w in live}
        out = {**own, "scope": "cluster", "sent": dict(own.get("sent", {})),
               "publishers": {name: dict(c) for name, c in own.get("publishers", {}).items()}}
        workers = []
        for w in live:
            st = latest.get(w)
            workers.append({"worker": w, "at": st.get("at") if st else None,
                            "cameras": st.get("cameras", 0) if st else 0,
                            "people_now": st.get("people_now", 0) if st else 0})
            if st is None:
                continue
            for key in ("cameras", "people_now", "alerts_firing"):
                out[key] = out.get(key, 0) + _number(st.get(key))
            for kind, n in _items(st.get("sent")):
                out["sent"][kind] = out["sent"].get(kind, 0) + _number(n)
            for name, counters in _items(st.get("publishers")):
                mine = out["publishers"].setdefault(name, {})
                for key, n in _items(counters):
                    mine[key] = mine.get(key, 0) + _number(n)
        out["workers"] = workers
        return out

    def counters(self) -> dict[str, int]:
        return {"published": self.published, "dropped": self.dropped, "too_large": self.too_large,
                "queued": len(self._queue) + len(self._pending), "connected": int(self._connected.is_set()),
                "connects": self.connects, "commands": self.commands, "refused_commands": self.refused_commands,
                "workers_online": sum(until > time.monotonic() for until in list(self.workers.values())),
                "mqtt5": int(self.v5)}

    def discovery(self, camera: str) -> list[tuple[str, bytes]]:
        """Home Assistant MQTT discovery: the camera as a device with its sensors (retained configs)."""
        oid = f"{segment(self.prefix.replace('/', '_'))}_{camera}"
        device = {"identifiers": [oid], "name": f"DeepFER {camera}", "manufacturer": "DeepFER", "model": "camera"}
        common: dict[str, Any] = {"state_topic": f"{self.prefix}/{camera}/state", "device": device}
        if self.role == "worker":  # available while the service is and this camera's worker is
            common["availability"] = [{"topic": self.service_availability}, {"topic": self.availability}]
            common["availability_mode"] = "all"
        else:
            common["availability_topic"] = self.service_availability
        out = []
        if self.s.control:
            out.append((f"{self.s.discovery_prefix}/switch/{oid}/paused/config", json.dumps({
                **common, "name": "Paused", "unique_id": f"{oid}_paused",
                "command_topic": f"{self.prefix}/{camera}/paused/set",
                "value_template": "{{ 'ON' if value_json.status == 'paused' else 'OFF' }}"}).encode()))
        for key, (name, template, unit, _) in _HA_SENSORS.items():
            # unavailable in Home Assistant when the state stops coming (a DeepFER gone without its will)
            config = {**common, "name": name, "unique_id": f"{oid}_{key}", "value_template": template,
                      "expire_after": self.state_expiry_s}
            if unit:
                config["unit_of_measurement"] = unit
            if key in ("people_now", "satisfaction", "fps"):
                config["state_class"] = "measurement"
            out.append((f"{self.s.discovery_prefix}/sensor/{oid}/{key}/config", json.dumps(config).encode()))
        up = {**common, "name": "Up", "unique_id": f"{oid}_up", "device_class": "connectivity",
              "value_template": "{{ 'ON' if value_json.up else 'OFF' }}", "expire_after": self.state_expiry_s}
        out.append((f"{self.s.discovery_prefix}/binary_sensor/{oid}/up/config", json.dumps(up).encode()))
        return out

    # --- paho's thread and ours ---

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if reason.is_failure:
            if self.v5 and reason == _UNSUPPORTED:  # paho cannot change protocol on its own thread: ours does
                threading.Thread(target=self._fall_back, name="deepfer-mqtt-311", daemon=True).start()
                return
            log.warning("mqtt broker %s:%d refused the connection: %s", self.s.host, self.s.port, reason)
            return
        self.connects += 1
        if self.role == "head":  # p/available follows the workers' topics (retained ones come after the subscribe)
            with self._cond:
                self._said, self._settled = None, False
            client.subscribe(self.workers_topic, qos=1)
            client.subscribe(f"{self.prefix}/workers/+/stats", qos=1)
            timer = threading.Timer(_SETTLE_S, self._settle)
            timer.daemon = True
            timer.start()
        else:
            client.publish(self.availability, "online", qos=1, retain=True, properties=self._expiring(self.expiry_s))
        self._next_refresh = time.monotonic() + self.s.availability_refresh_s
        if self.s.control:
            client.subscribe(f"{self.prefix}/+/paused/set", qos=1)
        if self.connects > 1:
            log.info("mqtt broker %s:%d connected again", self.s.host, self.s.port)
            for camera in sorted(self._cameras):  # a broker without persistence forgot the retained configs
                for topic, config in self.discovery(camera):
                    client.publish(topic, config, qos=1, retain=True)
        self._connected.set()

    def _refresh(self) -> None:
        """Every ``availability_refresh_s`` (MQTT 5): ``online`` again with a fresh expiry; the head first forgets
        the workers whose ``online`` expired."""
        now = time.monotonic()
        if not self.v5 or now < self._next_refresh or not self._connected.is_set():
            return
        self._next_refresh = now + self.s.availability_refresh_s
        if self.role == "head":
            with self._cond:
                for w in [w for w, until in self.workers.items() if until <= now]:
                    del self.workers[w]
            self._announce(refresh=True)
        else:
            self.client.publish(self.availability, "online", qos=1, retain=True,
                                properties=self._expiring(self.expiry_s))

    def _settle(self) -> None:
        with self._cond:
            self._settled = True
        self._announce()

    def _announce(self, refresh: bool = False) -> None:
        """Head: ``online`` on ``p/available`` while any worker is, else ``offline``; published on a change (and
        ``online`` again at each ``refresh``: it expires like a worker's)."""
        now = time.monotonic()
        with self._cond:
            if not self._settled or not self._connected.is_set() or self._closing:
                return
            want = b"online" if any(until > now for until in self.workers.values()) else b"offline"
            if want == self._said and not (refresh and want == b"online"):
                return
            self._said = want
        props = self._expiring(self.expiry_s) if want == b"online" else None
        self.client.publish(self.service_availability, want, qos=1, retain=True, properties=props)

    def _expires_at(self, msg: mqtt.MQTTMessage) -> float:
        """When a received message expires (MQTT 5: the broker sends its remaining lifetime), else never."""
        left = getattr(getattr(msg, "properties", None), "MessageExpiryInterval", None)
        return time.monotonic() + left if isinstance(left, int) else float("inf")

    def _on_worker(self, level: str, payload: bytes, until: float) -> None:
        with self._cond:
            if payload == b"online":
                self.workers[level] = until
            else:  # offline (its will), or a cleared retained topic: that worker is gone
                self.workers.pop(level, None)
        self._announce()

    def _on_worker_stats(self, level: str, payload: bytes, until: float) -> None:
        stats = None
        if payload and len(payload) <= MAX_PAYLOAD_BYTES:
            try:
                stats = json.loads(payload)
            except ValueError:
                stats = None
        with self._cond:
            if isinstance(stats, dict):
                self.worker_stats[level] = (stats, until)
            else:  # cleared (a clean stop) or not ours to read
                self.worker_stats.pop(level, None)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        """``p/<camera>/paused/set``: ``ON`` or ``OFF``; anything else (or a retained command) is counted and
        ignored. The head also hears ``p/workers/<worker>/available`` and ``.../stats``."""
        levels = msg.topic[len(self.prefix) + 1:].split("/")
        if self.role == "head" and len(levels) == 3 and levels[0] == "workers" and levels[2] == "available":
            self._on_worker(levels[1], bytes(msg.payload[:16]), self._expires_at(msg))
            return
        if self.role == "head" and len(levels) == 3 and levels[0] == "workers" and levels[2] == "stats":
            self._on_worker_stats(levels[1], bytes(msg.payload), self._expires_at(msg))
            return
        camera = levels[0]
        word = msg.payload[:8].strip().upper()
        if msg.retain or word not in (b"ON", b"OFF") or len(msg.payload) > 8 or self.on_control is None:
            self.refused_commands += 1
            return
        self.commands += 1
        self.on_control(camera, word == b"ON")

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if self._connected.is_set() and not self._closing:
            log.warning("mqtt broker %s:%d lost (%s): queueing up to %d messages", self.s.host, self.s.port, reason,
                        self.s.queue_size)
        self._connected.clear()

    def _send(self) -> None:
        """Hand queued messages to paho in order, at most ``_WINDOW`` unacknowledged; refresh ``online``."""
        while True:
            self._prune()
            self._refresh()
            with self._cond:
                if not self._queue:
                    if self._closing and (not self._pending or not self._connected.is_set()):
                        return
                    self._cond.wait(0.05 if self._pending else 0.5)
                    continue
                closing = self._closing
            if not self._connected.wait(0.2):
                if closing:
                    return  # closing while the broker is away: what is queued is lost (counted in counters)
                continue
            if len(self._pending) >= _WINDOW:
                try:
                    self._pending[0].wait_for_publish(0.2)
                except (RuntimeError, ValueError):
                    time.sleep(0.05)
                continue
            with self._cond:
                topic, body, retain, expiry_s = self._queue.popleft()
            info = self.client.publish(topic, body, qos=1, retain=retain, properties=self._expiring(expiry_s))
            if info.rc == mqtt.MQTT_ERR_QUEUE_SIZE:  # not ours to bound: paho's queue is unbounded here
                with self._cond:
                    self._queue.appendleft((topic, body, retain, expiry_s))
                time.sleep(0.05)
                continue
            self._pending.append(info)  # NO_CONN included: paho keeps QoS 1 messages and sends them on reconnect

    def _prune(self) -> None:
        while self._pending and self._pending[0].is_published():
            self._pending.popleft()
            self.published += 1


def _number(value: Any) -> int | float:
    """A count from a worker's stats (anything else counts 0: a worker's bug must not break the head's sum)."""
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else 0


def _items(value: Any) -> list[tuple[str, Any]]:
    return list(value.items()) if isinstance(value, dict) else []
