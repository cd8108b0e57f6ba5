"""Prometheus metrics shared by the fleet: HTTP by route template, Kafka consumers, model latency."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

HTTP_REQUESTS = Counter(
    "crm_http_requests_total", "HTTP requests answered.", ["service", "method", "route", "status"]
)
HTTP_LATENCY = Histogram(
    "crm_http_request_seconds",
    "HTTP request latency by route template.",
    ["service", "method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
EVENTS_CONSUMED = Counter(
    "crm_events_consumed_total", "Events handled successfully.", ["group", "topic", "type"]
)
EVENTS_DUPLICATE = Counter(
    "crm_events_duplicate_total", "Events skipped because their id was already processed.", ["group", "topic"]
)
EVENTS_FAILED = Counter(
    "crm_events_failed_total",
    "Handler attempts that raised (before retry or dead-letter).",
    ["group", "topic"],
)
EVENTS_DEAD_LETTERED = Counter(
    "crm_events_dead_lettered_total", "Events sent to a dead-letter topic.", ["group", "topic", "reason"]
)
EVENTS_PUBLISHED = Counter("crm_events_published_total", "Events published.", ["topic"])
HANDLER_SECONDS = Histogram(
    "crm_event_handler_seconds",
    "Seconds a handler took per batch.",
    ["group", "topic"],
    buckets=(0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
CONSUMER_LAG = Gauge(
    "crm_consumer_lag", "Messages behind the partition's high watermark.", ["group", "topic", "partition"]
)
MODEL_SECONDS = Histogram(
    "crm_model_inference_seconds",
    "Model inference latency per call.",
    ["service", "model"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
