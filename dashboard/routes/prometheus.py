"""``GET /metrics``: Prometheus text format, per camera and for the Redis writer, read live at each scrape."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Response
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from dashboard.deps import get_service
from dashboard.service import Service
from streamer.publish.sink import EventsSink

router = APIRouter(tags=["metrics"])


class PipelineCollector:
    def __init__(self, service: Service):
        self.service = service

    def collect(self):
        s = self.service
        runs = {c: s.runner.state(c) for c in s.cameras} if s.runner else {}
        up = GaugeMetricFamily(
            "deepfer_camera_up", "1 when the camera's source is connected or playing", labels=["camera"]
        )
        fps = GaugeMetricFamily("deepfer_camera_fps", "Processed frames per second (recent window)", labels=["camera"])
        faces = GaugeMetricFamily(
            "deepfer_camera_faces", "Faces in the camera's latest processed frame", labels=["camera"]
        )
        p50 = GaugeMetricFamily(
            "deepfer_camera_latency_p50_seconds", "Capture to result latency, median", labels=["camera"]
        )
        p95 = GaugeMetricFamily(
            "deepfer_camera_latency_p95_seconds", "Capture to result latency, 95th percentile", labels=["camera"]
        )
        processed = CounterMetricFamily("deepfer_camera_frames_processed", "Frames analysed", labels=["camera"])
        dropped = CounterMetricFamily(
            "deepfer_camera_frames_dropped", "Live frames dropped while behind", labels=["camera"]
        )
        failed = CounterMetricFamily("deepfer_camera_frames_failed", "Frames whose analysis failed", labels=["camera"])
        total_faces = CounterMetricFamily(
            "deepfer_camera_faces_seen", "Face results over all processed frames", labels=["camera"]
        )
        where = GaugeMetricFamily("deepfer_camera_worker", "Cluster mode: 1 for the worker and node analysing the "
                                                           "camera",
                                  labels=["camera", "worker", "node"])
        for cid, run in runs.items():
            st = run.stats
            up.add_metric([cid], 1.0 if st is not None and st.status in ("connected", "running", "starting") else 0.0)
            if run.worker is not None:
                where.add_metric([cid, run.worker, run.node or ""], 1.0)
            if st is None:
                continue
            fps.add_metric([cid], st.recent_fps)
            faces.add_metric([cid], run.faces_now or 0)
            if st.latency_p50_ms is not None:
                p50.add_metric([cid], st.latency_p50_ms / 1000)
                p95.add_metric([cid], st.latency_p95_ms / 1000)
            processed.add_metric([cid], st.frames_processed)
            dropped.add_metric([cid], st.frames_dropped)
            failed.add_metric([cid], st.frames_failed)
            total_faces.add_metric([cid], st.faces)
        yield from (up, fps, faces, p50, p95, processed, dropped, failed, total_faces)
        workers = s.runner.workers() if s.runner else []
        if s.runner is not None and s.runner.mode == "cluster":
            yield where
            ready = GaugeMetricFamily(
                "deepfer_worker_up", "Cluster worker: 1 ready, 0 starting", labels=["worker", "node"]
            )
            room = GaugeMetricFamily("deepfer_worker_cameras", "Cameras on the worker", labels=["worker", "node"])
            depth = GaugeMetricFamily(
                "deepfer_worker_redis_buffer_depth", "Worker's points not yet in Redis", labels=["worker", "node"]
            )
            written = CounterMetricFamily(
                "deepfer_worker_redis_points_written", "Points the worker wrote to Redis", labels=["worker", "node"]
            )
            errors = CounterMetricFamily(
                "deepfer_worker_redis_write_errors", "Worker's failed Redis write attempts", labels=["worker", "node"]
            )
            for w in workers:
                labels = [w["name"], w["node"]]
                ready.add_metric(labels, 1.0 if w["state"] == "ready" else 0.0)
                room.add_metric(labels, len(w["cameras"]))
                if w["redis"]:
                    depth.add_metric(labels, w["redis"]["buffered"])
                    written.add_metric(labels, w["redis"]["written"])
                    errors.add_metric(labels, w["redis"].get("write_errors", 0))
            yield from (ready, room, depth, written, errors)
        sink = s.redis_sink
        if sink is not None:
            yield GaugeMetricFamily(
                "deepfer_redis_buffer_depth",
                "Points produced but not yet in Redis (memory + journal)",
                value=sink.buffer_depth,
            )
            yield GaugeMetricFamily(
                "deepfer_redis_connected", "1 when the Redis writer is connected", value=float(sink.connected)
            )
            yield CounterMetricFamily("deepfer_redis_points_written", "Points written to Redis", value=sink.written)
            yield CounterMetricFamily("deepfer_redis_write_errors", "Failed Redis write attempts (down or refusing)",
                                      value=sink.write_errors)
            yield GaugeMetricFamily("deepfer_redis_write_refused", "1 while Redis answers but refuses writes (full, "
                                    "read-only)", value=float(sink.refusing is not None))
            if sink.last_error is not None:  # the reason as a label: one series, replaced when it changes
                last = GaugeMetricFamily("deepfer_redis_last_error_timestamp_seconds", "When the last Redis write "
                                         "failed, and why", labels=["error"])
                last.add_metric([sink.last_error], sink.last_error_at or 0.0)
                yield last
        if s.events is not None:
            yield from events_metrics(s.events)
        if s.webrtc is not None:  # per-visitor camera ids are not labels (unbounded); the session count is
            yield GaugeMetricFamily(
                "deepfer_webrtc_sessions", "WebRTC visitors connected now", value=len(s.webrtc.sessions)
            )


def events_metrics(events: EventsSink):
    """Events out (``streamer.publish``): payloads made by type, per publisher sent / dropped / queued, alerts."""
    made = CounterMetricFamily("deepfer_events", "Event payloads made (enter, leave, state, alert, stats)",
                               labels=["type"])
    for kind, n in sorted(events.sent.items()):
        made.add_metric([kind], n)
    published = CounterMetricFamily("deepfer_events_published", "Payloads the broker acknowledged or a webhook "
                                                                "receiver took (2xx)", labels=["publisher"])
    dropped = CounterMetricFamily("deepfer_events_dropped", "Payloads dropped: queue full, or over 64 KB",
                                  labels=["publisher"])
    depth = GaugeMetricFamily("deepfer_events_queue_depth", "Payloads waiting for the broker or a receiver",
                              labels=["publisher"])
    failures = CounterMetricFamily("deepfer_webhook_failures", "Webhook payloads given up (4xx, refused address, "
                                                               "webhooks.max_attempts)")
    retries = CounterMetricFamily("deepfer_webhook_retries", "Webhook attempts that will be retried")
    for p in events.publishers:
        c = p.counters()
        published.add_metric([p.name], c.get("published", c.get("delivered", 0)))
        dropped.add_metric([p.name], c.get("dropped", 0) + c.get("too_large", 0))
        depth.add_metric([p.name], c.get("queued", 0))
        if p.name == "webhooks":
            failures.add_metric([], c["failed"])
            retries.add_metric([], c["retries"])
        if p.name == "mqtt":
            yield GaugeMetricFamily("deepfer_mqtt_connected", "1 when connected to the MQTT broker",
                                    value=c["connected"])
    yield from (made, published, dropped, depth, failures, retries)
    yield GaugeMetricFamily("deepfer_alerts_firing", "Alert rules firing now (rule and camera pairs)",
                            value=len(events.engine.firing()))


def registry_for(service: Service) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(PipelineCollector(service))
    return registry


@router.get(
    "/metrics", summary="Prometheus metrics", response_class=Response, responses={200: {"content": {"text/plain": {}}}}
)
async def prometheus_metrics(service: Service = Depends(get_service)) -> Response:
    registry = getattr(service, "prometheus", None)
    if registry is None:
        registry = service.prometheus = registry_for(service)
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
