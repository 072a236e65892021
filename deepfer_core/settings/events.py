"""Settings of the events DeepFER sends out: the event model, MQTT, webhooks and alert rules (all off by default)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from deepfer_core.settings.base import Section

_SEGMENTS = r"^[A-Za-z0-9_-]{1,64}(/[A-Za-z0-9_-]{1,64}){0,7}$"  # MQTT topic levels without wildcards or CR/LF


class EventSettings(Section):
    """How enter/leave events and per-camera state are derived from the tracked faces."""

    state_every_s: float = Field(1.0, ge=1.0, description="Per-camera state (status, people now, emotion mix, "
                                                          "satisfaction) is sent this often (at most once a second).")
    window_s: float = Field(60.0, gt=0, description="Emotion mix and satisfaction in the state cover this window.")
    leave_after_s: float = Field(2.0, gt=0, description="A person unseen this long has left (a leave event); keep it "
                                                        "above tracker.max_age_s.")
    stats_every_s: float = Field(10.0, gt=0, description="Service stats (events sent, dropped, queue depths) are "
                                                         "sent this often.")


class MqttSettings(Section):
    enabled: bool = Field(False, description="Publish availability, camera state, enter/leave events, alerts and "
                                             "stats to an MQTT broker.")
    host: str = Field("127.0.0.1", description="Broker host (checked against the sources' network policy).")
    port: int = Field(1883, ge=1, le=65535)
    prefix: str = Field("deepfer", pattern=_SEGMENTS, description="First topic levels: <prefix>/available, "
                                                                   "<prefix>/<camera>/state, <prefix>/events, ...")
    client_id: str = Field("", pattern=r"^[A-Za-z0-9_.-]{0,64}$", description="MQTT client id; empty: "
                                                                              "deepfer-<host name>-<pid>.")
    username: str = Field("", description="Broker user name (empty: anonymous).")
    password: str = Field("", repr=False, description="Broker password (never logged; prefer DEEPFER_MQTT__PASSWORD).")
    tls: bool = Field(False, description="Connect over TLS (certificate and host name verified).")
    tls_ca_file: str = Field("", description="CA bundle for tls (empty: the system's).")
    keepalive_s: int = Field(30, ge=5, le=3600, description="MQTT keep-alive; the broker publishes the last will "
                                                            "(offline) after 1.5 times this without a word.")
    queue_size: int = Field(10_000, ge=10, description="Messages waiting for the broker at most (outage); more are "
                                                       "dropped and counted.")
    control: bool = Field(False, description="Obey <prefix>/<camera>/paused/set (ON: pause, OFF: resume) from "
                                             "anyone who may publish on the broker; off by default.")
    homeassistant: bool = Field(False, description="Publish Home Assistant MQTT discovery: each camera a device "
                                                   "with sensors.")
    discovery_prefix: str = Field("homeassistant", pattern=_SEGMENTS, description="Home Assistant's discovery "
                                                                                  "prefix.")
    availability_refresh_s: int = Field(30, ge=1, le=3600, description="The retained online is sent again this "
                                                                       "often (MQTT 5: it expires, see below).")
    availability_expiry_s: int = Field(0, ge=0, le=86400, description="MQTT 5 message expiry of the retained online "
                                                                      "(0: 3 times availability_refresh_s): a DeepFER "
                                                                      "that died unseen, e.g. while the broker was "
                                                                      "down, stops showing online after this long.")

    @property
    def availability_expiry(self) -> int:
        """The expiry in seconds (``availability_expiry_s``, or 3 times the refresh)."""
        return self.availability_expiry_s or 3 * self.availability_refresh_s

    @model_validator(mode="after")
    def _expiry_after_refresh(self) -> MqttSettings:
        if self.availability_expiry <= self.availability_refresh_s:
            raise ValueError(f"mqtt.availability_expiry_s ({self.availability_expiry}) must be more than "
                             f"mqtt.availability_refresh_s ({self.availability_refresh_s}), or online would blink "
                             f"out between refreshes")
        return self


HookEvent = Literal["enter", "leave", "alert", "state"]
_HOOK_DEFAULT: tuple[HookEvent, ...] = ("enter", "leave", "alert")


class WebhookSettings(Section):
    """One receiver: ``[[webhooks.hooks]]`` with ``url`` and ``secret``."""

    url: str = Field(description="http:// or https:// URL the JSON is POSTed to (checked against the sources' "
                                 "network policy at start-up and before each delivery).")
    secret: str = Field("", repr=False, description="HMAC-SHA256 key of the X-DeepFER-Signature header (never "
                                                    "logged).")
    events: list[HookEvent] = Field(default_factory=lambda: list(_HOOK_DEFAULT),
                                    description="Which payload types this hook gets.")


class WebhooksSettings(Section):
    hooks: list[WebhookSettings] = Field(default_factory=list, description="Receivers ([[webhooks.hooks]]).")
    timeout_s: float = Field(5.0, gt=0, description="Connect and answer timeout of one delivery.")
    backoff_s: float = Field(0.5, gt=0, description="First wait before a retry; doubled each failure.")
    backoff_max_s: float = Field(30.0, gt=0, description="Longest wait between retries.")
    max_attempts: int = Field(0, ge=0, description="Attempts per payload (0: until delivered; the queue bound "
                                                   "limits what waits). A 4xx other than 408/429 is not retried.")
    queue_size: int = Field(1000, ge=1, description="Payloads waiting per hook at most; more are dropped and counted.")


AlertKind = Literal["satisfaction_below", "negative_share_above", "people_above", "camera_down"]


class AlertRule(Section):
    """One rule (``[[alerts.rules]]``): fires once when its value crosses ``threshold``, clears when it is back past
    ``threshold`` by ``hysteresis``; after a clear it fires again no sooner than ``cooldown_s`` after the last fire."""

    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    kind: AlertKind
    threshold: float = Field(description="satisfaction (-1..1), negative share (0..1), people, or seconds down.")
    camera: str = Field("*", pattern=r"^(\*|[A-Za-z0-9_.-]{1,128})$", description="A camera id, or * for each.")
    window_s: float = Field(600.0, gt=0, description="Satisfaction and negative share are taken over this window.")
    min_points: int = Field(10, ge=1, description="Satisfaction and negative share need this many face samples in "
                                                  "the window (fewer: no value, no change).")
    hysteresis: float = Field(0.0, ge=0, description="How far back past threshold the value must go to clear.")
    cooldown_s: float = Field(300.0, ge=0, description="Least time between two fires of the rule on one camera.")


class AlertSettings(Section):
    rules: list[AlertRule] = Field(default_factory=list, description="Alert rules ([[alerts.rules]]).")
    keep: int = Field(1000, ge=1, description="Alerts kept in Redis ({key_prefix}:alerts) at most, newest first.")
    api_rules: bool = Field(True, description="Rules can also be added and removed through /api/alerts/rules (kept "
                                              "in Redis; every pipeline with Redis reads them every 5 s).")
    max_api_rules: int = Field(100, ge=0, description="Most rules the API keeps.")

    @model_validator(mode="after")
    def _unique_names(self) -> AlertSettings:
        names = [r.name for r in self.rules]
        if len(set(names)) != len(names):
            raise ValueError("alerts.rules names must be unique")
        return self
