"""The customer 360: one parallel fan-out to the services, each part optional."""

from __future__ import annotations

import asyncio
import time
from typing import Any, TypeVar
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, ValidationError

from services.gateway.customer_cache import Customer360Cache
from services.gateway.downstream import Downstream, DownstreamResponse, DownstreamUnavailable
from services.gateway.metrics import C360_REFRESHES
from services.gateway.schemas import Customer360, FleetModels
from shared.contracts.http.churn import ChurnScore
from shared.contracts.http.churn import ModelInfo as ChurnModelInfo
from shared.contracts.http.profile import CustomerProfile
from shared.contracts.http.recsys import ModelsOut, RecommendationsOut
from shared.contracts.http.sentiment import CustomerSentiment, ModelsResponse
from shared.errors import NotFound
from shared.logging import get_logger

log = get_logger(__name__)

Part = TypeVar("Part", bound=BaseModel)


def segment_path(value: str) -> str:
    """A client-supplied id as one URL path segment (``../x`` must not reach another route)."""
    return quote(value, safe="")


def _canonical_id(result: DownstreamResponse | DownstreamUnavailable) -> str | None:
    if isinstance(result, DownstreamResponse) and result.status_code == 200 and isinstance(result.body, dict):
        value = result.body.get("id")
        return str(value) if value else None
    return None


async def canonical_customer_id(
    downstreams: dict[str, Downstream], customer_id: str, *, timeout_s: float, request_id: str | None
) -> str:
    """The canonical id the profile service resolves ``customer_id`` to (a canonical id, a merged-away id
    or a source system's ``customer_id``), so every service is asked about the same customer.

    Raises NotFound when the profile service knows no such customer and DownstreamUnavailable when it
    cannot say: answering for an unresolved id would be answering for the wrong customer.
    """
    answer = await downstreams["profile"].request(
        "GET",
        f"/customers/{segment_path(customer_id)}/canonical",
        route="/customers/{id}/canonical",
        timeout_s=timeout_s,
        request_id=request_id,
    )
    if answer.status_code == 404:
        raise NotFound(f"no customer {customer_id!r}")
    if answer.status_code != 200 or not isinstance(answer.body, dict) or not answer.body.get("customer_id"):
        raise DownstreamUnavailable(
            "profile", f"could not resolve the customer (answered {answer.status_code})"
        )
    return str(answer.body["customer_id"])


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


def _part(
    result: DownstreamResponse | DownstreamUnavailable, model: type[Part], degraded: list[str], name: str
) -> Part | None:
    """The service's answer read with its contract model; None (and named in ``degraded`` unless the
    service simply has nothing on the customer) when there is no usable answer."""
    if isinstance(result, DownstreamUnavailable) or result.status_code >= 500:
        degraded.append(name)  # down, or failed on this customer: the part is missing
        return None
    if result.status_code >= 400:
        return None  # the service has nothing on this customer (e.g. 404): not an outage
    try:
        return model.model_validate(result.body)
    except ValidationError as exc:
        # The service broke its contract (shared/contracts/http): a bug to fix, shown as a missing part.
        log.error("contract_violated", downstream=name, model=model.__name__, errors=exc.error_count())
        degraded.append(name)
        return None


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
    profile = _part(profile_r, CustomerProfile, degraded, "profile")
    churn = _part(churn_r, ChurnScore, degraded, "churn")
    answer = Customer360(
        customer_id=profile.id if profile else customer_id,
        profile=profile,
        segments=profile.segments if profile else None,
        clv=profile.clv if profile else None,
        sentiment=_part(sentiment_r, CustomerSentiment, degraded, "sentiment"),
        recommendations=_part(recs_r, RecommendationsOut, degraded, "recsys"),
        churn=churn,
        next_best_action=churn.next_best_action if churn else None,
        degraded=degraded,
    )
    if answer.degraded:
        log.warning("c360_degraded", customer_id=customer_id, degraded=answer.degraded)
    return answer


class _ProfileModels(BaseModel):
    """The profile's /models answer: free-form model metadata (CLV parameters, cluster centroids)."""

    model_config = ConfigDict(extra="allow")


async def fleet_models(
    downstreams: dict[str, Downstream], *, timeout_s: float, request_id: str | None
) -> FleetModels:
    """Every service's models, asked in parallel; a service that does not answer is named in ``degraded``."""
    recsys, sentiment, churn, profile = await asyncio.gather(
        _call(downstreams["recsys"], "/models", "/models", timeout_s, request_id),
        _call(downstreams["sentiment"], "/sentiment/models", "/sentiment/models", timeout_s, request_id),
        _call(downstreams["churn"], "/churn/model", "/churn/model", timeout_s, request_id),
        _call(downstreams["profile"], "/models", "/models", timeout_s, request_id),
    )
    degraded: list[str] = []
    profile_models = _part(profile, _ProfileModels, degraded, "profile")
    return FleetModels(
        recsys=_part(recsys, ModelsOut, degraded, "recsys"),
        sentiment=_part(sentiment, ModelsResponse, degraded, "sentiment"),
        churn=_part(churn, ChurnModelInfo, degraded, "churn"),
        profile=profile_models.model_dump() if profile_models is not None else None,
        degraded=degraded,
    )


class Customer360Reader:
    """Reads 360s through the cache (``services.gateway.customer_cache``) when it is usable: a hit from
    memory; concurrent misses of one customer share one fan-out; an entry older than the cache's TTL is
    served while one background fan-out refreshes it. Without the cache every read fans out."""

    def __init__(
        self,
        downstreams: dict[str, Downstream],
        cache: Customer360Cache | None,
        *,
        timeout_s: float,
        recommendations: int,
    ) -> None:
        self.downstreams = downstreams
        self.cache = cache
        self.timeout_s = timeout_s
        self.recommendations = recommendations

    def _usable_cache(self) -> Customer360Cache | None:
        # While a service is known to be down (its breaker is open) every read fans out, so that answers
        # name what is missing instead of repeating what was cached before the outage.
        if self.cache is None or any(d.breaker.opened_at is not None for d in self.downstreams.values()):
            return None
        return self.cache

    def cached(self, customer_id: str) -> bytes | None:
        """The cached answer (not counted), scheduling its refresh when it is stale. On the event loop."""
        cache = self._usable_cache()
        if cache is None:
            return None
        found = cache.lookup(customer_id)
        if found is None:
            return None
        body, stale = found
        if stale and customer_id not in cache.in_flight:
            C360_REFRESHES.inc()
            self._start_fill(customer_id, None)
        return body

    async def read(self, customer_id: str, request_id: str | None) -> bytes:
        """The 360 as JSON bytes; raises NotFound when the profile service does not know the customer."""
        cache = self._usable_cache()
        if cache is None or not cache.live:
            if self.cache is not None:
                self.cache.count("bypass")
            return (await self._fetch(customer_id, request_id))[0]
        body = self.cached(customer_id)
        if body is not None:
            cache.count("hit")
            return body
        cache.count("miss")
        task = cache.in_flight.get(customer_id) or self._start_fill(customer_id, request_id)
        # Shielded: a reader that goes away must not cancel the fan-out the others wait for.
        return await asyncio.shield(task)

    def _start_fill(self, customer_id: str, request_id: str | None) -> asyncio.Task[bytes]:
        assert self.cache is not None
        task = asyncio.get_running_loop().create_task(self._fill(customer_id, request_id))
        self.cache.in_flight[customer_id] = task
        task.add_done_callback(lambda t: self._fill_done(customer_id, t))
        return task

    def _fill_done(self, customer_id: str, task: asyncio.Task[bytes]) -> None:
        assert self.cache is not None
        if self.cache.in_flight.get(customer_id) is task:
            del self.cache.in_flight[customer_id]
        if not task.cancelled():
            task.exception()  # retrieved here: a background refresh has no reader to raise it to

    async def _fill(self, customer_id: str, request_id: str | None) -> bytes:
        assert self.cache is not None
        started = time.monotonic()
        try:
            body, complete = await self._fetch(customer_id, request_id)
        except NotFound:
            self.cache.drop(customer_id)
            raise
        if complete:
            self.cache.put(customer_id, body, started)
        else:
            self.cache.drop(customer_id)
        return body

    async def _fetch(self, customer_id: str, request_id: str | None) -> tuple[bytes, bool]:
        """The fan-out's answer and whether it may be cached (nothing degraded, not a merged-away id)."""
        answer = await customer_360(
            self.downstreams,
            customer_id,
            timeout_s=self.timeout_s,
            recommendations=self.recommendations,
            request_id=request_id,
        )
        complete = not answer.degraded and answer.customer_id == customer_id
        return answer.model_dump_json().encode(), complete
