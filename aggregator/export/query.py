"""What an export reads: the query (cameras, range, points or roll-ups), its columns and their Parquet types,
and the check that the cameras and the person have data."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from aggregator.export.timerange import iso
from aggregator.timeseries import INTERVAL_S
from deepfer_core.types import EMOTIONS

if TYPE_CHECKING:
    from aggregator.timeseries import EmotionTimeSeries

INTERVALS = ("point", *INTERVAL_S)
ALL_CAMERAS = "all"
RAW = [f"raw_{e}" for e in EMOTIONS]
POINT_COLUMNS = ["time", "t", "camera", "person_id", "track_id", "visitor", "label", "confidence", *EMOTIONS,
                 "raw_label", *RAW]
BUCKET_COLUMNS = ["time", "t", "camera", "interval_s", "points", *(f"n_{e}" for e in EMOTIONS),
                  *(f"mix_{e}" for e in EMOTIONS), "unique_people", "dwell_s", "mean_dwell_s", "satisfaction",
                  "confident_share"]


@dataclass(frozen=True)
class ExportQuery:
    """Which rows: ``cameras`` (None: every camera with data), [start, end) in unix seconds, ``interval`` (``point``
    or a roll-up), one ``person`` (points of one camera only), and for roll-ups over several cameras whether each
    camera gets its own rows (``by_camera``) or the buckets are combined into ``camera = "all"``."""

    cameras: tuple[str, ...] | None
    start: float
    end: float
    interval: str = "point"
    person: str | None = None
    by_camera: bool = True

    def __post_init__(self) -> None:
        if self.interval not in INTERVALS:
            raise ValueError(f"interval must be one of {', '.join(INTERVALS)}, not {self.interval!r}")
        if self.person is not None and (self.interval != "point" or not self.cameras or len(self.cameras) != 1):
            raise ValueError("a person's export needs one camera and interval 'point' (roll-ups are per camera)")
        if not self.start < self.end:
            raise ValueError(f"the start ({iso(self.start)}) must be before the end ({iso(self.end)})")

    @property
    def columns(self) -> list[str]:
        return POINT_COLUMNS if self.interval == "point" else BUCKET_COLUMNS


class UnknownCamera(ValueError):
    """A camera without data in Redis (HTTP 404, CLI exit 2)."""


class UnknownPerson(ValueError):
    pass


async def check_cameras(ts: EmotionTimeSeries, query: ExportQuery) -> list[str]:
    """The cameras the query reads; UnknownCamera / UnknownPerson when one has no data."""
    known = [c for c, _ in await ts.cameras()]
    if query.cameras is None:
        return sorted(known)
    for cam in query.cameras:
        if cam not in known:
            raise UnknownCamera(f"no data for camera {cam!r} (cameras: {', '.join(sorted(known)) or 'none'})")
    if query.person is not None and not await ts.person_exists(query.cameras[0], query.person):
        raise UnknownPerson(f"unknown person {query.person!r} on camera {query.cameras[0]!r}")
    return list(query.cameras)


def arrow_schema(columns: list[str]):
    """The Parquet schema of a kind of rows: fixed, so every chunk (and an empty export) has the same types."""
    import pyarrow as pa

    ints = {"track_id", "visitor", "interval_s", "points", "unique_people", *(f"n_{e}" for e in EMOTIONS)}
    strings = {"camera", "person_id", "label", "raw_label"}

    def kind(name: str):
        if name == "time":
            return pa.timestamp("ms", tz="UTC")
        return pa.int64() if name in ints else pa.string() if name in strings else pa.float64()

    return pa.schema([pa.field(c, kind(c)) for c in columns])
