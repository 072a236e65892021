"""The events sink: tracked results in, enter/leave events, camera state, alerts and service stats out to every
publisher. ``handle`` does arithmetic only; a once-a-second tick (on the pipeline's loop) makes the state, the
leaves and the alerts; the publishers queue and send from their own threads.

Time: each camera runs on its frames' ``captured_at`` (a file played faster than real time has its own clock),
carried on at wall-clock pace between frames, so a person leaves ``events.leave_after_s`` after their last frame.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from typing import Any

from aggregator.alerts import Alert, AlertEngine
from aggregator.events import DOWN_STATUSES, PAYLOAD_VERSION, CameraEvents
from deepfer_core.settings import AlertRule, Settings
from deepfer_core.types import FrameResult
from streamer.publish.base import Publisher

log = logging.getLogger(__name__)

StatsOf = Callable[[], dict[str, Any]]  # Pipeline.stats: camera id -> CameraStats (status, recent_fps)
AlertLog = Callable[[dict[str, Any]], None]  # blocking: called in a worker thread
RulesFrom = Callable[[], list[AlertRule]]
Control = Callable[[str, bool], Any]  # (camera id, paused), on the loop; may return an awaitable


class EventsSink:
    def __init__(self, settings: Settings, publishers: Sequence[Publisher], stats_of: StatsOf | None = None,
                 alert_log: AlertLog | None = None, rules_from: RulesFrom | None = None):
        """``rules_from``: the rules added through the API (blocking, called in a worker thread every
        ``aggregator.alert_log.RULES_EVERY_S``); the config's rules win a name clash."""
        self.s = settings.events
        self.publishers = list(publishers)
        self.stats_of = stats_of
        self.alert_log = alert_log
        self.rules_from = rules_from
        self.config_rules = list(settings.alerts.rules)
        self.engine = AlertEngine(self.config_rules)
        self.keep_s = max(self.s.window_s, self.engine.longest_window_s)
        self.cameras: dict[str, CameraEvents] = {}
        self._clock: dict[str, tuple[float, float]] = {}  # camera -> (latest captured_at, monotonic then)
        self._down_since: dict[str, float] = {}
        self.sent: Counter[str] = Counter()
        self.recent_alerts: deque[dict[str, Any]] = deque(maxlen=settings.alerts.keep)
        self._task: asyncio.Task | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.control: Control | None = None  # set by whoever may pause cameras (mqtt.control)
        self.known: Callable[[], Any] | None = None  # camera ids a command may name (default: the ones seen)
        self._started = False
        self._last_stats = 0.0
        self._began = time.time()

    # --- ResultSink ---

    async def handle(self, result: FrameResult) -> None:
        if not self._started:
            self.start()
        cid = result.camera_id
        at = result.frame.captured_at
        last = self._clock.get(cid)
        if last is None or at >= last[0]:
            self._clock[cid] = (at, time.monotonic())
        for event in self._camera(cid).observe(result):
            self._emit(event.type, event.to_dict())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        for cid, cam in list(self.cameras.items()):
            for event in cam.close():
                self._emit(event.type, event.to_dict())
            self._emit("state", self._state(cid, self.now(cid), self.stats_of() if self.stats_of else None))
        self._emit("stats", self.stats_payload())
        await asyncio.gather(*(asyncio.to_thread(p.close, 5.0) for p in self.publishers))

    # --- the rest ---

    def start(self) -> None:
        """Publishers' threads, and the tick on the running loop (at the first result, or by whoever owns the loop)."""
        if self._started:
            return
        self._started = True
        try:
            self._loop = asyncio.get_running_loop()
            self._task = self._loop.create_task(self._ticks(), name="deepfer-events")
        except RuntimeError:  # no loop: ticks are the caller's (tests)
            self._task = None
        for p in self.publishers:
            if hasattr(p, "on_control"):
                p.on_control = self._command  # type: ignore[attr-defined]
            p.start()

    def _command(self, level: str, paused: bool) -> None:
        """A publisher's thread asks to pause or resume the camera whose topic level is ``level``."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._apply, level, paused)

    def _apply(self, level: str, paused: bool) -> None:
        from streamer.publish.base import segment

        ids = list(self.known() if self.known is not None else self.cameras)
        matches = [cid for cid in ids if segment(cid) == level]
        if self.control is None or len(matches) != 1:
            log.info("mqtt command for unknown camera %r ignored", level[:64])
            return
        log.info("mqtt command: %s camera %s", "pause" if paused else "resume", matches[0])
        outcome = self.control(matches[0], paused)
        if asyncio.iscoroutine(outcome):
            asyncio.ensure_future(outcome)

    def now(self, camera: str) -> float:
        """The camera's clock: its latest frame's time, carried on at wall-clock pace."""
        last = self._clock.get(camera)
        return time.time() if last is None else last[0] + (time.monotonic() - last[1])

    def _camera(self, cid: str) -> CameraEvents:
        cam = self.cameras.get(cid)
        if cam is None:
            cam = self.cameras[cid] = CameraEvents(cid, self.s.leave_after_s, self.keep_s)
        return cam

    def _emit(self, kind: str, payload: dict[str, Any]) -> None:
        self.sent[kind] += 1
        for p in self.publishers:
            try:
                p.offer(kind, payload)
            except Exception:  # a publisher's bug must not reach the pipeline
                log.exception("publisher %s refused a %s payload", p.name, kind)

    async def _ticks(self) -> None:
        from aggregator.alert_log import RULES_EVERY_S

        rules_at = -RULES_EVERY_S
        while True:
            if self.rules_from is not None and time.monotonic() - rules_at >= RULES_EVERY_S:
                rules_at = time.monotonic()
                try:
                    rules = await asyncio.to_thread(self.rules_from)
                except Exception as exc:  # Redis down: the rules stay as they were
                    log.debug("alert rules not read: %s", type(exc).__name__)
                else:
                    cleared = self.set_api_rules(rules)
                    if cleared and self.alert_log is not None:
                        await asyncio.to_thread(self._log_alerts, cleared)
            await asyncio.sleep(self.s.state_every_s)
            try:
                alerts = self.tick()
            except Exception:
                log.exception("events tick failed")
                continue
            if alerts and self.alert_log is not None:
                await asyncio.to_thread(self._log_alerts, alerts)

    def set_api_rules(self, rules: list[AlertRule]) -> list[Alert]:
        """The API's rules now; alerts of rules that went away clear (returned, and sent)."""
        names = {r.name for r in self.config_rules}
        cleared = self.engine.set_rules(self.config_rules + [r for r in rules if r.name not in names], time.time())
        self._publish_alerts(cleared)
        self.keep_s = max(self.s.window_s, self.engine.longest_window_s)
        for cam in self.cameras.values():
            cam.keep_s = self.keep_s
        return cleared

    def _publish_alerts(self, alerts: list[Alert]) -> None:
        for a in alerts:
            self.recent_alerts.appendleft(a.to_dict())
            self._emit("alert", a.to_dict())
            log.info("alert %s %s on camera %s (value %s, threshold %s)", a.rule, a.state, a.camera, a.value,
                     a.threshold)

    def _log_alerts(self, alerts: list[Alert]) -> None:
        assert self.alert_log is not None
        for a in alerts:
            try:
                self.alert_log(a.to_dict())
            except Exception as exc:  # Redis down: the alert went out, only its record is lost
                log.warning("alert %s on %s not stored: %s", a.rule, a.camera, type(exc).__name__)

    def _status(self, stats: dict[str, Any], cid: str) -> tuple[str, float]:
        st = stats.get(cid)
        return (st.status, st.recent_fps) if st is not None else ("running", 0.0)

    def _state(self, cid: str, now: float, stats: dict[str, Any] | None = None) -> dict[str, Any]:
        status, fps = self._status(stats or {}, cid)
        return self._camera(cid).state(now, self.s.window_s, status, fps).to_dict()

    def tick(self) -> list[Alert]:
        """Leaves, each camera's state, alerts, and (every ``events.stats_every_s``) the service stats."""
        stats = self.stats_of() if self.stats_of is not None else {}
        fired: list[Alert] = []
        if self.stats_of is not None:
            for cid in [c for c in self.cameras if c not in stats]:  # removed from the pipeline
                now = self.now(cid)
                for event in self.cameras.pop(cid).close():
                    self._emit(event.type, event.to_dict())
                fired += self.engine.forget(cid, now)
                self._emit("state", gone_state(cid, now))
                self._clock.pop(cid, None)
                self._down_since.pop(cid, None)
        for cid in sorted(set(self.cameras) | set(stats)):
            now, wall = self.now(cid), time.time()
            cam = self._camera(cid)
            for event in cam.expire(now):
                self._emit(event.type, event.to_dict())
            status, fps = self._status(stats, cid)
            self._emit("state", cam.state(now, self.s.window_s, status, fps).to_dict())
            if status in DOWN_STATUSES:
                down_for = wall - self._down_since.setdefault(cid, wall)
            else:
                self._down_since.pop(cid, None)
                down_for = 0.0
            if self.engine.rules:
                windows = {r.window_s: cam.window(now, r.window_s) for r in self.engine.rules}
                fired += self.engine.evaluate(cid, now, windows, len(cam.present), down_for)
        self._publish_alerts(fired)
        if time.monotonic() - self._last_stats >= self.s.stats_every_s:
            self._last_stats = time.monotonic()
            self._emit("stats", self.stats_payload())
        return fired

    def stats_payload(self) -> dict[str, Any]:
        return {"type": "stats", "v": PAYLOAD_VERSION, "at": round(time.time(), 3),
                "uptime_s": round(time.time() - self._began, 1), "cameras": len(self.cameras),
                "people_now": sum(len(c.present) for c in self.cameras.values()), "sent": dict(self.sent),
                "alerts_firing": len(self.engine.firing()),
                "publishers": {p.name: p.counters() for p in self.publishers}}


def gone_state(camera: str, now: float) -> dict[str, Any]:
    """The last state of a camera removed from the pipeline (retained, so readers see it went away)."""
    return {"type": "state", "camera": camera, "at": round(now, 3), "status": "removed", "up": False,
            "people_now": 0, "dominant": None, "mix": {}, "satisfaction": None, "points": 0, "window_s": 0.0,
            "fps": 0.0, "uncertain": 0, "v": PAYLOAD_VERSION}
