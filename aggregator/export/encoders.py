"""DataFrame chunks -> the bytes of one file format (CSV, Parquet, JSON lines), chunk by chunk."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

from aggregator.export.query import arrow_schema

if TYPE_CHECKING:
    import pandas as pd

FORMATS = ("csv", "parquet", "jsonl")
MEDIA_TYPES = {"csv": "text/csv; charset=utf-8", "parquet": "application/vnd.apache.parquet",
               "jsonl": "application/x-ndjson"}


class _Sink(io.RawIOBase):
    """A write-only file that hands back what was written since the last ``take()`` (Parquet into a stream)."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:
        data = bytes(b)
        self.parts.append(data)
        self.size += len(data)
        return len(data)

    def tell(self) -> int:
        return self.size

    def take(self) -> bytes:
        out, self.parts = b"".join(self.parts), []
        return out


class Encoder:
    """DataFrame chunks -> bytes of one file format: ``encode(frame)`` for each chunk, then ``finish()``. An export
    with no rows is a header-only CSV, an empty JSONL file, or a Parquet file with the schema and no rows."""

    def __init__(self, fmt: str, columns: list[str]):
        if fmt not in FORMATS:
            raise ValueError(f"format must be one of {', '.join(FORMATS)}, not {fmt!r}")
        self.fmt, self.columns = fmt, columns
        self.rows = 0
        self._header_done = False
        self._sink: _Sink | None = None
        self._writer = None
        if fmt == "parquet":
            import pyarrow.parquet as pq

            self.schema = arrow_schema(columns)
            self._sink = _Sink()
            self._writer = pq.ParquetWriter(self._sink, self.schema, compression="zstd")

    def encode(self, frame: pd.DataFrame) -> bytes:
        self.rows += len(frame)
        if self.fmt == "csv":
            text = frame.to_csv(index=False, header=not self._header_done, date_format="%Y-%m-%dT%H:%M:%S.%fZ",
                                lineterminator="\n")
            self._header_done = True
            return text.encode()
        if self.fmt == "jsonl":
            if frame.empty:
                return b""
            text = frame.to_json(orient="records", lines=True, date_format="iso", date_unit="ms", double_precision=6)
            return (text if text.endswith("\n") else text + "\n").encode()
        import pyarrow as pa

        assert self._writer is not None and self._sink is not None
        self._writer.write_table(pa.Table.from_pandas(frame, schema=self.schema, preserve_index=False))
        return self._sink.take()

    def finish(self) -> bytes:
        if self.fmt == "csv":
            return b"" if self._header_done else (",".join(self.columns) + "\n").encode()
        if self.fmt == "parquet":
            assert self._writer is not None and self._sink is not None
            self._writer.close()
            return self._sink.take()
        return b""
