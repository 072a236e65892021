"""The daily report: one self-contained HTML file (charts as inline SVG drawn by matplotlib, no script, no CDN).

Top-line numbers (visitors, points, satisfaction, mean and median dwell, busiest hour, most shown emotion), then
visitors per hour, the emotion mix over the day, satisfaction by hour, the dwell-time distribution and, with several
cameras, a line per camera. Visitors are unique people per camera (a person seen by two cameras counts twice), as on
the dashboard. Times are UTC, like the roll-up buckets.

The page holds no script and loads nothing: the dashboard serves it with a CSP of its own that forbids both
(``REPORT_CSP``); its styles are inline (matplotlib's SVG uses style attributes).
"""

from __future__ import annotations

import asyncio
import html
import io
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aggregator import analytics
from aggregator.export import check_cameras, iso
from aggregator.timeseries import INTERVAL_S, EmotionTimeSeries, Interval
from deepfer_core.settings import Settings
from deepfer_core.types import EMOTIONS

COLOURS = {"angry": "#e63946", "disgust": "#6a994e", "fear": "#9b5de5", "happy": "#ffc828", "neutral": "#c8c8c8",
           "sad": "#3a86ff", "surprise": "#ff7800"}
# what the dashboard sends with a report: nothing may load or run; inline styles only (SVG style attributes)
REPORT_CSP = ("default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'; "
              "frame-ancestors 'none'")
STYLE = """body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2rem auto;max-width:1000px;color:#0f172a;
padding:0 1rem}h1{font-size:1.5rem;margin-bottom:.2rem}h2{font-size:1.1rem;margin-top:2rem}.muted{color:#64748b}
.kpis{display:grid;grid-template-columns:repeat(auto-fill,minmax(150px,1fr));gap:.8rem;margin:1rem 0}
.kpis div{background:#f1f5f9;border-radius:6px;padding:.6rem .8rem}.kpis b{display:block;font-size:1.4rem}
svg{max-width:100%;height:auto}table{border-collapse:collapse}
td,th{padding:.25rem .6rem;border-bottom:1px solid #e2e8f0;text-align:right}
th:first-child,td:first-child{text-align:left}"""


def interval_for(seconds: float) -> Interval:
    """Bucket size of a report over ``seconds``: minutes up to 3 h, hours up to 4 days, then days."""
    return "minute" if seconds <= 3 * 3600 else "hour" if seconds <= 4 * 86400 else "day"


@dataclass
class ReportData:
    cameras: list[str]
    start: float
    end: float
    interval: str
    buckets: list[dict[str, Any]]  # combined over cameras, every bucket of the range
    per_camera: dict[str, dict[str, Any]]  # camera -> totals
    dwell_s: list[float] = field(default_factory=list)  # one per person
    visitors: int = 0

    @property
    def totals(self) -> dict[str, Any]:
        return analytics.totals(self.buckets, self.visitors)


async def gather(ts: EmotionTimeSeries, cameras: Sequence[str] | None, start: float, end: float,
                 max_people: int, check: bool = True) -> ReportData:
    """The numbers behind a report of ``cameras`` (None: every camera with data); UnknownCamera for a camera
    without data unless ``check`` is off (a camera known otherwise: an empty report)."""
    from aggregator.export import ExportQuery

    if check or cameras is None:
        names = await check_cameras(ts, ExportQuery(None if cameras is None else tuple(cameras), start, end))
    else:
        names = list(cameras)
    interval = interval_for(end - start)
    raw, per_camera, dwell, visitors = [], {}, [], 0
    for cam in names:
        buckets = await ts.rollup(cam, interval, start, end)
        people = await ts.people(cam, since=start, until=end, limit=max_people + 1)
        if len(people) > max_people:
            raise ValueError(f"more than {max_people} people in this range (export.max_people): ask a shorter range")
        raw.append(buckets)
        visitors += len(people)
        dwell += [p.dwell_s for p in people]
        per_camera[cam] = analytics.totals([analytics.from_bucket(b) for b in buckets], len(people))
    combined = analytics.combine(raw)
    return ReportData(names, start, end, interval, combined, per_camera, dwell, visitors)


# ----- charts ---------------------------------------------------------------------------------------------------------


def _svg(fig, salt: str) -> str:
    """The figure as an inline ``<svg>`` element (ids salted per chart: several SVGs share one document)."""
    import matplotlib

    buf = io.StringIO()
    with matplotlib.rc_context({"svg.hashsalt": salt, "svg.fonttype": "none"}):
        fig.savefig(buf, format="svg", bbox_inches="tight")
    text = buf.getvalue()
    return text[text.index("<svg"):]


def _figure(height: float = 2.6):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9.5, height), dpi=100)
    ax = fig.add_subplot()
    ax.spines[["top", "right"]].set_visible(False)
    ax.grid(axis="y", color="#e2e8f0", linewidth=0.8)
    ax.set_axisbelow(True)
    return fig, ax


def _time_axis(ax, data: ReportData) -> list[float]:
    """x positions (bucket starts) and tick labels in UTC."""
    size = INTERVAL_S[data.interval]
    xs = [b["start"] for b in data.buckets]
    fmt = {"minute": "%H:%M", "hour": "%H:%M", "day": "%m-%d"}[data.interval]
    step = max(1, len(xs) // 12)
    ax.set_xticks(xs[::step], [datetime.fromtimestamp(x, UTC).strftime(fmt) for x in xs[::step]], fontsize=8)
    ax.set_xlim((xs[0] - size * 0.6, xs[-1] + size * 0.6) if xs else (data.start, data.end))
    return xs


def charts(data: ReportData) -> dict[str, str]:
    """Visitors, emotion mix, satisfaction per bucket, and the dwell-time histogram, as inline SVG."""
    from matplotlib.ticker import MaxNLocator

    size = INTERVAL_S[data.interval]
    out = {}
    fig, ax = _figure()
    xs = _time_axis(ax, data)
    ax.bar(xs, [b["unique_people"] for b in data.buckets], width=size * 0.8, color="#2563eb")
    ax.set_ylabel("visitors")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    out["visitors"] = _svg(fig, "visitors")

    fig, ax = _figure(3.0)
    xs = _time_axis(ax, data)
    bottom = [0.0] * len(xs)
    for e in EMOTIONS:
        share = [b["emotion_mix"][e] for b in data.buckets]
        ax.bar(xs, share, width=size * 0.8, bottom=bottom, color=COLOURS[e], label=e)
        bottom = [a + b for a, b in zip(bottom, share)]
    ax.set_ylim(0, 1)
    ax.set_ylabel("share of points")
    ax.legend(ncols=7, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.12), frameon=False)
    out["mix"] = _svg(fig, "mix")

    fig, ax = _figure()
    xs = _time_axis(ax, data)
    sat = [b["satisfaction"] for b in data.buckets]
    ax.bar([x for x, s in zip(xs, sat) if s is not None], [s for s in sat if s is not None], width=size * 0.8,
           color=["#16a34a" if s >= 0 else "#dc2626" for s in sat if s is not None])
    ax.axhline(0, color="#64748b", linewidth=0.8)
    ax.set_ylim(-1, 1)
    ax.set_ylabel("satisfaction")
    out["satisfaction"] = _svg(fig, "satisfaction")

    fig, ax = _figure()
    if data.dwell_s:
        ax.hist(data.dwell_s, bins=min(30, max(5, len(data.dwell_s) // 3)), color="#0891b2")
    ax.set_xlabel("dwell time per person (s)")
    ax.set_ylabel("people")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    out["dwell"] = _svg(fig, "dwell")
    return out


# ----- the page -------------------------------------------------------------------------------------------------------


def _fmt(value: float | None, pattern: str = "{:.2f}") -> str:
    return "–" if value is None else pattern.format(value)


def render(data: ReportData, title: str) -> str:
    """The report as one HTML document (every text escaped; no script)."""
    t = data.totals
    e = html.escape
    busiest = max(data.buckets, key=lambda b: b["unique_people"], default=None)
    busiest_text = "–" if not busiest or not busiest["unique_people"] else (
        f"{datetime.fromtimestamp(busiest['start'], UTC).strftime('%H:%M' if data.interval != 'day' else '%m-%d')}"
        f" ({busiest['unique_people']})")
    top = max(EMOTIONS, key=lambda em: t["emotion_points"][em]) if t["points"] else None
    kpis = [("visitors", str(data.visitors)), ("points", str(t["points"])),
            ("satisfaction (−1…1)", _fmt(t["satisfaction"])), ("mean dwell", _fmt(t["mean_dwell_s"], "{:.1f} s")),
            ("median dwell", _fmt(statistics.median(data.dwell_s) if data.dwell_s else None, "{:.1f} s")),
            (f"busiest {data.interval}", busiest_text),
            ("most shown emotion", f"{top} ({t['emotion_mix'][top]:.0%})" if top else "–")]
    svg = charts(data) if data.buckets else {}
    per = data.interval
    rows = "".join(
        f"<tr><td>{e(cam)}</td><td>{c['unique_people']}</td><td>{c['points']}</td><td>{_fmt(c['satisfaction'])}</td>"
        f"<td>{c['mean_dwell_s']:.1f} s</td></tr>" for cam, c in data.per_camera.items())
    parts = [
        f"<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{e(title)}</title>",
        f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><style>{STYLE}</style></head><body>",
        f"<h1>{e(title)}</h1>",
        f"<p class=\"muted\">{e(', '.join(data.cameras) or 'no camera')} · {iso(data.start)} to {iso(data.end)} (UTC)"
        f" · generated {iso(datetime.now(UTC).timestamp())} by DeepFER</p>",
        "<div class=\"kpis\" id=\"kpis\">" + "".join(f"<div><b>{e(v)}</b><span class=\"muted\">{e(k)}</span></div>"
                                                    for k, v in kpis) + "</div>",
    ]
    if not t["points"]:
        parts.append("<p id=\"empty\">No one was seen in this range.</p>")
    else:
        parts += [f"<h2>Visitors per {per}</h2><figure id=\"chart-visitors\">{svg['visitors']}</figure>",
                  f"<h2>Emotion mix per {per}</h2><figure id=\"chart-mix\">{svg['mix']}</figure>",
                  f"<h2>Satisfaction per {per}</h2><figure id=\"chart-satisfaction\">{svg['satisfaction']}</figure>",
                  f"<h2>Dwell time</h2><figure id=\"chart-dwell\">{svg['dwell']}</figure>"]
    if len(data.per_camera) > 1 or not t["points"]:
        parts.append("<h2>Cameras</h2><table id=\"cameras\"><tr><th>camera</th><th>visitors</th><th>points</th>"
                     f"<th>satisfaction</th><th>mean dwell</th></tr>{rows}</table>")
    parts.append("<p class=\"muted\">Satisfaction = (happy + surprise − angry − disgust − fear − sad) / all points; "
                 "a point is one person at one sampled moment. Visitors are unique people per camera.</p>")
    parts.append("</body></html>\n")
    return "".join(parts)


def title_for(cameras: Sequence[str] | None, start: float, end: float) -> str:
    who = "all cameras" if cameras is None else ", ".join(cameras)
    if end - start == 86400 and start % 86400 == 0:
        when = datetime.fromtimestamp(start, UTC).strftime("%Y-%m-%d")
    else:
        when = f"{iso(start)} – {iso(end)}"
    return f"DeepFER report: {who}, {when}"


async def report_html(ts: EmotionTimeSeries, cameras: Sequence[str] | None, start: float, end: float,
                      max_people: int, in_thread: bool = False, check: bool = True) -> str:
    """The report of [start, end) as HTML; ``in_thread`` draws the charts off the event loop."""
    data = await gather(ts, cameras, start, end, max_people, check)
    title = title_for(cameras, start, end)
    return await asyncio.to_thread(render, data, title) if in_thread else render(data, title)


@dataclass(frozen=True)
class ReportResult:
    path: Path
    bytes: int
    visitors: int
    points: int
    cameras: list[str]


def write_report(url: str, settings: Settings, cameras: Sequence[str] | None, start: float, end: float,
                 out: Path) -> ReportResult:
    """``deepfer report``: the report of [start, end) into ``out``."""
    out = Path(out)
    if not out.parent.is_dir():
        raise FileNotFoundError(f"folder not found: {out.parent}")

    async def run() -> ReportData:
        ts = EmotionTimeSeries.from_url(url, settings.redis)
        try:
            return await gather(ts, cameras, start, end, settings.export.max_people)
        finally:
            await ts.aclose()

    data = asyncio.run(run())
    text = render(data, title_for(cameras, start, end))
    out.write_text(text, encoding="utf-8")
    return ReportResult(out, len(text.encode()), data.visitors, data.totals["points"], data.cameras)
