"""The customer 360: one parallel fan-out to the services, each part optional."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import quote

from services.gateway.downstream import Downstream, DownstreamResponse, DownstreamUnavailable
from services.gateway.schemas import Customer360
from shared.errors import NotFound
from shared.logging import get_logger

log = get_logger(__name__)


def segment_path(value: str) -> str:
    """A client-supplied id as one URL path segment (``../x`` must not reach another route)."""
    return quote(value, safe="")


def _first(source: dict[str, Any] | None, *names: str) -> Any:
    if not source:
        return None
    for name in names:
        if source.get(name) is not None:
            return source[name]
    return None


def _identities(profile: dict[str, Any] | None) -> Any:
    if not profile:
        return None
    if profile.get("identities") is not None:
        return profile["identities"]
    # The profile service shows the kinds of identifiers linked and the (decrypted) email and phone.
    return {
        "kinds": profile.get("identifier_kinds", []),
        "email": profile.get("email"),
        "phone": profile.get("phone"),
    }


def _canonical_id(result: DownstreamResponse | DownstreamUnavailable) -> str | None:
    if isinstance(result, DownstreamResponse) and result.status_code == 200 and isinstance(result.body, dict):
        value = result.body.get("id") or result.body.get("customer_id")
        return str(value) if value else None
    return None


def _sentiment(summary: Any, profile: dict[str, Any] | None) -> Any:
    """The sentiment service's summary (count, mean, latest texts' labels) and the profile's trend."""
    trend = _first(profile, "sentiment")
    if summary is None and trend is None:
        return None
    return {"summary": summary, "trend": trend}


async def _call(
    downstream: Downstream,
    path: str,
    route: str,
    timeout_s: float,
    request_id: str | None,
    params: Any = None,
) -> DownstreamResponse | DownstreamUnavailable:
    try:
        return await downstream.request(
            "GET", path, route=route, params=params, timeout_s=timeout_s, request_id=request_id
        )
    except DownstreamUnavailable as exc:
        return exc


def _body(result: DownstreamResponse | DownstreamUnavailable, degraded: list[str], name: str) -> Any:
    if isinstance(result, DownstreamUnavailable):
        degraded.append(name)
        return None
    if result.status_code >= 400:
        return None  # the service has nothing on this customer (e.g. 404): not an outage
    return result.body


async def customer_360(
    downstreams: dict[str, Downstream],
    customer_id: str,
    *,
    timeout_s: float,
    recommendations: int,
    request_id: str | None,
) -> Customer360:
    """Profile, recommendations, churn and sentiment fetched in parallel; a dead service leaves its part null."""

    def others(target: str) -> list[Any]:
        cid = segment_path(target)
        return [
            _call(
                downstreams["recsys"],
                f"/recommendations/{cid}",
                "/recommendations/{id}",
                timeout_s,
                request_id,
                {"k": recommendations},
            ),
            _call(downstreams["churn"], f"/churn/{cid}", "/churn/{id}", timeout_s, request_id),
            _call(
                downstreams["sentiment"],
                f"/customers/{cid}/sentiment",
                "/customers/{id}/sentiment",
                timeout_s,
                request_id,
                {"limit": 5},
            ),
        ]

    profile_call = _call(
        downstreams["profile"],
        f"/customers/{segment_path(customer_id)}",
        "/customers/{id}",
        timeout_s,
        request_id,
    )
    profile_r, recs_r, churn_r, sentiment_r = await asyncio.gather(profile_call, *others(customer_id))
    canonical = _canonical_id(profile_r)
    if canonical is not None and canonical != customer_id:
        # A merged-away id: the profile answered the survivor, so ask the others about the survivor too.
        recs_r, churn_r, sentiment_r = await asyncio.gather(*others(canonical))
    if isinstance(profile_r, DownstreamResponse) and profile_r.status_code == 404:
        raise NotFound(f"no customer {customer_id!r}")
    degraded: list[str] = []
    profile = _body(profile_r, degraded, "profile")
    recs = _body(recs_r, degraded, "recsys")
    churn = _body(churn_r, degraded, "churn")
    sentiment = _body(sentiment_r, degraded, "sentiment")
    profile = profile if isinstance(profile, dict) else None
    churn = churn if isinstance(churn, dict) else None
    if degraded:
        log.warning("c360_degraded", customer_id=customer_id, degraded=degraded)
    return Customer360(
        customer_id=str(_first(profile, "customer_id", "id") or customer_id),
        profile=profile,
        identities=_identities(profile),
        segments=_first(profile, "segments"),
        clv=_first(profile, "clv"),
        sentiment=_sentiment(sentiment, profile),
        recommendations=recs,
        churn=churn,
        next_best_action=_first(churn, "next_best_action", "next_best_actions"),
        degraded=degraded,
    )
