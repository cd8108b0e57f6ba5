"""HTTP routes of the recsys service: parse, call the service off the event loop, shape the answer."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Body, Depends, Path, Query, Request
from starlette.concurrency import run_in_threadpool

from services.recsys.schemas import (
    BecauseItemOut,
    ItemOut,
    ItemsOut,
    ModelsOut,
    RecommendationsOut,
    RecommendedItemOut,
    SessionRequest,
    TrainRequest,
    TrainResponse,
)
from services.recsys.service import ItemInfo, Recommendations, RecsysService, TrainingInProgress

router = APIRouter()

Identifier = Annotated[str, Path(min_length=1, max_length=200)]
K = Annotated[int, Query(ge=1, le=200, description="How many items.")]


def get_service(request: Request) -> RecsysService:
    service: RecsysService = request.app.state.recsys_service
    return service


ServiceDep = Annotated[RecsysService, Depends(get_service)]


def _out(result: Recommendations, customer_id: str | None = None) -> RecommendationsOut:
    return RecommendationsOut(
        customer_id=customer_id,
        model_version=result.model_version,
        strategy=result.strategy,
        history_size=result.history_size,
        items=[
            RecommendedItemOut(
                item_id=item.item_id,
                name=item.name,
                categories=item.categories,
                score=item.score,
                because=item.because,
                because_weights=item.because_weights,
                because_items=[
                    BecauseItemOut(item_id=b, name=n, weight=w)
                    for b, n, w in zip(
                        item.because,
                        item.because_names or [None] * len(item.because),
                        item.because_weights,
                        strict=True,
                    )
                ],
            )
            for item in result.items
        ],
    )


def _item_out(info: ItemInfo) -> ItemOut:
    entry = info.catalog
    return ItemOut(
        item_id=info.item_id,
        name=entry.name if entry else None,
        categories=list(entry.categories) if entry else [],
        attributes=entry.attributes if entry else {},
        updated_at=datetime.fromtimestamp(entry.event_time, UTC) if entry else None,
        interactions=info.interactions,
        in_model=info.in_model,
    )


@router.get("/recommendations/{customer_id}", tags=["recommendations"])
async def recommendations_for_customer(
    customer_id: Identifier,
    service: ServiceDep,
    k: K = 10,
    exclude_interacted: Annotated[
        bool, Query(description="Leave out items the customer interacted with.")
    ] = True,
) -> RecommendationsOut:
    """Top-k items for a customer with the items that explain each; popularity for unknown customers."""
    result = await run_in_threadpool(service.recommend_for_customer, customer_id, k, exclude_interacted)
    return _out(result, customer_id)


@router.post("/recommendations/session", tags=["recommendations"])
async def recommendations_for_session(body: SessionRequest, service: ServiceDep) -> RecommendationsOut:
    """Top-k items for an anonymous visitor from the items of their session."""
    result = await run_in_threadpool(service.recommend_for_session, body.item_ids, body.k)
    return _out(result)


@router.get("/items", tags=["items"])
async def items_by_id(
    service: ServiceDep,
    item_id: Annotated[
        list[str], Query(min_length=1, max_length=500, description="Item ids (repeat the parameter).")
    ],
) -> ItemsOut:
    """Several items at once (names for a timeline or a cart); unknown ids are left out."""
    return ItemsOut(items=[_item_out(info) for info in service.items(item_id)])


@router.get("/items/{item_id}", tags=["items"])
async def item_by_id(item_id: Identifier, service: ServiceDep) -> ItemOut:
    """An item's catalog entry (name, categories, attributes), its interactions and whether the model has it."""
    return _item_out(service.item(item_id))


@router.get("/items/{item_id}/similar", tags=["recommendations"])
async def similar_items(item_id: Identifier, service: ServiceDep, k: K = 10) -> RecommendationsOut:
    """Items most recommended to someone who interacted with this item."""
    result = await run_in_threadpool(service.similar_items, item_id, k)
    return _out(result)


@router.post("/models/train", tags=["models"], status_code=202)
async def train_model(
    service: ServiceDep, body: Annotated[TrainRequest | None, Body()] = None
) -> TrainResponse:
    """Train a new model version on every interaction seen so far, off the request path."""
    if body is not None and body.wait:
        meta = await run_in_threadpool(service.train)
        return TrainResponse(status="trained", serving=service.model_version, model=meta)
    if not service.train_in_background():
        raise TrainingInProgress("a training run is already in progress")
    return TrainResponse(status="started", serving=service.model_version)


@router.get("/models", tags=["models"])
async def list_models(service: ServiceDep) -> ModelsOut:
    """Model versions with offline (validation) metrics and online click-through, and the one served."""
    versions = await run_in_threadpool(service.versions)
    online = await run_in_threadpool(service.reaction_report)
    model = service.model
    return ModelsOut(
        serving=service.model_version,
        training=service.training,
        last_training_error=service.last_training_error,
        index=model.index.describe() if model is not None and model.index is not None else None,
        interactions=service.total_interactions,
        versions=versions,
        online=online,
    )
