"""Alert rules over the cameras' rolling state: fire once per episode, clear when the value is back past the
threshold by the rule's hysteresis, and fire again no sooner than its cooldown after the last fire.

Pure, like ``aggregator.events``: the caller gives each camera's window stats, people now and how long it has been
down, and ``now``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

from aggregator.events import PAYLOAD_VERSION, WindowStats
from deepfer_core.settings import AlertRule


@dataclass(frozen=True)
class Alert:
    state: Literal["firing", "cleared"]
    rule: str
    kind: str
    camera: str
    value: float
    threshold: float
    at: float
    since: float  # when the episode began (its fire)
    type: str = "alert"
    v: int = PAYLOAD_VERSION

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Episode:
    firing: bool = False
    fired_at: float | None = None


class AlertEngine:
    def __init__(self, rules: Sequence[AlertRule]):
        self.rules = list(rules)
        self._episodes: dict[tuple[str, str], _Episode] = {}

    def set_rules(self, rules: Sequence[AlertRule], now: float) -> list[Alert]:
        """New rules (config ones and those added through the API); episodes of rules that stay are kept, those of
        rules that went away clear."""
        old = {r.name: r for r in self.rules}
        self.rules = list(rules)
        names = {r.name for r in self.rules}
        out = []
        for (name, cam), ep in list(self._episodes.items()):
            if name in names:
                continue
            if ep.firing:
                out.append(Alert("cleared", name, old[name].kind, cam, 0.0, old[name].threshold, round(now, 3),
                                 round(ep.fired_at or now, 3)))
            del self._episodes[(name, cam)]
        return out

    @property
    def longest_window_s(self) -> float:
        return max((r.window_s for r in self.rules), default=0.0)

    def firing(self) -> list[tuple[str, str]]:
        """(rule, camera) pairs firing now."""
        return [k for k, e in self._episodes.items() if e.firing]

    @staticmethod
    def value(rule: AlertRule, window: WindowStats | None, people_now: int, down_for_s: float) -> float | None:
        """The rule's value now, or None when there is not enough data to say (the episode keeps its state)."""
        if rule.kind == "people_above":
            return float(people_now)
        if rule.kind == "camera_down":
            return down_for_s
        if window is None or window.points < rule.min_points:
            return None
        return window.satisfaction if rule.kind == "satisfaction_below" else window.negative_share

    def evaluate(self, camera: str, now: float, windows: dict[float, WindowStats], people_now: int,
                 down_for_s: float) -> list[Alert]:
        """``windows``: the camera's stats per window length the rules use (``window_s`` -> stats)."""
        out = []
        for rule in self.rules:
            if rule.camera not in ("*", camera):
                continue
            value = self.value(rule, windows.get(rule.window_s), people_now, down_for_s)
            if value is None:
                continue
            ep = self._episodes.setdefault((rule.name, camera), _Episode())
            below = rule.kind == "satisfaction_below"
            crossed = value < rule.threshold if below else value > rule.threshold
            back = (value >= rule.threshold + rule.hysteresis if below
                    else value <= rule.threshold - rule.hysteresis)
            if not ep.firing and crossed:
                if ep.fired_at is not None and now - ep.fired_at < rule.cooldown_s:
                    continue
                ep.firing, ep.fired_at = True, now
                out.append(Alert("firing", rule.name, rule.kind, camera, round(value, 4), rule.threshold,
                                 round(now, 3), round(now, 3)))
            elif ep.firing and back:
                ep.firing = False
                out.append(Alert("cleared", rule.name, rule.kind, camera, round(value, 4), rule.threshold,
                                 round(now, 3), round(ep.fired_at or now, 3)))
        return out

    def forget(self, camera: str, now: float) -> list[Alert]:
        """The camera is gone: its firing alerts clear."""
        out = []
        for (name, cam), ep in list(self._episodes.items()):
            if cam == camera:
                if ep.firing:
                    rule = next(r for r in self.rules if r.name == name)
                    out.append(Alert("cleared", name, rule.kind, cam, 0.0, rule.threshold, round(now, 3),
                                     round(ep.fired_at or now, 3)))
                del self._episodes[(name, cam)]
        return out
