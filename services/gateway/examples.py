"""Examples the gateway's OpenAPI document shows, taken from a demo customer's real answers (a test checks
that each still validates against its model and has the shape the running fleet returns)."""

from __future__ import annotations

from typing import Any

C360_EXAMPLE: dict[str, Any] = {
    "customer_id": "cdnow-00158",
    "profile": {
        "id": "cdnow-00158",
        "status": "active",
        "merged_into": None,
        "first_seen": "2025-06-09T12:00:00Z",
        "last_seen": "2026-10-22T12:00:00Z",
        "traits": {},
        "email": None,
        "phone": None,
        "identifier_kinds": ["customer_id"],
        "aggregates": {
            "event_count": 14,
            "counts_by_type": {"purchase": 14},
            "counts_by_channel": {"store": 14},
            "orders": 14,
            "revenue": 493.46,
            "average_order_value": 35.247143,
            "first_order_at": "2025-06-09T12:00:00Z",
            "last_order_at": "2026-10-22T12:00:00Z",
            "rating_count": 0,
            "average_rating": None,
        },
        "rfm": {
            "recency_days": 43.2,
            "frequency": 14,
            "monetary": 493.46,
            "scores": "545",
            "cluster": "champions",
            "reason": None,
        },
        "sentiment": {"count": 0, "average": None, "recent": None, "trend": None, "last_label": None},
        "churn": {"band": "medium", "model_version": "events-20261204T200649-827a"},
        "clv": {
            "p_alive": 0.93,
            "expected_purchases": 4.1,
            "expected_value": 139.8,
            "horizon_days": 365,
            "model_version": "clv-20261204T201512-5d1e",
            "reason": None,
        },
        "consent": {},
        "segments": ["high value"],
        "version": 15,
        "updated_at": "2026-12-04T20:15:12Z",
    },
    "segments": ["high value"],
    "clv": {
        "p_alive": 0.93,
        "expected_purchases": 4.1,
        "expected_value": 139.8,
        "horizon_days": 365,
        "model_version": "clv-20261204T201512-5d1e",
        "reason": None,
    },
    "sentiment": {"customer_id": "cdnow-00158", "count": 0, "mean_score": None, "items": []},
    "recommendations": {
        "customer_id": "cdnow-00158",
        "model_version": "dlae-20261204T200904-464f5e",
        "strategy": "popularity",
        "history_size": 0,
        "items": [
            {
                "item_id": "movie-50",
                "name": "Star Wars (1977)",
                "categories": ["Action", "Adventure", "Romance", "Sci-Fi", "War"],
                "score": 1.0,
                "because": [],
                "because_weights": [],
                "because_items": [],
            }
        ],
    },
    "churn": {
        "customer_id": "cdnow-00158",
        "has_history": True,
        "probability": 0.46,
        "band": "medium",
        "trend": "steady",
        "reasons": [
            {
                "feature": "recency_days",
                "value": 43.2,
                "weight": 0.18,
                "text": "no activity for 43 days, +0.18",
            }
        ],
        "raw_score": -0.16,
        "base_value": -1.2,
        "other_weight": 0.86,
        "next_best_action": {
            "rule_id": "engage-medium",
            "rule_name": "Medium risk: engagement mail",
            "action": "engagement_mail",
            "priority": 20,
        },
        "actions_withheld": [],
        "value": 139.8,
        "value_source": "clv",
        "model_version": "events-20261204T200649-827a",
        "as_of": "2026-12-04T20:15:40+00:00",
    },
    "next_best_action": {
        "rule_id": "engage-medium",
        "rule_name": "Medium risk: engagement mail",
        "action": "engagement_mail",
        "priority": 20,
    },
    "degraded": [],
}
