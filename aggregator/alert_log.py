"""Alerts kept in Redis (``{p}:alerts``, newest first, at most ``alerts.keep``, expiring ``redis.retention_days``
after the last one), for ``/api/alerts`` and the page: active ones and recent ones."""

from __future__ import annotations

import json
from typing import Any

import redis
from redis import asyncio as aioredis

from aggregator.keys import KeySchema
from core.settings import RedisSettings


class AlertLog:
    """The writer: blocking (the events sink calls it in a worker thread)."""

    def __init__(self, client: redis.Redis, settings: RedisSettings, keep: int):
        self.r, self.key, self.keep = client, KeySchema(settings.key_prefix).alerts(), keep
        self.retention_s = int(settings.retention_days * 86400)

    @classmethod
    def from_url(cls, url: str, settings: RedisSettings, keep: int) -> AlertLog:
        client = redis.Redis.from_url(url, decode_responses=True, socket_connect_timeout=settings.connect_timeout_s,
                                      socket_timeout=settings.connect_timeout_s + 4.0)
        return cls(client, settings, keep)

    def add(self, alert: dict[str, Any]) -> None:
        p = self.r.pipeline(transaction=True)
        p.lpush(self.key, json.dumps(alert, separators=(",", ":")))
        p.ltrim(self.key, 0, self.keep - 1)
        p.expire(self.key, self.retention_s)
        p.execute()


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
