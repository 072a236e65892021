"""Alerts kept in Redis (``{p}:alerts``, newest first, at most ``alerts.keep``, expiring ``redis.retention_days``
after the last one), for ``/api/alerts`` and the page: active ones and recent ones; and the rules added through the
API (``{p}:alert_rules``), which every events sink reads again every ``RULES_EVERY_S``."""

from __future__ import annotations

import json
from typing import Any

import redis
from redis import asyncio as aioredis

from aggregator.keys import KeySchema
from deepfer_core.settings import AlertRule, RedisSettings

RULES_EVERY_S = 5.0


class AlertLog:
    """The writer: blocking (the events sink calls it in a worker thread)."""

    def __init__(self, client: redis.Redis, settings: RedisSettings, keep: int):
        self.keys = KeySchema(settings.key_prefix)
        self.r, self.key, self.keep = client, self.keys.alerts(), keep
        self.retention_s = int(settings.retention_days * 86400)

    @classmethod
    def from_url(cls, url: str, settings: RedisSettings, keep: int) -> AlertLog:
        client = redis.Redis.from_url(url, decode_responses=True, socket_connect_timeout=settings.connect_timeout_s,
                                      socket_timeout=settings.connect_timeout_s + 4.0)
        return cls(client, settings, keep)

    def rules(self) -> list[AlertRule]:
        """The rules added through the API (an entry that no longer validates is skipped)."""
        return parse_rules(self.r.hgetall(self.keys.alert_rules()).values())

    def add(self, alert: dict[str, Any]) -> None:
        p = self.r.pipeline(transaction=True)
        p.lpush(self.key, json.dumps(alert, separators=(",", ":")))
        p.ltrim(self.key, 0, self.keep - 1)
        p.expire(self.key, self.retention_s)
        p.execute()


def parse_rules(raw: Any) -> list[AlertRule]:
    from pydantic import ValidationError

    out = []
    for text in raw:
        try:
            out.append(AlertRule.model_validate_json(text))
        except ValidationError:
            continue
    return sorted(out, key=lambda r: r.name)


async def api_rules(r: aioredis.Redis, prefix: str) -> list[AlertRule]:
    return parse_rules((await r.hgetall(KeySchema(prefix).alert_rules())).values())


async def save_rule(r: aioredis.Redis, prefix: str, rule: AlertRule) -> None:
    await r.hset(KeySchema(prefix).alert_rules(), rule.name, rule.model_dump_json())


async def delete_rule(r: aioredis.Redis, prefix: str, name: str) -> bool:
    return bool(await r.hdel(KeySchema(prefix).alert_rules(), name))


async def recent_alerts(r: aioredis.Redis, prefix: str, limit: int) -> list[dict[str, Any]]:
    """The newest ``limit`` alerts (entries that are not JSON objects are skipped)."""
    out = []
    for raw in await r.lrange(KeySchema(prefix).alerts(), 0, max(0, limit - 1)):
        try:
            alert = json.loads(raw)
        except ValueError:
            continue
        if isinstance(alert, dict):
            out.append(alert)
    return out


def active(alerts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Of alerts newest first, the rule-and-camera pairs whose latest word is ``firing``."""
    seen, out = set(), []
    for a in alerts:
        key = (a.get("rule"), a.get("camera"))
        if key in seen:
            continue
        seen.add(key)
        if a.get("state") == "firing":
            out.append(a)
    return out
