"""MQTT availability and stats through outages, against a real Mosquitto of the test's own (persistence on, so its
retained messages survive a restart): an ``online`` that nobody refreshes expires (MQTT 5), the head's
``p/available`` follows its workers' live ``online``, each worker has its own stats topic and the head sums them,
and a broker that only speaks MQTT 3.1.1 gets the last will alone."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from deepfer_core.settings import Settings
from streamer.publish.mqtt import MqttPublisher
from streamer.publish.sink import EventsSink
from tests.events_helpers import Broker311, Mosquitto, Subscriber, frame, retained, wait_for

pytestmark = pytest.mark.timeout(120)
REFRESH_S, EXPIRY_S = 1, 6  # short: the test waits for one expiry (with room for a loaded machine)
ROOT = Path(__file__).resolve().parents[2]
# a DeepFER's publisher in a process of its own, so the test can SIGKILL it (no DISCONNECT, no clean stop)
CHILD = """
import sys, time
from deepfer_core.settings import Settings
from streamer.publish.mqtt import MqttPublisher
port, role, name, refresh, expiry = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
s = Settings(mqtt={"enabled": True, "port": port, "prefix": "shop", "client_id": name, "keepalive_s": 5,
                   "availability_refresh_s": refresh, "availability_expiry_s": expiry})
pub = MqttPublisher(s.mqtt, role=role, worker=name)
pub.start()
while not pub.counters()["connected"]:
    time.sleep(0.05)
print("ready", pub.counters()["mqtt5"], flush=True)
time.sleep(600)
"""


@pytest.fixture
def broker(tmp_path, free_port):
    b = Mosquitto(free_port, tmp_path).start()
    yield b
    b.stop()


def settings(port: int, name: str, **mqtt) -> Settings:
    return Settings(mqtt={"enabled": True, "port": port, "prefix": "shop", "client_id": name, "keepalive_s": 5,
                          "availability_refresh_s": REFRESH_S, "availability_expiry_s": EXPIRY_S, **mqtt},
                    events={"stats_every_s": 0.1})


def spawn(port: int, role: str, name: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(port), role, name, str(REFRESH_S), str(EXPIRY_S)],
                            stdout=subprocess.PIPE, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.stdout is not None
    assert proc.stdout.readline().split() == ["ready", "1"]  # connected over MQTT 5
    return proc


def expiry_of(port: int, topic: str) -> int | None:
    """The remaining message expiry of ``topic``'s retained message, as an MQTT 5 reader is told."""
    sub = Subscriber(port, [topic], client_id=f"deepfer-v5-{time.monotonic_ns()}", v5=True)
    try:
        wait_for(lambda: sub.expiries, 5, f"retained {topic}")
        return sub.expiries[0][2]
    finally:
        sub.close()


@pytest.mark.parametrize("broker_goes", ["crash", "stop"])
def test_online_of_a_deepfer_that_dies_while_the_broker_is_down_expires(broker, broker_goes):
    """The broker goes away (SIGKILL: a crash, its wills lost; or SIGTERM), DeepFER is SIGKILLed before it is back,
    the broker restarts from its persistence file: the retained ``online`` goes by itself within the expiry."""
    proc = spawn(broker.port, "service", "dies")
    try:
        wait_for(lambda: retained(broker.port, "shop/available") == [b"online"], 10, "online retained")
        assert 0 < (expiry_of(broker.port, "shop/available") or 0) <= EXPIRY_S
        time.sleep(2 * REFRESH_S + 0.2)  # refreshed, and autosaved (every second) since
        if broker_goes == "crash":
            broker.crash()
        else:
            broker.stop()
        proc.kill()
        proc.wait(10)
        broker.start()
        restarted = time.monotonic()
        if broker_goes == "crash":  # the will died with the broker: without an expiry this online stayed forever
            assert retained(broker.port, "shop/available") == [b"online"]
        wait_for(lambda: retained(broker.port, "shop/available") in ([], [b"offline"]), 3 * EXPIRY_S,
                 "the stale online to go")
        assert time.monotonic() - restarted < EXPIRY_S + 3
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_head_available_follows_the_workers_live_online_through_a_broker_crash(broker):
    """The head says ``online`` while a worker's ``online`` lives; its own ``online`` expires too. A worker dies
    while the broker is down (crashed: its will lost): after the restart the head says ``offline`` once that
    worker's ``online`` expires."""
    head = MqttPublisher(settings(broker.port, "head").mqtt, role="head", worker="head")
    head.start()
    worker = spawn(broker.port, "worker", "w1")
    try:
        wait_for(lambda: head.counters()["workers_online"] == 1, 10, "the head hears w1")
        wait_for(lambda: retained(broker.port, "shop/available") == [b"online"], 10, "the head says online")
        assert 0 < (expiry_of(broker.port, "shop/available") or 0) <= EXPIRY_S  # the head's online expires too
        time.sleep(2 * REFRESH_S + 0.2)
        assert retained(broker.port, "shop/available") == [b"online"]  # refreshed: still there past one refresh
        broker.crash()
        worker.kill()
        worker.wait(10)
        broker.start()
        restarted = time.monotonic()
        wait_for(lambda: head.counters()["connected"] == 1, 20, "the head back on the broker")
        wait_for(lambda: retained(broker.port, "shop/available") == [b"offline"], 3 * EXPIRY_S,
                 "the head to see w1's online expire")
        assert time.monotonic() - restarted < EXPIRY_S + 2 * REFRESH_S + 3
        assert head.counters()["workers_online"] == 0
        assert retained(broker.port, "shop/workers/w1/available") == []  # expired on the broker too
    finally:
        head.close(2)
        if worker.poll() is None:
            worker.kill()
            worker.wait(10)


def test_each_worker_has_its_stats_topic_and_the_head_sums_them(broker):
    sub = Subscriber(broker.port, ["shop/stats", "shop/workers/+/stats"], client_id="deepfer-stats")

    def pub(name: str, role: str) -> MqttPublisher:
        s = settings(broker.port, name)
        return MqttPublisher(s.mqtt, role=role, worker=name, events=s.events)  # type: ignore[arg-type]

    head, w1, w2 = pub("head", "head"), pub("w1", "worker"), pub("w2", "worker")
    sinks = {p: EventsSink(settings(broker.port, p.client_id), [p]) for p in (head, w1, w2)}
    for sink in sinks.values():
        sink.start()  # no loop here: the ticks are the test's
    try:
        wait_for(lambda: head.counters()["workers_online"] == 2, 10, "the head hears both workers")
        t = time.time()
        asyncio.run(sinks[w1].handle(frame(t, {1: "happy", 2: "sad"}, camera="tills")))
        asyncio.run(sinks[w1].handle(frame(t, {1: "happy"}, camera="door")))
        asyncio.run(sinks[w2].handle(frame(t, {4: "neutral"}, camera="back")))
        sinks[w1].tick()
        sinks[w2].tick()
        wait_for(lambda: set(head.worker_stats) == {"w1", "w2"}, 10, "the head reads both workers' stats")
        mine = sub.json_on("shop/workers/w1/stats")[-1]
        assert mine["worker"] == "w1" and mine["cameras"] == 2 and mine["people_now"] == 3 and mine["v"] == 1
        assert 0 < (expiry_of(broker.port, "shop/workers/w1/stats") or 0) <= EXPIRY_S  # a dead worker's go too
        assert sub.on("shop/stats") == []  # no worker writes the service's topic
        time.sleep(0.15)
        sinks[head].tick()
        wait_for(lambda: sub.on("shop/stats"), 10, "the head's stats")
        total = sub.json_on("shop/stats")[-1]
        assert total["v"] == 1 and total["type"] == "stats" and total["scope"] == "cluster"
        assert total["cameras"] == 3 and total["people_now"] == 4 and total["sent"]["enter"] == 4
        at = {w: stats["at"] for w, (stats, _) in head.worker_stats.items()}
        assert total["workers"] == [{"worker": "w1", "at": at["w1"], "cameras": 2, "people_now": 3},
                                    {"worker": "w2", "at": at["w2"], "cameras": 1, "people_now": 1}]
        assert total["publishers"]["mqtt"]["connects"] == 3  # each counter summed: the workers' and the head's own
        assert total["publishers"]["mqtt"]["workers_online"] == 2

        asyncio.run(sinks[w1].close())  # a clean stop: its stats are cleared, the head stops counting them
        wait_for(lambda: sub.on("shop/workers/w1/stats")[-1:] == [b""], 10, "w1's stats cleared")
        wait_for(lambda: "w1" not in head.worker_stats and head.counters()["workers_online"] == 1, 10, "w1 gone")
        time.sleep(0.15)
        sinks[head].tick()
        wait_for(lambda: sub.json_on("shop/stats")[-1]["cameras"] == 1, 10, "the sum without w1")
        assert [w["worker"] for w in sub.json_on("shop/stats")[-1]["workers"]] == ["w2"]
        assert retained(broker.port, "shop/workers/w1/stats") == []
    finally:
        for p, sink in sinks.items():
            if p is not w1:
                asyncio.run(sink.close())
        sub.close()


def test_a_broker_that_only_speaks_mqtt_311_gets_the_last_will_alone(free_port, caplog):
    fake = Broker311(free_port)
    pub = MqttPublisher(Settings(mqtt={"enabled": True, "port": free_port, "username": "u",
                                       "password": "pw-not-for-logs"}).mqtt)
    try:
        with caplog.at_level(logging.INFO, logger="streamer.publish.mqtt"):
            pub.start()
            wait_for(lambda: pub.counters()["connected"] == 1, 20, "connected over 3.1.1")
        assert fake.versions[:2] == [5, 4]  # MQTT 5 refused, then 3.1.1
        assert pub.counters()["mqtt5"] == 0
        wait_for(lambda: ("deepfer/available", b"online", True) in fake.published, 10, "online")
        assert "speaks MQTT 3.1.1 only" in caplog.text and "pw-not-for-logs" not in caplog.text
        pub.offer("stats", {"type": "stats", "v": 1})
        wait_for(lambda: any(t == "deepfer/stats" for t, _, _ in fake.published), 10, "stats over 3.1.1")
    finally:
        pub.close(2)
        fake.stop()
