"""Events out: the pure event model and alert rules (enter/leave, rolling state, episodes with hysteresis and
cooldown). MQTT against a real Mosquitto and webhooks against a real HTTP receiver are in test_events_out.py."""

from __future__ import annotations

import pytest

from aggregator.alerts import AlertEngine
from aggregator.events import PAYLOAD_VERSION, CameraEvents, WindowStats
from deepfer_core.settings import AlertRule, AlertSettings, ConfigError, load_settings
from deepfer_core.types import FaceResult
from tests.events_helpers import frame


def test_enter_and_leave_with_dwell_dominant_and_mean():
    ev = CameraEvents("cam", leave_after_s=2.0, keep_s=60)
    out = ev.observe(frame(100.0, {1: "happy"}))
    assert [(e.type, e.person, e.emotion) for e in out] == [("enter", 1, "happy")]
    for i in range(1, 10):
        out = ev.observe(frame(100.0 + i * 0.5, {1: "happy" if i < 7 else "sad", 2: "neutral"}))
        assert [e.type for e in out] == (["enter"] if i == 1 else [])
    assert ev.expire(105.0) == []
    leaves = ev.expire(107.0)
    assert sorted(e.person for e in leaves) == [1, 2]
    one = next(e for e in leaves if e.person == 1)
    assert one.type == "leave" and one.emotion == "happy" and one.dwell_s == 4.5 and one.frames == 10
    assert one.mean is not None and one.mean["happy"] > one.mean["sad"] > 0
    d = one.to_dict()
    assert d["v"] == PAYLOAD_VERSION and "image" not in d and set(d) >= {"camera", "person", "dwell_s", "mean"}
    assert ev.close() == [] and ev.observe(frame(108.0, {1: "happy"}))[0].type == "enter"  # a new episode
    assert [e.type for e in ev.close()] == ["leave"]


def test_untracked_faces_make_no_events():
    ev = CameraEvents("cam", 2.0, 60)
    r = frame(1.0, {1: "happy"})
    r.faces[0] = FaceResult(r.faces[0].box, r.faces[0].probabilities)
    assert ev.observe(r) == [] and ev.window(1.0, 10).points == 0


def test_window_mix_and_satisfaction():
    ev = CameraEvents("cam", 2.0, 600)
    for i in range(20):
        ev.observe(frame(1000.0 + i, {1: "happy" if i < 10 else "angry"}))
    w = ev.window(1019.5, 5)
    assert w.points == 5 and w.mix["angry"] == 1.0 and w.satisfaction == -1.0 and w.negative_share == 1.0
    w = ev.window(1019.5, 60)
    assert w.points == 20 and w.satisfaction == 0.0 and w.mix["happy"] == 0.5
    st = ev.state(1019.5, 60, "connected", 12.345)
    assert st.people_now == 1 and st.up and st.fps == 12.35 and st.to_dict()["v"] == 1 and st.type == "state"
    assert ev.state(1019.5, 60, "reconnecting").up is False


def rule(**kw) -> AlertRule:
    return AlertRule(**{"name": "r", "kind": "satisfaction_below", "threshold": 0.0, "window_s": 60,
                        "min_points": 3, "hysteresis": 0.2, "cooldown_s": 100, **kw})


def stats(sat: float, points: int = 10) -> dict[float, WindowStats]:
    return {60: WindowStats(points, {}, sat, max(0.0, -sat))}


def test_alert_fires_once_per_episode_clears_with_hysteresis_and_cooldown():
    eng = AlertEngine([rule()])
    assert eng.evaluate("cam", 0, stats(0.5), 0, 0) == []
    fired = eng.evaluate("cam", 1, stats(-0.5), 0, 0)
    assert [(a.state, a.rule, a.camera) for a in fired] == [("firing", "r", "cam")]
    assert eng.evaluate("cam", 2, stats(-0.6), 0, 0) == []  # same episode
    assert eng.evaluate("cam", 3, stats(0.1), 0, 0) == []  # above threshold, within hysteresis
    assert eng.evaluate("cam", 4, stats(-0.1, points=2), 0, 0) == []  # too few points: no change
    cleared = eng.evaluate("cam", 5, stats(0.3), 0, 0)
    assert [(a.state, a.since) for a in cleared] == [("cleared", 1)]
    assert eng.evaluate("cam", 6, stats(-0.5), 0, 0) == []  # cooldown: 100 s after the last fire
    assert [a.state for a in eng.evaluate("cam", 102, stats(-0.5), 0, 0)] == ["firing"]
    assert eng.firing() == [("r", "cam")]
    assert [a.state for a in eng.forget("cam", 103)] == ["cleared"] and eng.firing() == []
    eng.evaluate("cam", 300, stats(-0.5), 0, 0)
    assert eng.set_rules([rule()], 301) == [] and eng.firing() == [("r", "cam")]  # the rule stays: so does its episode
    assert [(a.rule, a.state) for a in eng.set_rules([], 302)] == [("r", "cleared")] and eng.firing() == []


def test_people_negative_and_down_rules_per_camera():
    eng = AlertEngine([rule(name="crowd", kind="people_above", threshold=3, hysteresis=1, cooldown_s=0),
                       rule(name="neg", kind="negative_share_above", threshold=0.5, camera="tills", hysteresis=0),
                       rule(name="down", kind="camera_down", threshold=30, cooldown_s=0)])
    assert [a.rule for a in eng.evaluate("door", 0, stats(-0.9), 4, 31)] == ["crowd", "down"]  # neg: tills only
    assert [a.rule for a in eng.evaluate("tills", 0, stats(-0.9), 2, 0)] == ["neg"]
    assert [(a.rule, a.state) for a in eng.evaluate("door", 1, stats(-0.9), 3, 0)] == [("down", "cleared")]
    assert [(a.rule, a.state) for a in eng.evaluate("door", 2, stats(-0.9), 2, 0)] == [("crowd", "cleared")]


def test_alert_rules_from_toml(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('[[alerts.rules]]\nname = "tills-unhappy"\nkind = "satisfaction_below"\nthreshold = -0.2\n'
                   'camera = "tills"\nwindow_s = 600\n[[webhooks.hooks]]\nurl = "http://127.0.0.1:9/h"\n'
                   'secret = "s3cret-value"\n')
    s = load_settings(cfg)
    assert s.alerts.rules[0].camera == "tills" and s.webhooks.hooks[0].events == ["enter", "leave", "alert"]
    assert "s3cret-value" not in repr(s.webhooks)
    cfg.write_text('[[alerts.rules]]\nname = "a"\nkind = "sometimes"\nthreshold = 1\n')
    with pytest.raises(ConfigError, match="alerts.rules"):
        load_settings(cfg)
    with pytest.raises(ValueError, match="unique"):
        AlertSettings(rules=[rule(), rule()])
    for bad in ("a/#", "a\r\nb", "x+y", "/lead", ""):
        with pytest.raises(ConfigError, match="mqtt.prefix"):
            load_settings(None, {"mqtt": {"prefix": bad}})


def test_mqtt_availability_expiry_is_three_refreshes_by_default_and_must_outlast_one():
    assert load_settings(None, {}).mqtt.availability_expiry == 90
    assert load_settings(None, {"mqtt": {"availability_refresh_s": 5}}).mqtt.availability_expiry == 15
    assert load_settings(None, {"mqtt": {"availability_expiry_s": 40}}).mqtt.availability_expiry == 40
    for bad in ({"availability_refresh_s": 30, "availability_expiry_s": 30}, {"availability_refresh_s": 0}):
        with pytest.raises(ConfigError, match="mqtt"):
            load_settings(None, {"mqtt": bad})


def test_event_secrets_are_masked_in_logs():
    from deepfer_core.settings import Settings, secret_values

    s = Settings(mqtt={"password": "mqtt-pass-123"},
                 webhooks={"hooks": [{"url": "http://127.0.0.1:9/", "secret": "hook-secret-456"}]})
    assert {"mqtt-pass-123", "hook-secret-456"} <= set(secret_values(s))
    assert "mqtt-pass-123" not in repr(s) and "hook-secret-456" not in repr(s)
