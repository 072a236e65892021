"""Stored points and roll-ups out of Redis as pandas DataFrames, CSV, Parquet or JSON lines, in bounded memory.

Two kinds of rows:

- ``interval="point"``: one row per stored point (one person at one sampled moment), oldest first across people and
  cameras. Columns: ``time`` (UTC), ``t`` (unix seconds), ``camera``, ``person_id``, ``track_id``, ``visitor`` (the
  "Visitor N" of the page: unique on a camera across runs), ``label`` (the shown, smoothed label), ``confidence``,
  the 7 smoothed probabilities named after the emotions (``angry`` ... ``surprise``), ``raw_label`` and the 7 raw
  probabilities (``raw_angry`` ... ``raw_surprise``).
- ``interval="minute"|"hour"|"day"``: one row per roll-up bucket with points. Columns: ``time`` / ``t`` (bucket
  start), ``camera`` (``all`` for buckets combined over cameras), ``interval_s``, ``points``, ``n_{emotion}``
  (points per shown label), ``mix_{emotion}`` (their shares), ``unique_people``, ``dwell_s``, ``mean_dwell_s``,
  ``satisfaction`` (see ``aggregator.analytics``; empty with no points), ``confident_share`` (share of the points
  with a confident emotion; the rest were ``uncertain``: the ``label`` of a point row).

Points are read with ``XRANGE ... COUNT`` per person, a person's stream opened only when the merge reaches the
person's first point, so memory grows with ``export.chunk_points`` and the people in view at once, not with the
range; files are written chunk by chunk (``ParquetWriter`` row groups for Parquet).

Python API (the same DataFrames the files hold)::

    from aggregator.export import read_points, read_buckets
    df = read_points("redis://127.0.0.1:6379", "door", start="2026-05-01T09:00", end="2026-05-01T18:00")
    hourly = read_buckets("redis://127.0.0.1:6379", "door", start=..., end=..., interval="hour")

The parts, one job each: ``timerange`` (what users give as a time range), ``query`` (which rows, their columns and
types), ``reading`` (rows out of Redis: the k-way merge of the points, the roll-up windows), ``encoders`` (chunks
to CSV, Parquet or JSON lines), ``files`` (the stream, the file on disk, the Python API), ``limits`` (an HTTP
export's size, known before it is read). This package re-exports their public names.
"""

from aggregator.export.encoders import FORMATS, MEDIA_TYPES, Encoder
from aggregator.export.files import (
    ExportProgress,
    ExportResult,
    export_to_file,
    file_name,
    read_buckets,
    read_points,
    stream_export,
)
from aggregator.export.query import (
    ALL_CAMERAS,
    BUCKET_COLUMNS,
    INTERVALS,
    POINT_COLUMNS,
    RAW,
    ExportQuery,
    UnknownCamera,
    UnknownPerson,
    arrow_schema,
    check_cameras,
)
from aggregator.export.reading import empty_frame, iter_bucket_frames, iter_frames, iter_point_frames
from aggregator.export.timerange import day_range, iso, time_range, to_unix

__all__ = [
    "ALL_CAMERAS", "BUCKET_COLUMNS", "FORMATS", "INTERVALS", "MEDIA_TYPES", "POINT_COLUMNS", "RAW", "Encoder",
    "ExportProgress", "ExportQuery", "ExportResult", "UnknownCamera", "UnknownPerson", "arrow_schema", "check_cameras",
    "day_range", "empty_frame", "export_to_file", "file_name", "iso", "iter_bucket_frames", "iter_frames",
    "iter_point_frames", "read_buckets", "read_points", "stream_export", "time_range", "to_unix",
]
