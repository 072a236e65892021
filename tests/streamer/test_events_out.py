"""Events out against real parts: a Mosquitto of the test's own on loopback (stopped and started again for the
outage), a paho subscriber, and an HTTP receiver on loopback that checks the webhook signatures."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from deepfer_core.settings import Settings
from streamer.assembly import build_events_sink
from streamer.publish.base import EventsConfigError, segment
from streamer.publish.mqtt import MqttPublisher
from streamer.publish.sink import EventsSink
from streamer.publish.webhooks import WebhookPublisher, parse_hook_url, sign
from tests.events_helpers import Mosquitto, Receiver, Subscriber, frame, wait_for

pytestmark = pytest.mark.timeout(120)
SECRET = "hook-secret-0123456789"


@pytest.fixture
def broker(tmp_path, free_port):
    b = Mosquitto(free_port, tmp_path).start()
    yield b
    b.stop()


def settings(port: int, **sections) -> Settings:
    base = {"mqtt": {"enabled": True, "port": port, "prefix": "shop/deepfer", "homeassistant": True},
            "events": {"leave_after_s": 2.0, "stats_every_s": 0.1},
            "alerts": {"rules": [{"name": "crowd", "kind": "people_above", "threshold": 1, "cooldown_s": 0}]}}
    return Settings(**{**base, **sections})


def test_topics_payloads_retained_state_discovery_and_alerts(broker):
    sub = Subscriber(broker.port, ["shop/deepfer/#", "homeassistant/#"])
    s = settings(broker.port)
    mqtt = MqttPublisher(s.mqtt)
    sink = EventsSink(s, [mqtt])
    sink.start()
    try:
        wait_for(lambda: sub.on("shop/deepfer/available") == [b"online"], what="online")
        t = time.time()
        asyncio.run(sink.handle(frame(t, {1: "happy"}, camera="tills/1+#")))
        asyncio.run(sink.handle(frame(t + 0.1, {1: "happy", 2: "sad"}, camera="tills/1+#")))
        sink.tick()  # two people now: the crowd alert fires
        time.sleep(2.1)
        sink.tick()  # both left: it clears
        wait_for(lambda: len(sub.on("shop/deepfer/events")) == 4, what="enter/leave")
        events = sub.json_on("shop/deepfer/events")
        assert [(e["type"], e["person"]) for e in events] == [("enter", 1), ("enter", 2), ("leave", 1), ("leave", 2)]
        assert all(e["v"] == 1 and e["camera"] == "tills/1+#" for e in events)
        assert events[2]["emotion"] == "happy" and events[2]["dwell_s"] == 0.1 and events[2]["mean"]["happy"] > 0.9
        state_topic = "shop/deepfer/tills_1__/state"  # the id is one topic level: no /, + or #
        wait_for(lambda: len(sub.on(state_topic)) >= 2, what="state")
        first = json.loads(sub.on(state_topic)[0])
        assert first["people_now"] == 2 and first["mix"]["happy"] == pytest.approx(2 / 3, abs=1e-3)
        assert json.loads(sub.on(state_topic)[-1])["people_now"] == 0
        wait_for(lambda: len(sub.on("shop/deepfer/alerts")) == 2, what="alerts")
        assert [a["state"] for a in sub.json_on("shop/deepfer/alerts")] == ["firing", "cleared"]
        assert sub.on("shop/deepfer/tills_1__/alert/crowd") == [b"ON", b"OFF"]
        wait_for(lambda: sub.on("shop/deepfer/stats"), what="stats")
        configs = [t for t, _, _ in sub.messages if t.startswith("homeassistant/")]
        assert "homeassistant/sensor/shop_deepfer_tills_1__/people_now/config" in configs
        assert "homeassistant/binary_sensor/shop_deepfer_tills_1__/up/config" in configs
        ha = json.loads(sub.on("homeassistant/sensor/shop_deepfer_tills_1__/satisfaction/config")[0])
        assert ha["state_topic"] == state_topic and ha["availability_topic"] == "shop/deepfer/available"
        assert ha["expire_after"] == 90  # unavailable in Home Assistant when the state stops: 3 refreshes of 30 s
    finally:
        asyncio.run(sink.close())
        sub.close()
    wait_for(lambda: sub.on("shop/deepfer/available")[-1:] == [b"offline"] or True)
    late = Subscriber(broker.port, ["shop/deepfer/#"], client_id="deepfer-late")  # retained: a new reader sees them
    try:
        wait_for(lambda: late.on("shop/deepfer/available") == [b"offline"], what="retained offline")
        wait_for(lambda: late.on(state_topic), what="retained state")
        wait_for(lambda: late.on("shop/deepfer/stats"), what="retained stats")  # retained ones come in any order
        assert json.loads(late.on("shop/deepfer/stats")[0])["sent"]["enter"] == 2
        assert all(retained for _, _, retained in late.messages)
    finally:
        late.close()
    assert mqtt.counters()["dropped"] == 0 and mqtt.counters()["published"] >= 10


def test_last_will_then_online_again(broker):
    sub = Subscriber(broker.port, ["deepfer/available"])
    mqtt = MqttPublisher(Settings(mqtt={"enabled": True, "port": broker.port, "keepalive_s": 5}).mqtt)
    mqtt.start()
    try:
        wait_for(lambda: sub.on("deepfer/available") == [b"online"], what="online")
        mqtt.client.socket().close()  # the connection dies without a DISCONNECT: the broker sends the will
        wait_for(lambda: sub.on("deepfer/available")[:3] == [b"online", b"offline", b"online"], 20, "will, online")
    finally:
        mqtt.close(2)
        sub.close()


def test_broker_restart_loses_nothing_within_the_bound(broker):
    sub = Subscriber(broker.port, ["deepfer/events"], client_id="deepfer-test-keep", clean=False)
    mqtt = MqttPublisher(Settings(mqtt={"enabled": True, "port": broker.port, "queue_size": 30}).mqtt)
    mqtt.start()
    try:
        wait_for(lambda: mqtt.counters()["connected"] == 1, what="publisher connected")
        mqtt.offer("enter", {"type": "enter", "camera": "c", "person": 0})
        wait_for(lambda: len(sub.on("deepfer/events")) == 1, what="first event")
        broker.stop()
        wait_for(lambda: mqtt.counters()["connected"] == 0, what="the publisher to notice")
        t0 = time.monotonic()
        for i in range(1, 41):
            mqtt.offer("enter", {"type": "enter", "camera": "c", "person": i})
        assert time.monotonic() - t0 < 0.1  # offering never waits for the broker
        assert mqtt.counters()["dropped"] >= 10  # 30 wait, the rest are counted
        broker.start()
        wait_for(lambda: len({json.loads(p)["person"] for p in sub.on("deepfer/events")}) >= 31, 30, "redelivery")
        people = list(dict.fromkeys(json.loads(p)["person"] for p in sub.on("deepfer/events")))  # at least once
        kept = 40 - mqtt.counters()["dropped"]
        assert people == list(range(0, kept + 1))  # in order, nothing lost within the bound
    finally:
        mqtt.close(2)
        sub.close()


def hooks(port: int, **kw) -> Settings:
    return Settings(webhooks={"hooks": [{"url": f"http://127.0.0.1:{port}/deepfer?token=abc", "secret": SECRET,
                                         "events": ["enter", "leave", "alert"]}],
                              "backoff_s": 0.05, "backoff_max_s": 0.2, **kw})


def test_webhooks_are_signed_retried_and_in_order_after_an_outage(free_port):
    receiver = Receiver(free_port, SECRET.encode())  # not listening yet: connection refused
    pub = WebhookPublisher(hooks(free_port, queue_size=5).webhooks)
    pub.start()
    try:
        t0 = time.monotonic()
        for i in range(8):
            pub.offer("enter", {"type": "enter", "camera": "c", "person": i, "v": 1})
        pub.offer("state", {"type": "state", "camera": "c"})  # this hook did not ask for state
        assert time.monotonic() - t0 < 0.1
        assert pub.counters()["dropped"] == 3
        time.sleep(0.5)
        receiver.status = 503
        receiver.start()  # up, but failing: retried
        wait_for(lambda: len(receiver.answered) >= 2, what="retries on 503")
        receiver.status = 200
        wait_for(lambda: len(receiver.got) == 5, what="delivery")
        assert [b["person"] for _, b, _ in receiver.got] == [0, 1, 2, 3, 4]
        assert all(ok and kind == "enter" for kind, _, ok in receiver.got)
        c = pub.counters()
        assert c["delivered"] == 5 and c["retries"] >= 2 and c["failed"] == 0 and c["queued"] == 0
        receiver.status = 400  # refused for good: not retried, counted
        pub.offer("leave", {"type": "leave", "person": 9})
        wait_for(lambda: pub.counters()["failed"] == 1, what="a 400 counted")
        assert receiver.answered[-1] == 400 and receiver.answered.count(400) == 1
    finally:
        pub.close(1)
        receiver.stop()


def test_signature_is_hmac_of_timestamp_and_body():
    sig = sign("k", "1700000000", b'{"a":1}')
    import hashlib
    import hmac

    assert sig == "sha256=" + hmac.new(b"k", b'1700000000.{"a":1}', hashlib.sha256).hexdigest()


@pytest.mark.parametrize("url, message", [
    ("http://169.254.169.254/latest/meta-data", "refused by the network policy: in sources.denied_networks"),
    ("http://[fd00:ec2::254]/", "refused by the network policy"),
    ("http://127.0.0.1:6379/", "refused by the network policy: the Redis DeepFER uses"),
    ("http://evil.example\r\nX-Injected: 1/", "whitespace, control or non-ASCII"),
    ("http://user:pw@127.0.0.1:8080/", "credentials in the URL are refused"),
    ("file:///etc/passwd", "only http:// and https://"),
    ("http://no-such-host.invalid/", "does not resolve"),
])
def test_hostile_hook_urls_are_one_line_start_up_errors(url, message):
    s = Settings(webhooks={"hooks": [{"url": url, "secret": SECRET}]})
    with pytest.raises(EventsConfigError, match=message) as err:
        build_events_sink(s, "redis://127.0.0.1:6379")
    text = str(err.value)
    assert "\n" not in text and SECRET not in text and "pw" not in text and "meta-data" not in text


def test_broker_at_a_refused_address_is_a_start_up_error():
    s = Settings(mqtt={"enabled": True, "host": "169.254.169.254", "password": SECRET})
    with pytest.raises(EventsConfigError, match="mqtt broker 169.254.169.254 refused by the network policy"):
        build_events_sink(s, None)


def test_hostile_ids_and_huge_payloads(broker):
    assert segment("a/b+#\r\n\x00c") == "a_b_____c" and segment("") == "_" and len(segment("x" * 1000)) == 128
    assert parse_hook_url("https://h.example/p?q=1", "w").display == "https://h.example:443"
    mqtt = MqttPublisher(Settings(mqtt={"enabled": True, "port": broker.port}).mqtt)
    mqtt.offer("state", {"camera": "x" * 100_000})
    assert mqtt.counters()["too_large"] == 1 and mqtt.counters()["queued"] == 0


def test_no_events_sink_unless_configured():
    assert build_events_sink(Settings(), None) is None


def test_a_file_camera_run_publishes_the_documented_topics(broker, media: Path, tmp_path: Path, free_port: int):
    """``deepfer run`` on a real clip with [mqtt] and a webhook on: one person's enter and leave, retained state,
    signed webhooks; nothing else changes in the run."""
    hook_port = free_port + 1 if free_port < 65000 else free_port - 1
    receiver = Receiver(hook_port, SECRET.encode()).start()
    sub = Subscriber(broker.port, ["deepfer/#"])
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEEPFER_")} | {
        "DEEPFER_MQTT__ENABLED": "true", "DEEPFER_MQTT__PORT": str(broker.port),
        "DEEPFER_WEBHOOKS__HOOKS": json.dumps([{"url": f"http://127.0.0.1:{hook_port}/h", "secret": SECRET}]),
    }
    try:
        proc = subprocess.run([sys.executable, "-m", "deepfer", "run", "--source", str(media / "fer_test.mp4"),
                               "--detect-every", "3", "--device", "cpu", "--no-redis"], cwd=tmp_path, env=env,
                              text=True, capture_output=True, timeout=100)
        assert proc.returncode == 0, proc.stderr
        assert SECRET not in proc.stderr + proc.stdout
        wait_for(lambda: len(sub.on("deepfer/events")) >= 2, what="enter and leave")
        events = sub.json_on("deepfer/events")
        people = {e["person"] for e in events}
        assert [e["type"] for e in events] == ["enter"] * len(people) + ["leave"] * len(people)
        leave = next(e for e in events if e["type"] == "leave")
        assert leave["camera"] == "fer_test" and leave["dwell_s"] > 1 and leave["frames"] > 20
        assert set(leave["mean"]) == {"angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"}
        states = sub.json_on("deepfer/fer_test/state")
        assert states and states[-1]["status"] == "ended" and states[-1]["points"] > 0
        assert sub.on("deepfer/available")[-1] == b"offline"
        wait_for(lambda: len(receiver.got) == len(events), what="webhooks")
        assert [b for _, b, _ in receiver.got] == events and all(ok for _, _, ok in receiver.got)
    finally:
        sub.close()
        receiver.stop()


def test_control_topic_pauses_and_resumes_only_known_cameras(broker):
    s = Settings(mqtt={"enabled": True, "port": broker.port, "control": True, "homeassistant": True})
    mqtt = MqttPublisher(s.mqtt)
    sink = EventsSink(s, [mqtt])
    calls: list[tuple[str, bool]] = []
    sink.known = lambda: ["door/1", "tills"]
    sink.control = lambda camera, paused: calls.append((camera, paused))
    sub = Subscriber(broker.port, ["homeassistant/#"], client_id="deepfer-ctl")

    sub.c.publish("deepfer/tills/paused/set", "ON", qos=1, retain=True).wait_for_publish(5)  # stale: ignored

    async def scenario():
        sink.start()
        await asyncio.to_thread(wait_for, lambda: mqtt.counters()["connected"] == 1)
        await asyncio.sleep(0.3)  # subscribed
        pub = sub.c
        pub.publish("deepfer/door_1/paused/set", "ON", qos=1)
        pub.publish("deepfer/tills/paused/set", "off", qos=1)
        pub.publish("deepfer/tills/paused/set", "pause-everything-now", qos=1)  # not ON/OFF: ignored
        pub.publish("deepfer/nobody/paused/set", "ON", qos=1)  # unknown camera: ignored
        await asyncio.to_thread(wait_for, lambda: mqtt.counters()["commands"] + mqtt.counters()["refused_commands"]
                                >= 5)
        await asyncio.sleep(0.1)
        await sink.handle(frame(time.time(), {1: "happy"}, camera="tills"))
        sink.tick()
        await asyncio.to_thread(wait_for, lambda: sub.on("homeassistant/switch/deepfer_tills/paused/config"))
        await sink.close()

    try:
        asyncio.run(scenario())
        assert calls == [("door/1", True), ("tills", False)]
        assert mqtt.counters()["refused_commands"] == 2
        switch = json.loads(sub.on("homeassistant/switch/deepfer_tills/paused/config")[0])
        assert switch["command_topic"] == "deepfer/tills/paused/set"
    finally:
        sub.c.publish("deepfer/tills/paused/set", b"", qos=1, retain=True)  # clear the retained command
        sub.close()


def test_bench_events_measures_the_share_of_the_pipeline(broker, media: Path):
    """``deepfer bench events``: the events' CPU is a small share of the process's (docs/events.md: under 2% on 8
    cameras), measured with MQTT and a webhook receiver on loopback, against the same pipeline without events."""
    from deepfer_bench.events_cost import bench_events

    s = Settings(mqtt={"enabled": True, "port": broker.port}, classifier={"device": "cpu"},
                 detector={"device": "cpu", "detect_every": 3})
    r = bench_events(s, str(media / "woman2.mp4"), 2, 3.0, say=lambda _: None, repeats=1)
    assert r["frames_processed"] > 0 and r["payloads"]["state"] >= 2 and r["publishers"]["mqtt"]["published"] > 0
    assert r["publishers"]["webhooks"]["delivered"] > 0 and r["publishers"]["webhooks"]["failed"] == 0
    assert r["process_cpu_s"] > 0 and 0 <= r["events_share_pct"] < 2
    off = r["runs"][0]["without_events"]
    assert off["events"] is False and off["payloads"] == {} and off["frames_processed"] > 0
    m = r["median"]
    assert m["cpu_ms_per_frame_with_events"] > 0 and m["cpu_ms_per_frame_without_events"] > 0
    assert m["difference_pct"] is not None and len(r["load_average"]["before"]) == 3 and r["machine"]["cores"]


@pytest.mark.e2e  # serve finds Redis (or starts redis-server) before it checks the hooks
def test_deepfer_serve_refuses_a_metadata_webhook_in_one_line(tmp_path: Path, free_port: int):
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEEPFER_")} | {
        "DEEPFER_WEBHOOKS__HOOKS": json.dumps([{"url": "http://169.254.169.254/latest/meta-data/", "secret": SECRET}]),
        "DEEPFER_PATHS__DATA_DIR": str(tmp_path / "data")}
    proc = subprocess.run([sys.executable, "-m", "deepfer", "serve", "--port", str(free_port)], cwd=tmp_path,
                          env=env, text=True, capture_output=True, timeout=120)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out
    assert "webhooks.hooks[0] (http://169.254.169.254:80) refused by the network policy" in out
    assert "Traceback" not in out and SECRET not in out and "meta-data" not in out


def test_uncertain_faces_are_people_but_no_emotion_in_mix_satisfaction_or_alerts(broker, free_port):
    """Issue 32: one happy face and three uncertain ones (their probabilities peaked on sad). Counted, the uncertain
    ones would make satisfaction -0.5 and the negative share 0.75 and fire both emotion rules; they must only count
    as people (the crowd rule fires), on MQTT and on the webhook alike."""
    hook_port = free_port + 1 if free_port < 65000 else free_port - 1
    receiver = Receiver(hook_port, SECRET.encode()).start()
    sub = Subscriber(broker.port, ["deepfer/#"], client_id="deepfer-uncertain")
    rules = [{"name": "unhappy", "kind": "satisfaction_below", "threshold": 0.0, "window_s": 60, "min_points": 5,
              "cooldown_s": 0},
             {"name": "negative", "kind": "negative_share_above", "threshold": 0.5, "window_s": 60, "min_points": 5,
              "cooldown_s": 0},
             {"name": "crowd", "kind": "people_above", "threshold": 3, "cooldown_s": 0}]
    s = Settings(mqtt={"enabled": True, "port": broker.port}, events={"leave_after_s": 2.0, "stats_every_s": 60},
                 alerts={"rules": rules},
                 webhooks={"hooks": [{"url": f"http://127.0.0.1:{hook_port}/h", "secret": SECRET,
                                      "events": ["leave", "alert", "state"]}]})
    mqtt, hooks_ = MqttPublisher(s.mqtt), WebhookPublisher(s.webhooks)
    sink = EventsSink(s, [mqtt, hooks_])
    sink.start()
    try:
        t = time.time()
        for i in range(10):
            asyncio.run(sink.handle(frame(t + i / 10, {1: "happy", 2: "uncertain", 3: "uncertain", 4: "uncertain"},
                                          camera="tills")))
        fired = sink.tick()
        assert [(a.rule, a.state) for a in fired] == [("crowd", "firing")]
        w = sink.cameras["tills"].window(sink.now("tills"), 60)
        assert w.points == 10 and w.uncertain == 30 and w.satisfaction == 1.0 and w.negative_share == 0.0
        time.sleep(2.1)
        sink.tick()  # all four left
        wait_for(lambda: len(sub.json_on("deepfer/events")) == 8, what="enter/leave")
        leaves = {e["person"]: e for e in sub.json_on("deepfer/events") if e["type"] == "leave"}
        assert leaves[1]["emotion"] == "happy" and leaves[1]["confident_frames"] == 10
        assert leaves[1]["mean"]["happy"] > 0.9
        assert leaves[2]["emotion"] == "uncertain" and "mean" not in leaves[2] and leaves[2]["frames"] == 10
        assert leaves[2]["confident_frames"] == 0
        state = sub.json_on("deepfer/tills/state")[0]
        assert state["people_now"] == 4 and state["points"] == 10 and state["uncertain"] == 30
        assert state["mix"]["happy"] == 1.0 and state["mix"]["sad"] == 0.0 and state["satisfaction"] == 1.0
        assert state["dominant"] == "happy"
        wait_for(lambda: any(k == "state" for k, _, _ in receiver.got), what="webhook state")
        hooked = next(b for k, b, _ in receiver.got if k == "state")
        assert hooked["mix"] == state["mix"] and hooked["satisfaction"] == 1.0 and hooked["uncertain"] == 30
        wait_for(lambda: len(sub.json_on("deepfer/alerts")) >= 1, what="alerts")
        assert {a["rule"] for a in sub.json_on("deepfer/alerts")} == {"crowd"}
        assert not sub.on("deepfer/tills/alert/unhappy") and not sub.on("deepfer/tills/alert/negative")
    finally:
        asyncio.run(sink.close())
        sub.close()
        receiver.stop()


def vanish(pub: MqttPublisher) -> None:
    """The process dies: no DISCONNECT, no reconnect; the broker sends the client's last will."""
    pub.client.loop_stop()
    sock = pub.client.socket()
    assert sock is not None
    sock.close()


def test_one_available_topic_for_all_cluster_workers(broker):
    """Cluster mode: each worker has p/workers/<name>/available with its last will; the head keeps p/available
    online while any worker is. One worker vanishing leaves it online; all gone: offline; the head gone: its will."""
    sub = Subscriber(broker.port, ["shop/available", "shop/workers/#"], client_id="deepfer-avail")

    def pub(name: str, role: str) -> MqttPublisher:
        s = Settings(mqtt={"enabled": True, "port": broker.port, "prefix": "shop", "client_id": name,
                           "keepalive_s": 5, "homeassistant": True})
        return MqttPublisher(s.mqtt, role=role, worker=name)  # type: ignore[arg-type]

    head, w1, w2, w3 = pub("head", "head"), pub("w1", "worker"), pub("w2", "worker"), pub("w3", "worker")
    started = [head]
    try:
        head.start()
        wait_for(lambda: sub.on("shop/available") == [b"offline"], what="no worker yet: offline")
        for w in (w1, w2):
            w.start()
            started.append(w)
        wait_for(lambda: sub.on("shop/available") == [b"offline", b"online"], what="online with workers")
        wait_for(lambda: head.counters()["workers_online"] == 2, what="the head hears both workers")
        assert w1.availability == "shop/workers/w1/available"
        vanish(w1)
        wait_for(lambda: sub.on("shop/workers/w1/available")[-1:] == [b"offline"], what="w1's last will")
        wait_for(lambda: head.counters()["workers_online"] == 1, what="the head hears w1 gone")
        time.sleep(0.5)
        assert sub.on("shop/available") == [b"offline", b"online"]  # stayed online: w2 is up
        vanish(w2)
        wait_for(lambda: sub.on("shop/available")[-1:] == [b"offline"], what="all workers gone: offline")
        assert sub.on("shop/available") == [b"offline", b"online", b"offline"]
        w3.start()
        started.append(w3)
        wait_for(lambda: sub.on("shop/available")[-1:] == [b"online"], what="a worker back: online")
        config = json.loads(w3.discovery("tills")[0][1])
        assert config["availability_mode"] == "all" and config["availability"] == [
            {"topic": "shop/available"}, {"topic": "shop/workers/w3/available"}]
        assert "availability_topic" not in config
        vanish(head)
        started.remove(head)
        wait_for(lambda: sub.on("shop/available")[-1:] == [b"offline"], what="the head's last will")
        assert sub.on("shop/workers/w3/available")[-1:] == [b"online"]  # workers never write p/available
    finally:
        for p in started:
            if p not in (w1, w2):
                p.close(2)
        for p in (w1, w2):
            p.client.disconnect()
        sub.c.publish("shop/workers/w1/available", b"", qos=1, retain=True)  # clear what this test retained
        for t in ("shop/workers/w2/available", "shop/workers/w3/available", "shop/available"):
            sub.c.publish(t, b"", qos=1, retain=True).wait_for_publish(5)
        sub.close()
