"""Per-person emotion time series, per-camera roll-ups and the live event channel in Redis.

Every key and channel is named by ``aggregator.keys.KeySchema`` (the table of them is there).

A person id is ``{run}-{track_id}``: the writer's run id (base-36 start time in
ms) and the tracker's id, so ids stay unique across restarts. The number a page shows
("Visitor 12") is the person's ``visitor``: taken from the camera's counter (INCR) when
the person is first written, so it rises across runs and restarts and never repeats on a
camera (the tracker's ids restart at 1 with every run). Probabilities are
7 comma-separated numbers in ``deepfer_core.types.EMOTIONS`` order. Only numbers and ids
are stored, never images. Retention: stream entries older than
``retention_days`` are trimmed on every write (XADD MINID), every other key
expires ``retention_days`` after its last write (or after its bucket ends).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal, cast

import redis.asyncio as aioredis
from pydantic import BaseModel, ConfigDict, Field, computed_field
from redis.asyncio.client import PubSub

from aggregator.keys import KeySchema
from deepfer_core.settings import RedisSettings
from deepfer_core.types import EMOTIONS

log = logging.getLogger(__name__)
Interval = Literal["minute", "hour", "day"]
INTERVAL_S: dict[str, int] = {"minute": 60, "hour": 3600, "day": 86400}
MAX_BUCKETS = 20000  # one roll-up read: 2 weeks of minutes


# the person's visitor number: the camera's next one the first time the person is written, the same one after.
# The counter expires at ARGV[1] unless it lives longer already: a replayed old point never shortens its life, so it
# outlives every person hash of the camera and no number comes back while one still shows.
ASSIGN_VISITOR = """
local n = redis.call('HGET', KEYS[1], 'visitor')
if not n then
  n = redis.call('INCR', KEYS[2])
  redis.call('HSET', KEYS[1], 'visitor', n)
end
local at = tonumber(ARGV[1])
if redis.call('TTL', KEYS[2]) < at - tonumber(redis.call('TIME')[1]) then
  redis.call('EXPIREAT', KEYS[2], at)
end
return tonumber(n)
"""


def _csv(values: Sequence[float]) -> str:
    return ",".join(f"{v:.4f}" for v in values)


def _floats(text: str | None) -> tuple[float, ...]:
    return tuple(float(v) for v in text.split(",")) if text else ()


@dataclass(frozen=True)
class EmotionPoint:
    """One point of one person's series: what the writer stores, and what the journal keeps while Redis is down."""

    camera_id: str
    person_id: str
    track_id: int
    t: float  # capture time, unix seconds
    label: str  # shown label (smoothed, with hysteresis)
    raw_label: str  # this frame's argmax
    smoothed: tuple[float, ...]
    raw: tuple[float, ...]
    dwell_s: float  # seconds since this person's previous point (0 for the first)
    stream_id: str  # "<ms>-<n>", increasing per person
    run_id: str
    seq: int  # increasing per run; makes replays after a crash exactly-once

    @property
    def confidence(self) -> float:
        if not self.smoothed:
            return 0.0
        # an uncertain point (issue 32) has no emotion: its top probability
        return self.smoothed[EMOTIONS.index(self.label)] if self.label in EMOTIONS else max(self.smoothed)

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, line: str) -> EmotionPoint:
        d = json.loads(line)
        d["smoothed"], d["raw"] = tuple(d["smoothed"]), tuple(d["raw"])
        return cls(**d)


class Person(BaseModel):
    """A person seen by one camera: time span, shown label now, and the emotion shown longest."""

    model_config = ConfigDict(frozen=True)

    camera_id: str
    person_id: str
    track_id: int
    visitor_number: int = Field(description="'Visitor N' of the page: the camera's counter when the person was first "
                                            "stored, unique on the camera across runs (the track id for data "
                                            "stored before visitor numbers).")
    first_seen: float
    last_seen: float
    label: str = Field(description="Current smoothed emotion.")
    confidence: float
    probabilities: dict[str, float] = Field(description="Current smoothed probabilities.")
    emotion_points: dict[str, int] = Field(description="Stored points per shown emotion.")
    points: int
    dwell_s: float

    @computed_field  # type: ignore[prop-decorator]  # pydantic's documented way; mypy does not know it
    @property
    def duration_s(self) -> float:
        return round(self.last_seen - self.first_seen, 3)

    @computed_field(description="The emotion shown longest.")  # type: ignore[prop-decorator]
    @property
    def dominant(self) -> str:
        return max(EMOTIONS, key=lambda e: self.emotion_points.get(e, 0))

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump()


@dataclass(frozen=True)
class SeriesPoint:
    """One stored point of a person's series: the shown label and the smoothed and raw probabilities."""

    t: float
    label: str
    raw_label: str
    confidence: float
    smoothed: dict[str, float]
    raw: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class RollupBucket:
    """One interval of one camera: emotion mix (points per shown label), unique people, dwell time."""

    start: float
    interval_s: int
    points: int
    emotion_points: dict[str, int]
    unique_people: int
    dwell_s: float  # person-seconds in view

    @property
    def mean_dwell_s(self) -> float:
        return self.dwell_s / self.unique_people if self.unique_people else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "mean_dwell_s": round(self.mean_dwell_s, 3)}


def visitor_number(person_id: str, h: dict[str, str]) -> int:
    """A person hash's visitor number; a hash stored before visitor numbers has its track id (``{run}-{track}``)."""
    for text in (h.get("visitor", ""), h.get("track_id", ""), person_id.rsplit("-", 1)[-1]):
        if text.isdigit():
            return int(text)
    return 0


def redis_client(url: str, settings: RedisSettings, decode: bool = True) -> aioredis.Redis:
    """An asyncio client that fails fast (no silent retries): the caller decides what Redis down means.

    ``decode=False`` answers bytes: for channels anyone may publish on, where a payload may not be UTF-8."""
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    return aioredis.from_url(url, decode_responses=decode, socket_connect_timeout=settings.connect_timeout_s,
                             socket_timeout=settings.connect_timeout_s + 4.0, retry=Retry(NoBackoff(), 0))


class EmotionTimeSeries:
    """Writes points with retention trimming and reads people, series and roll-ups for the CLI and dashboard."""

    def __init__(self, client: aioredis.Redis, settings: RedisSettings, url: str = ""):
        self.r = client
        self.url = url  # for connections of their own (live events)
        self.settings = settings
        self.keys = KeySchema(settings.key_prefix)
        self.retention_s = settings.retention_days * 86400.0

    @classmethod
    def from_url(cls, url: str, settings: RedisSettings) -> EmotionTimeSeries:
        return cls(redis_client(url, settings), settings, url)

    async def aclose(self) -> None:
        await self.r.aclose()

    # ----- writing -------------------------------------------------------------------------------------------------

    async def write(self, points: Sequence[EmotionPoint]) -> dict[tuple[str, str], int]:
        """Store points (in order) in one MULTI/EXEC transaction, with the runs' applied markers; answers the
        visitor number of each (camera, person id) written."""
        if not points:
            return {}
        k, keep = self.keys, self.retention_s
        pipe = self.r.pipeline(transaction=True)
        last_seen: dict[tuple[str, str], float] = {}  # (zset key, member) -> latest time
        expire_at: dict[str, float] = {}
        trim_before: dict[str, float] = {}
        counters: dict[tuple[str, str], float] = defaultdict(float)
        members: dict[str, set[str]] = defaultdict(set)
        applied: dict[str, int] = {}
        numbered: dict[tuple[str, str], int] = {}  # (camera, person) -> index of its ASSIGN_VISITOR reply
        latest: dict[str, float] = {}  # camera -> its latest point here: the visitor counter lives keep after it
        for pt in points:
            latest[pt.camera_id] = max(pt.t, latest.get(pt.camera_id, pt.t))
        for pt in points:
            cam, pid = pt.camera_id, pt.person_id
            pipe.xadd(k.series(cam, pid), {"label": pt.label, "raw_label": pt.raw_label, "conf": f"{pt.confidence:.4f}",
                                            "p": _csv(pt.smoothed), "r": _csv(pt.raw)},
                      id=pt.stream_id, minid=max(0, int((pt.t - keep) * 1000)), approximate=False)
            person = k.person(cam, pid)
            pipe.hsetnx(person, "first_seen", pt.t)
            pipe.hset(person, mapping={"track_id": pt.track_id, "last_seen": pt.t, "label": pt.label,
                                       "confidence": f"{pt.confidence:.4f}", "p": _csv(pt.smoothed)})
            if (cam, pid) not in numbered:
                numbered[(cam, pid)] = len(pipe)
                pipe.eval(ASSIGN_VISITOR, 2, person, k.visitors(cam), max(1, math.ceil(latest[cam] + keep)))
            counters[(person, "points")] += 1
            counters[(person, f"n:{pt.label}")] += 1
            counters[(person, "dwell_s")] += pt.dwell_s
            for key in (person, k.series(cam, pid)):
                expire_at[key] = pt.t + keep
            for zkey, member in ((k.people(cam), pid), (k.cameras(), cam)):
                last_seen[(zkey, member)] = max(pt.t, last_seen.get((zkey, member), pt.t))
                expire_at[zkey] = max(pt.t + keep, expire_at.get(zkey, 0.0))
                trim_before[zkey] = max(pt.t - keep, trim_before.get(zkey, 0.0))
            for interval, size in INTERVAL_S.items():
                start = int(pt.t // size * size)
                bucket, people = k.rollup(cam, interval, start), k.rollup_people(cam, interval, start)
                counters[(bucket, "points")] += 1
                counters[(bucket, f"n:{pt.label}")] += 1
                counters[(bucket, "dwell_s")] += pt.dwell_s
                members[people].add(pid)
                expire_at[bucket] = expire_at[people] = start + size + keep
            applied[pt.run_id] = max(pt.seq, applied.get(pt.run_id, -1))
        for (key, field), amount in counters.items():
            if field == "dwell_s":
                pipe.hincrbyfloat(key, field, round(amount, 3))
            else:
                pipe.hincrby(key, field, int(amount))
        for key, pids in members.items():
            pipe.sadd(key, *sorted(pids))
        for (zkey, member), t in last_seen.items():
            pipe.zadd(zkey, {member: t})
        for zkey, before in trim_before.items():
            pipe.zremrangebyscore(zkey, "-inf", f"({before}")
        for key, when in expire_at.items():
            pipe.expireat(key, max(1, math.ceil(when)))
        for run, seq in applied.items():
            pipe.set(k.applied(run), seq, ex=max(1, int(keep)))
        replies = await pipe.execute(raise_on_error=False)
        refused = [r for r in replies if isinstance(r, Exception)]
        if refused:  # e.g. a stream id below the last one; the rest of the transaction is applied
            log.warning("Redis refused %d of %d commands; first: %s", len(refused), len(replies), refused[0])
        return {who: int(replies[i]) for who, i in numbered.items() if isinstance(replies[i], int)}

    async def applied_seq(self, run_id: str) -> int:
        """The highest point sequence number of ``run_id`` already stored (-1: none)."""
        value = await self.r.get(self.keys.applied(run_id))
        return int(value) if value is not None else -1

    # ----- reading -------------------------------------------------------------------------------------------------

    async def cameras(self) -> list[tuple[str, float]]:
        """(camera id, last seen), most recent first."""
        rows = cast(list[tuple[str, float]], await self.r.zrevrange(self.keys.cameras(), 0, -1, withscores=True))
        return [(cam, float(t)) for cam, t in rows]

    async def people(self, camera: str, since: float | None = None, until: float | None = None,
                     limit: int | None = None) -> list[Person]:
        """People of ``camera`` in view at some time in [since, until], most recently seen first."""
        lo = "-inf" if since is None else since
        pids = cast(list[str], await self.r.zrevrangebyscore(self.keys.people(camera), "+inf", lo,
                                                             start=0 if limit else None,
                                                             num=limit if limit else None))
        if not pids:
            return []
        pipe = self.r.pipeline(transaction=False)
        for pid in pids:
            pipe.hgetall(self.keys.person(camera, pid))
        out = []
        for pid, h in zip(pids, await pipe.execute()):
            if not h or "first_seen" not in h:
                continue  # expired between the two reads
            first = float(h["first_seen"])
            if until is not None and first > until:
                continue
            probs = _floats(h.get("p"))
            out.append(Person(
                camera_id=camera, person_id=pid, track_id=int(h.get("track_id", 0)),
                visitor_number=visitor_number(pid, h), first_seen=first,
                last_seen=float(h.get("last_seen", first)), label=h.get("label", ""),
                confidence=float(h.get("confidence", 0.0)),
                probabilities={e: p for e, p in zip(EMOTIONS, probs)},
                emotion_points={e: int(h.get(f"n:{e}", 0)) for e in EMOTIONS},
                points=int(h.get("points", 0)), dwell_s=float(h.get("dwell_s", 0.0))))
        return out

    async def series(self, camera: str, person: str, start: float | None = None, end: float | None = None,
                     count: int | None = None) -> list[SeriesPoint]:
        """One person's points in time order (raw and smoothed)."""
        lo = "-" if start is None else str(int(start * 1000))
        hi = "+" if end is None else str(int(end * 1000))
        rows = cast(list[tuple[str, dict[str, str]]],
                    await self.r.xrange(self.keys.series(camera, person), lo, hi, count=count))
        out = []
        for sid, f in rows:
            out.append(SeriesPoint(t=int(sid.split("-")[0]) / 1000.0, label=f["label"], raw_label=f["raw_label"],
                                   confidence=float(f["conf"]), smoothed=dict(zip(EMOTIONS, _floats(f["p"]))),
                                   raw=dict(zip(EMOTIONS, _floats(f["r"])))))
        return out

    async def rollup(self, camera: str, interval: Interval, start: float, end: float) -> list[RollupBucket]:
        """Every ``interval`` bucket that overlaps [start, end), empty ones included, oldest first."""
        if interval not in INTERVAL_S:
            raise ValueError(f"interval must be one of {', '.join(INTERVAL_S)}, not {interval!r}")
        size = INTERVAL_S[interval]
        first = int(start // size * size)
        starts = list(range(first, int(math.ceil(end)), size))
        if len(starts) > MAX_BUCKETS:
            raise ValueError(f"{len(starts)} {interval} buckets asked; at most {MAX_BUCKETS} per read")
        pipe = self.r.pipeline(transaction=False)
        for s in starts:
            pipe.hgetall(self.keys.rollup(camera, interval, s))
            pipe.scard(self.keys.rollup_people(camera, interval, s))
        replies = await pipe.execute() if starts else []
        out = []
        for i, s in enumerate(starts):
            h, unique = replies[2 * i], replies[2 * i + 1]
            out.append(RollupBucket(start=float(s), interval_s=size, points=int(h.get("points", 0)),
                                    emotion_points={e: int(h.get(f"n:{e}", 0)) for e in EMOTIONS},
                                    unique_people=int(unique), dwell_s=float(h.get("dwell_s", 0.0))))
        return out

    def live_events(self, camera: str | None = None) -> LiveEvents:
        """A subscription to the live channel of one camera, or of all cameras."""
        return LiveEvents(self.url, self.settings, self.keys, camera)

    async def ping(self) -> bool:
        return bool(await self.r.ping())

    async def person_exists(self, camera: str, person: str) -> bool:
        return bool(await self.r.exists(self.keys.person(camera, person)))

    async def has_camera(self, camera: str) -> bool:
        """The camera has data (it wrote a point within the retention)."""
        return await self.r.zscore(self.keys.cameras(), camera) is not None


class LiveEvents:
    """The live channel (one JSON event per processed frame), read on a connection of its own.

    Payloads arrive as bytes: one that is not UTF-8 JSON (anyone with access to Redis may publish) is skipped,
    never fatal. ``open`` and ``next`` raise ``RedisError``/``OSError`` when Redis fails; what to do then is the
    caller's choice.
    """

    def __init__(self, url: str, settings: RedisSettings, keys: KeySchema, camera: str | None):
        self.url, self.settings, self.keys, self.camera = url, settings, keys, camera
        self._client: aioredis.Redis | None = None
        self._pubsub: PubSub | None = None

    async def open(self) -> None:
        self._client = redis_client(self.url, self.settings, decode=False)
        self._pubsub = pubsub = self._client.pubsub()
        if self.camera is None:
            await pubsub.psubscribe(self.keys.events("*"))
        else:
            await pubsub.subscribe(self.keys.events(self.camera))

    async def next(self, timeout: float) -> dict[str, Any] | None:
        """The next event, or None after ``timeout`` seconds (or for a payload that is not an event)."""
        assert self._pubsub is not None, "open() first"
        message = await self._pubsub.get_message(ignore_subscribe_messages=True, timeout=timeout)
        if message is None or message["type"] not in ("message", "pmessage"):
            return None
        try:
            event = json.loads(message["data"])
        except (TypeError, ValueError):
            return None
        return event if isinstance(event, dict) else None

    async def aclose(self) -> None:
        for closable in (self._pubsub, self._client):
            if closable is not None:
                with contextlib.suppress(Exception):
                    await closable.aclose()
        self._pubsub = self._client = None


def people_of(url: str, settings: RedisSettings, camera: str,
              since: float | None = None) -> tuple[list[Person], list[str]]:
    """``deepfer people``: the people ``camera`` saw since ``since``, and, when there are none, the cameras that
    have data (to tell an unknown camera from a quiet one)."""
    import asyncio

    async def query() -> tuple[list[Person], list[str]]:
        ts = EmotionTimeSeries.from_url(url, settings)
        try:
            found = await ts.people(camera, since=since)
            return found, ([] if found else [c for c, _ in await ts.cameras()])
        finally:
            await ts.aclose()

    return asyncio.run(query())
