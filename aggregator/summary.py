"""KPIs in plain words ("mood in words", issue 31): one sentence per camera and one over all cameras, so a manager
reads "Door, last 10 minutes: mostly neutral, 62% of readings; satisfaction +0.31, up from +0.12 in the 10 minutes
before; 3 people now; 2 of 9 visitors too far away or unclear to read." instead of decoding numbers.

Pure functions of what was counted (``Window``, ``Scene``): the dashboard reads Redis and the cameras' states, this
module only words them. A reading is a stored point with a confident emotion; an ``uncertain`` point (a face too
small or too unsure, issue 32) counts its visitor but gives no mood. The satisfaction trend is said only when it
moved by at least ``trend_min`` (``dashboard.summary_trend_min``) against the window before.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from aggregator.analytics import satisfaction
from aggregator.events import UP_STATUSES
from deepfer_core.types import EMOTIONS

# what a camera's status means to a manager; a running camera needs no words
CameraState = Literal["running", "down", "paused", "ended", "removed"]
STATE_WORDS: dict[str, str] = {"down": "camera down, no new readings", "paused": "camera paused",
                               "ended": "video finished"}
MAJORITY = 0.5  # "mostly X" means more than half of the readings; otherwise the mix is "mixed"


def camera_state(status: str | None) -> CameraState:
    """A camera's API status (``None``: not configured, only its history is left) as one of ``CameraState``."""
    if status is None:
        return "removed"
    if status in UP_STATUSES:
        return "running"
    # as the camera_down alert sees it: connecting, reconnecting, failed, stopped, waiting for a worker
    return "paused" if status == "paused" else "ended" if status == "ended" else "down"


@dataclass(frozen=True)
class Window:
    """What was counted over one window: readings per emotion, all points, the visitors in view and how many of
    them never gave a confident reading."""

    emotion_points: dict[str, int] = field(default_factory=dict)
    points: int = 0
    visitors: int = 0
    unreadable: int = 0

    @property
    def readings(self) -> int:
        return sum(self.emotion_points.get(e, 0) for e in EMOTIONS)

    def __add__(self, other: Window) -> Window:
        return Window({e: self.emotion_points.get(e, 0) + other.emotion_points.get(e, 0) for e in EMOTIONS},
                      self.points + other.points, self.visitors + other.visitors, self.unreadable + other.unreadable)


@dataclass(frozen=True)
class Scene:
    """One camera's summary input: the window, the one before it, who is in view now, and the camera's state."""

    camera: str
    now: Window
    before: Window
    ever_seen: bool  # any point stored within the retention
    state: CameraState = "running"
    live: bool = True  # the window ends now; a past range's summary says no "now"
    people_now: int = 0  # seen within dashboard.present_window_s


def span_words(seconds: float) -> str:
    """``600`` -> ``10 minutes``, ``3600`` -> ``hour``, ``5400`` -> ``90 minutes``, ``7200`` -> ``2 hours``."""
    s = round(seconds)
    if s == 3600:
        return "hour"
    if s % 3600 == 0 and s > 3600:
        return f"{s // 3600} hours"
    if s % 60 == 0 and s >= 60:
        return "minute" if s == 60 else f"{s // 60} minutes"
    return f"{s} seconds"


def _head(name: str, window_s: float, live: bool) -> str:
    span = span_words(window_s)
    return f"{name[:1].upper()}{name[1:]}, {'last ' + span if live else 'the ' + span + ' to the end of the range'}"


def _count(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def _mood(w: Window) -> str:
    top = max(EMOTIONS, key=lambda e: w.emotion_points.get(e, 0))
    share = w.emotion_points.get(top, 0) / w.readings
    if share > MAJORITY:
        return f"mostly {top}, {share:.0%} of readings"
    return f"mixed, most often {top} ({share:.0%} of readings)"


def _satisfaction(now: Window, before: Window, window_s: float, trend_min: float) -> str:
    value = satisfaction(now.emotion_points)
    text = f"satisfaction {value:+.2f}"
    earlier = satisfaction(before.emotion_points) if before.readings else None
    if value is not None and earlier is not None and abs(value - earlier) >= trend_min - 1e-9:
        text += f", {'up' if value > earlier else 'down'} from {earlier:+.2f} in the {span_words(window_s)} before"
    return text


def _readings(now: Window, before: Window, window_s: float, trend_min: float) -> list[str]:
    """The parts on what the window saw: mood, satisfaction (and its trend), visitors that could not be read."""
    if not now.points:
        return ["nobody seen"]
    if not now.readings:
        who = _count(now.visitors, "visitor", "visitors") if now.visitors else "every face"
        return [f"{who}, all too far away or unclear to read their mood"]
    parts = [_mood(now), _satisfaction(now, before, window_s, trend_min)]
    if now.unreadable:
        parts.append(f"{now.unreadable} of {_count(now.visitors, 'visitor', 'visitors')} too far away or unclear "
                     "to read")
    return parts


def _now(n: int) -> str:
    return "nobody now" if n == 0 else f"{_count(n, 'person', 'people')} now"


def describe_camera(scene: Scene, window_s: float, trend_min: float) -> str:
    """One camera's sentence, e.g. ``Door, last 10 minutes: mostly neutral, 62% of readings; satisfaction +0.31;
    3 people now.``; ``No faces seen yet on door.`` before its first stored point. The camera's state (down,
    paused) is its state now: said only when the window ends now."""
    state = STATE_WORDS.get(scene.state) if scene.live else None
    if not scene.ever_seen:
        return f"No faces seen yet on {scene.camera}" + (f" ({state})." if state else ".")
    parts = ([state] if state else []) + _readings(scene.now, scene.before, window_s, trend_min)
    if scene.live and scene.state != "removed":
        parts.insert(len(parts) - (1 if scene.now.unreadable and scene.now.readings else 0), _now(scene.people_now))
    return f"{_head(scene.camera, window_s, scene.live)}: {'; '.join(parts)}."


def describe_overall(scenes: Sequence[Scene], window_s: float, trend_min: float, live: bool) -> str:
    """The sentence over every camera: the combined mood and trend, people now, visitors not read, cameras down."""
    configured = [s for s in scenes if s.state != "removed"]
    down = [s.camera for s in configured if s.state == "down"] if live else []
    down_part = (f"{len(down)} of {_count(len(configured), 'camera', 'cameras')} down ({', '.join(down)})"
                 if down else None)
    if not any(s.ever_seen for s in scenes):
        if not scenes:
            return "No camera yet."
        return "No faces seen yet on any camera" + (f"; {down_part}." if down_part else ".")
    now = sum((s.now for s in scenes), Window())
    before = sum((s.before for s in scenes), Window())
    parts = _readings(now, before, window_s, trend_min)
    if live:
        people = sum(s.people_now for s in configured)
        parts.insert(len(parts) - (1 if now.unreadable and now.readings else 0), _now(people))
    if down_part:
        parts.append(down_part)
    return f"{_head('all cameras', window_s, live)}: {'; '.join(parts)}."
