"""Every Redis key and channel name DeepFER uses, in one place.

Key schema (``{p}`` is ``redis.key_prefix``, times are unix seconds, buckets in UTC):

=====================================================  ======  ==============================================
key                                                    type    content
=====================================================  ======  ==============================================
``{p}:cameras``                                        ZSET    camera id -> last seen
``{p}:cam:{camera}:people``                            ZSET    person id -> last seen
``{p}:cam:{camera}:person:{person}``                   HASH    track_id, visitor, first_seen, last_seen, label,
                                                               confidence, p (smoothed, 7 numbers), points,
                                                               dwell_s, n:{emotion} (points per shown label)
``{p}:cam:{camera}:visitors``                          STRING  the camera's last visitor number (INCR, across
                                                               runs; a person's ``visitor`` is taken from it)
``{p}:cam:{camera}:person:{person}:series``            STREAM  id ``<ms>-<n>`` = capture time; fields label,
                                                               raw_label, conf, p (smoothed), r (raw)
``{p}:cam:{camera}:{minute|hour|day}:{start}``         HASH    points, n:{emotion}, dwell_s
``{p}:cam:{camera}:{minute|hour|day}:{start}:people``  SET     person ids seen in that bucket
``{p}:applied:{run}``                                  STRING  last point sequence number written by a run
``{p}:events:{camera}``                                PUBSUB  one JSON message per processed frame
``{p}:preview:{camera}``                               STRING  cluster mode: the latest annotated JPEG
``{p}:preview:{camera}:wanted``                        STRING  cluster mode: someone watches the preview
``{p}:alerts``                                         LIST    alert JSON (firing / cleared), newest first
``{p}:alert_rules``                                    HASH    rule name -> rule JSON (added through the API)
=====================================================  ======  ==============================================
"""

from __future__ import annotations


class KeySchema:
    """The key and channel names under one ``redis.key_prefix``."""

    def __init__(self, prefix: str):
        self.p = prefix

    def cameras(self) -> str:
        return f"{self.p}:cameras"

    def people(self, camera: str) -> str:
        return f"{self.p}:cam:{camera}:people"

    def person(self, camera: str, person: str) -> str:
        return f"{self.p}:cam:{camera}:person:{person}"

    def visitors(self, camera: str) -> str:
        """The camera's visitor counter: every new person takes the next number, whatever run wrote them."""
        return f"{self.p}:cam:{camera}:visitors"

    def series(self, camera: str, person: str) -> str:
        return f"{self.p}:cam:{camera}:person:{person}:series"

    def rollup(self, camera: str, interval: str, start: int) -> str:
        return f"{self.p}:cam:{camera}:{interval}:{start}"

    def rollup_people(self, camera: str, interval: str, start: int) -> str:
        return f"{self.rollup(camera, interval, start)}:people"

    def applied(self, run_id: str) -> str:
        return f"{self.p}:applied:{run_id}"

    def events(self, camera: str) -> str:
        return f"{self.p}:events:{camera}"

    def alerts(self) -> str:
        """Alerts of the rules (``aggregator.alert_log``), newest first, at most ``alerts.keep``."""
        return f"{self.p}:alerts"

    def alert_rules(self) -> str:
        """Alert rules added through the API (``[[alerts.rules]]`` of the config come on top)."""
        return f"{self.p}:alert_rules"

    def preview(self, camera: str) -> str:
        """Cluster mode: a camera's latest annotated JPEG, put by its worker, short-lived."""
        return f"{self.p}:preview:{camera}"

    def preview_wanted(self, camera: str) -> str:
        """Cluster mode: set by the dashboard while someone watches the camera's preview."""
        return f"{self.p}:preview:{camera}:wanted"
