"""``GET /api/alerts``: the alert rules' firing and cleared alerts kept in Redis (``aggregator.alert_log``), active
and recent, each with a link to its camera's per-minute chart around that moment; ``/api/alerts/rules``: the rules,
those of the config and those added here (kept in Redis, read by every pipeline within a few seconds)."""

from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Response
from pydantic import BaseModel

from aggregator.alert_log import active, api_rules, delete_rule, recent_alerts, save_rule
from dashboard.deps import get_service
from dashboard.service import Service
from deepfer_core.settings import AlertRule

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
    page: str  # the dashboard page at that camera and moment: its charts over the same window


class Alerts(BaseModel):
    active: list[AlertOut]
    recent: list[AlertOut]
    rules: list[str]


def _out(a: dict) -> AlertOut | None:
    try:
        at = float(a["at"])
        chart = (f"/api/cameras/{quote(str(a['camera']), safe='')}/metrics?interval=minute"
                 f"&start={int(at) - 1800}&end={int(at) + 600}")
        page = f"/?camera={quote(str(a['camera']), safe='')}&at={int(at)}"
        return AlertOut(**{k: a[k] for k in ("state", "rule", "kind", "camera", "value", "threshold", "since")},
                        at=at, chart=chart, page=page)
    except (KeyError, TypeError, ValueError):
        return None  # an entry written by something else: skipped


@router.get("/api/alerts", summary="Alerts: active (firing now) and recent (newest first)")
async def alerts(limit: int = Query(100, ge=1, le=1000), service: Service = Depends(get_service)) -> Alerts:
    s = service.settings
    found = await recent_alerts(service.ts.r, s.redis.key_prefix, min(limit, s.alerts.keep))
    recent = [o for o in map(_out, found) if o is not None]
    firing = [o for o in map(_out, active(found)) if o is not None]
    added = await api_rules(service.ts.r, s.redis.key_prefix) if s.alerts.api_rules else []
    return Alerts(active=firing, recent=recent, rules=[r.name for r in [*s.alerts.rules, *added]])


class Rules(BaseModel):
    config: list[AlertRule]  # [[alerts.rules]]: changed in config.toml only
    api: list[AlertRule]  # added here


RULE_NAME = r"^[A-Za-z0-9_-]{1,64}$"


@router.get("/api/alerts/rules", summary="Alert rules: those of the config and those added through the API")
async def rules(service: Service = Depends(get_service)) -> Rules:
    s = service.settings
    return Rules(config=s.alerts.rules, api=await api_rules(service.ts.r, s.redis.key_prefix))


def _editable(service: Service, name: str) -> None:
    if not service.settings.alerts.api_rules:
        raise HTTPException(409, "alert rules through the API are off (alerts.api_rules)")
    if any(r.name == name for r in service.settings.alerts.rules):
        raise HTTPException(409, f"rule {name!r} is in the config file; change it there")


@router.put("/api/alerts/rules/{name}", summary="Add or replace an alert rule (applies within a few seconds)",
            status_code=200)
async def put_rule(rule: AlertRule, name: str = Path(..., pattern=RULE_NAME),
                   service: Service = Depends(get_service)) -> AlertRule:
    _editable(service, name)
    if rule.name != name:
        raise HTTPException(400, f"the rule's name ({rule.name!r}) differs from the path's ({name!r})")
    s = service.settings
    known = {r.name for r in await api_rules(service.ts.r, s.redis.key_prefix)}
    if name not in known and len(known) >= s.alerts.max_api_rules:
        raise HTTPException(409, f"at most {s.alerts.max_api_rules} rules through the API (alerts.max_api_rules)")
    await save_rule(service.ts.r, s.redis.key_prefix, rule)
    return rule


@router.delete("/api/alerts/rules/{name}", summary="Remove an alert rule added through the API", status_code=204)
async def remove_rule(name: str = Path(..., pattern=RULE_NAME), service: Service = Depends(get_service)) -> Response:
    _editable(service, name)
    if not await delete_rule(service.ts.r, service.settings.redis.key_prefix, name):
        raise HTTPException(404, f"no rule {name!r} added through the API")
    return Response(status_code=204)
