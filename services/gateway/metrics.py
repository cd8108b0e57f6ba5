"""Gateway metrics beyond the per-route HTTP metrics of shared.app: downstream calls, breakers, ingest."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

DOWNSTREAM_SECONDS = Histogram(
    "crm_gateway_downstream_seconds",
    "Latency of calls to the services behind the gateway.",
    ["downstream", "route", "outcome"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
DOWNSTREAM_CALLS = Counter(
    "crm_gateway_downstream_calls_total",
    "Calls to downstream services by outcome.",
    ["downstream", "outcome"],
)
BREAKER_OPEN = Gauge(
    "crm_gateway_breaker_open", "1 while the downstream's circuit breaker is open.", ["downstream"]
)
EVENTS_ACCEPTED = Counter("crm_gateway_events_accepted_total", "Events acknowledged by the broker.", ["type"])
EVENTS_REJECTED = Counter("crm_gateway_events_rejected_total", "Events refused as invalid.")
INGEST_UNAVAILABLE = Counter("crm_gateway_ingest_unavailable_total", "Ingest requests answered 503.")
WEBHOOK_ATTEMPTS = Counter("crm_gateway_webhook_attempts_total", "Webhook delivery attempts.", ["outcome"])
C360_CACHE = Counter(
    "crm_gateway_c360_cache_total",
    "Customer 360 reads by cache outcome: hit, miss, or bypass (the invalidation stream is not live).",
    ["outcome"],
)
C360_REFRESHES = Counter(
    "crm_gateway_c360_cache_refreshes_total",
    "Background fan-outs that refresh a cached 360 older than the cache's TTL.",
)
