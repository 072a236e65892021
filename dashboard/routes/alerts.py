"""``GET /api/alerts``: the alert rules' firing and cleared alerts kept in Redis (``aggregator.alert_log``), active
and recent, each with a link to its camera's per-minute chart around that moment."""

from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel

from aggregator.alert_log import active, recent_alerts
from dashboard.deps import get_service
from dashboard.service import Service

router = APIRouter(tags=["alerts"])


class AlertOut(BaseModel):
    state: str
    rule: str
    kind: str
    camera: str
    value: float
    threshold: float
    at: float
    since: float
    chart: str  # the camera's per-minute metrics from 30 min before to 10 min after the alert


class Alerts(BaseModel):
    active: list[AlertOut]
    recent: list[AlertOut]
    rules: list[str]


def _out(a: dict) -> AlertOut | None:
    try:
        at = float(a["at"])
        chart = (f"/api/cameras/{quote(str(a['camera']), safe='')}/metrics?interval=minute"
                 f"&start={int(at) - 1800}&end={int(at) + 600}")
        return AlertOut(**{k: a[k] for k in ("state", "rule", "kind", "camera", "value", "threshold", "since")},
                        at=at, chart=chart)
    except (KeyError, TypeError, ValueError):
        return None  # an entry written by something else: skipped


@router.get("/api/alerts", summary="Alerts: active (firing now) and recent (newest first)")
async def alerts(limit: int = Query(100, ge=1, le=1000), service: Service = Depends(get_service)) -> Alerts:
    s = service.settings
    found = await recent_alerts(service.ts.r, s.redis.key_prefix, min(limit, s.alerts.keep))
    recent = [o for o in map(_out, found) if o is not None]
    firing = [o for o in map(_out, active(found)) if o is not None]
    return Alerts(active=firing, recent=recent, rules=[r.name for r in s.alerts.rules])
