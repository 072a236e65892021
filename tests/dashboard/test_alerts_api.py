"""Alert rules in the running service: a camera that cannot connect fires ``camera_down`` once, on MQTT (a real
Mosquitto), to a signed webhook (a real receiver), into Redis, and at ``/api/alerts``; removing it clears the alert."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import pytest

from deepfer_core.settings import Settings
from tests.dashboard_helpers import AUTH, TOKEN, LiveServer
from tests.events_helpers import Mosquitto, Receiver, Subscriber, wait_for
from tests.redis_helpers import free_port, unique_prefix

pytestmark = pytest.mark.timeout(180)
SECRET = "alerts-hook-secret-42"


REPO = next(p for p in Path(__file__).resolve().parents if (p / "pyproject.toml").is_file())  # any test layout
GRAFANA = REPO / "deploy" / "grafana" / "deepfer.json"


def check_grafana_dashboard(metrics: str) -> None:
    """Every query of the shipped Grafana dashboard names a metric this /metrics exports."""
    exported = set()
    for line in metrics.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            exported |= {name, f"{name}_total"} if kind == "counter" else {name}
    dash = json.loads(GRAFANA.read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    assert len(exprs) >= 10
    for expr in exprs:
        names = set(re.findall(r"deepfer_[a-z0-9_]+", expr))
        assert names and names <= exported, (expr, names - exported)


def rules_through_the_api(api: httpx.Client, dead: int) -> None:
    rule = {"name": "door-down", "kind": "camera_down", "threshold": 1.0, "camera": "door", "cooldown_s": 0}
    assert api.put("/api/alerts/rules/door-down", json={**rule, "kind": "sometimes"}).status_code == 422
    assert api.put("/api/alerts/rules/other", json=rule).status_code == 400
    assert api.put("/api/alerts/rules/tills-down", json={**rule, "name": "tills-down"}).status_code == 409  # config
    assert api.put("/api/alerts/rules/a%0d%0ab", json=rule).status_code == 422
    assert api.put("/api/alerts/rules/door-down", json=rule).status_code == 200
    listed = api.get("/api/alerts/rules").json()
    assert [r["name"] for r in listed["config"]] == ["tills-down"]
    assert [r["name"] for r in listed["api"]] == ["door-down"]
    assert api.post("/api/cameras", json={"id": "door", "url": f"rtsp://127.0.0.1:{dead}/door"}).status_code == 201
    wait_for(lambda: any(a["rule"] == "door-down" for a in api.get("/api/alerts").json()["active"]), 30,
             "the API rule to fire")
    assert api.delete("/api/alerts/rules/door-down").status_code == 204
    wait_for(lambda: not any(a["rule"] == "door-down" for a in api.get("/api/alerts").json()["active"]), 30,
             "the removed rule's alert to clear")
    assert api.delete("/api/alerts/rules/door-down").status_code == 404
    assert api.delete("/api/alerts/rules/tills-down").status_code == 409


def test_camera_down_alert_end_to_end(redis_url, tmp_path):
    broker = Mosquitto(free_port(), tmp_path).start()
    receiver = Receiver(free_port(), SECRET.encode()).start()
    dead = free_port()  # nothing listens here: the camera never connects
    sub = Subscriber(broker.port, ["deepfer/#"])
    try:
        with unique_prefix(redis_url, "test-alerts") as prefix:
            port = free_port()
            settings = Settings(
                detector={"device": "cpu", "threads": 1}, classifier={"device": "cpu"},
                redis={"url": redis_url, "key_prefix": prefix}, paths={"data_dir": tmp_path / "data"},
                dashboard={"port": port, "token": TOKEN},
                sources={"connect_timeout_s": 0.5, "reconnect_max_s": 1.0},
                mqtt={"enabled": True, "port": broker.port},
                webhooks={"hooks": [{"url": f"http://127.0.0.1:{receiver.port}/alerts", "secret": SECRET,
                                     "events": ["alert"]}]},
                alerts={"rules": [{"name": "tills-down", "kind": "camera_down", "threshold": 1.5,
                                   "camera": "tills", "cooldown_s": 0}]})
            with LiveServer(settings) as live, httpx.Client(base_url=live.url, headers=AUTH, timeout=30) as api:
                res = api.post("/api/cameras", json={"id": "tills", "url": f"rtsp://127.0.0.1:{dead}/live"})
                assert res.status_code == 201, res.text
                wait_for(lambda: api.get("/api/alerts").json()["active"], 30, "the alert at /api/alerts")
                body = api.get("/api/alerts").json()
                (alert,) = body["active"]
                assert alert["rule"] == "tills-down" and alert["camera"] == "tills" and alert["value"] > 1.5
                assert alert["chart"].startswith("/api/cameras/tills/metrics?interval=minute&start=")
                assert alert["page"] == f"/?camera=tills&at={int(alert['at'])}"  # the page's charts at that moment
                assert body["rules"] == ["tills-down"]
                wait_for(lambda: receiver.got, 10, "the webhook")
                kind, payload, signed = receiver.got[0]
                assert kind == "alert" and payload["state"] == "firing" and signed
                wait_for(lambda: sub.on("deepfer/alerts"), 10, "the MQTT alert")
                assert json.loads(sub.on("deepfer/alerts")[0])["rule"] == "tills-down"
                states = sub.json_on("deepfer/tills/state")
                assert states and not states[-1]["up"] and states[-1]["status"] in ("connecting", "reconnecting")
                assert api.delete("/api/cameras/tills").status_code in (200, 204)
                wait_for(lambda: not api.get("/api/alerts").json()["active"], 10, "the alert to clear")
                assert [a["state"] for a in api.get("/api/alerts").json()["recent"]] == ["cleared", "firing"]
                wait_for(lambda: sub.on("deepfer/tills/state")[-1:] == [b""], 10, "the retained state cleared")
                assert json.loads(sub.on("deepfer/tills/state")[-2])["status"] == "removed"
                assert httpx.get(f"{live.url}/api/alerts").status_code == 401  # the token, like every route
                metrics = api.get("/metrics").text
                assert 'deepfer_events_total{type="alert"} 2.0' in metrics
                assert 'deepfer_events_published_total{publisher="webhooks"} 2.0' in metrics
                assert "deepfer_mqtt_connected 1.0" in metrics and "deepfer_alerts_firing 0.0" in metrics
                assert 'deepfer_events_queue_depth{publisher="mqtt"}' in metrics
                check_grafana_dashboard(metrics)
                rules_through_the_api(api, dead)
    finally:
        sub.close()
        receiver.stop()
        broker.stop()
