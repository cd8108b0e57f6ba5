"""What the recsys service answers (and takes) over HTTP: recommendations with their reasons, items, model versions.

The service answers with these models and the gateway reads with them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class BecauseItemOut(BaseModel):
    item_id: str
    name: str | None = Field(
        default=None, description="From the catalog; null when it does not name the item."
    )
    weight: float = Field(description="How much this item contributed to the recommended item's score.")


class RecommendedItemOut(BaseModel):
    item_id: str
    name: str | None = Field(
        default=None,
        description="From the catalog (crm.item_updated.v1); null when it does not name the item.",
    )
    categories: list[str] = Field(default_factory=list, examples=[["Action", "Sci-Fi"]])
    score: float = Field(description="The model's score (inner product); popularity is normalised to 0-1.")
    because: list[str] = Field(
        default_factory=list, description="The customer's items that contributed most to this item's score."
    )
    because_weights: list[float] = Field(default_factory=list, description="Their contributions, same order.")
    because_items: list[BecauseItemOut] = Field(
        default_factory=list, description="The same items with their names, in the same order."
    )


class ItemOut(BaseModel):
    """An item as the recsys service knows it."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "item_id": "movie-50",
                    "name": "Star Wars (1977)",
                    "categories": ["Action", "Adventure", "Romance", "Sci-Fi", "War"],
                    "attributes": {"year": 1977},
                    "updated_at": "2026-03-16T03:05:09Z",
                    "interactions": 583,
                    "in_model": True,
                }
            ]
        }
    )

    item_id: str
    name: str | None = Field(description="Null when no crm.item_updated.v1 named the item yet.")
    categories: list[str] = Field(default_factory=list)
    attributes: dict[str, str | int | float | bool] = Field(default_factory=dict)
    updated_at: datetime | None = Field(default=None, description="Time of the catalog event shown.")
    interactions: int = Field(description="Interactions recorded with the item (its popularity).")
    in_model: bool = Field(description="Whether the served model can recommend it and explain with it.")


class ItemsOut(BaseModel):
    items: list[ItemOut] = Field(description="The known items of those asked for, in the order asked.")


class RecommendationsOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "customer_id": "ml-42",
                    "model_version": "dlae-20261123T160813-35efb4",
                    "strategy": "personalized",
                    "history_size": 3,
                    "items": [
                        {
                            "item_id": "movie-50",
                            "score": 0.41,
                            "because": ["movie-181"],
                            "because_weights": [0.3],
                        }
                    ],
                }
            ]
        }
    )

    customer_id: str | None = None
    model_version: str = Field(description="The model version that produced the list, or 'popularity'.")
    strategy: str = Field(description="personalized, popularity (cold start) or item_similarity.")
    history_size: int = Field(description="How many distinct items the list was conditioned on.")
    items: list[RecommendedItemOut]


class SessionRequest(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"item_ids": ["movie-50", "movie-181"], "k": 10}]}
    )

    item_ids: list[str] = Field(
        default_factory=list, max_length=1000, description="Items seen in the session."
    )
    k: int = Field(default=10, ge=1, le=200)


class TrainRequest(BaseModel):
    wait: bool = Field(default=False, description="Answer when training is done instead of at once.")


class TrainResponse(BaseModel):
    status: str = Field(description="started, already_running or trained.")
    serving: str = Field(description="The model version served now.")
    model: dict[str, Any] | None = Field(default=None, description="The new version's metadata (wait=true).")


class ModelsOut(BaseModel):
    serving: str
    training: bool
    last_training_error: str | None = None
    index: dict[str, Any] | None = None
    interactions: int
    versions: list[dict[str, Any]] = Field(description="Versions on disk with offline and online metrics.")
    online: dict[str, dict[str, Any]] = Field(description="Impressions, clicks, CTR per model version.")
