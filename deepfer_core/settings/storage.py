"""Settings of what is kept: the data folder, Redis (points, people, roll-ups, live events) and file exports."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from deepfer_core.settings.base import Section


class PathsSettings(Section):
    data_dir: Path = Field(Path(".deepfer"), description="Cache, embedded Redis and journals live here.")


class ExportSettings(Section):
    """``deepfer export`` / ``deepfer report`` and their HTTP routes: stored points and roll-ups out as files."""

    chunk_points: int = Field(10000, ge=100, le=1_000_000, description="Stream entries read per XRANGE ... COUNT, and "
                                                                       "rows per chunk written (CSV/JSONL) or parquet "
                                                                       "row group: peak memory grows with it.")
    default_format: Literal["csv", "parquet", "jsonl"] = Field("csv", description="Format when none is asked.")
    default_range_s: float = Field(86400.0, gt=0, description="Range of an export or report when none is given "
                                                              "(ending now).")
    max_range_s: float = Field(31 * 86400.0, gt=0, description="Longest time range one HTTP export or report may "
                                                               "ask (400 beyond); the CLI has no limit.")
    max_people: int = Field(100_000, ge=1, description="Most people one export or report reads (people are listed "
                                                      "before their points are streamed); more: an error asking for "
                                                      "a shorter range.")
    max_buckets: int = Field(50_000, ge=1, description="Most roll-up buckets one HTTP export reads (buckets of the "
                                                       "range x cameras; 31 days of minutes of one camera: 44,640); "
                                                       "more: 400 with the reason.")
    max_points: int = Field(1_000_000, ge=1, description="Most points one HTTP export holds (counted from the hour "
                                                         "roll-ups before reading); more: 400 with the reason.")
    max_concurrent: int = Field(2, ge=1, description="HTTP exports and reports running at once; one more gets 503 "
                                                     "with Retry-After. They encode in as many threads, at lower "
                                                     "CPU priority than the cameras' pipeline.")
    retry_after_s: int = Field(10, ge=1, description="Retry-After of the 503 when max_concurrent are running.")
    nice: int = Field(10, ge=0, le=19, description="How much lower the export threads' CPU priority is (Linux nice "
                                                   "increment; 0: the same as the pipeline).")


class RedisSettings(Section):
    url: str = Field(
        "", repr=False, description="Empty: use default_url if it answers, else start an embedded redis-server."
    )
    default_url: str = Field("redis://127.0.0.1:6379", repr=False, description="Tried when url is empty.")
    embedded: bool = Field(True, description="Start redis-server under paths.data_dir when no Redis answers.")
    retention_days: float = Field(7.0, gt=0, description="Points, people and roll-ups older than this are removed.")
    points_per_s: float = Field(
        5.0, ge=0, description="Most points written per person per second; 0: every processed frame."
    )
    buffer_max: int = Field(
        10000, ge=1, description="Points kept in memory while Redis is down before spilling to disk."
    )
    journal_every_s: float = Field(
        1.0, ge=0, description="While Redis is down, points waiting in memory reach the on-disk journal at least this "
                               "often (a crash loses at most this much); 0: on every frame."
    )
    batch_size: int = Field(500, ge=1, description="Points per Redis transaction.")
    connect_timeout_s: float = Field(1.0, gt=0, description="Connect and command timeout; slower counts as Redis down.")
    retry_max_s: float = Field(5.0, gt=0, description="Longest wait between reconnection attempts.")
    close_timeout_s: float = Field(
        5.0, ge=0, description="On exit, longest wait for Redis; the rest stays in the journal."
    )
    events: bool = Field(
        True, description="Publish every frame's faces on the live channel {key_prefix}:events:{camera}."
    )
    key_prefix: str = Field(
        "deepfer", min_length=1, description="Start of every key, to share one Redis between setups."
    )
