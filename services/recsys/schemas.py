"""The recsys API's request and response models: they cross to the gateway, so they live in
``shared.contracts.http.recsys``, the one definition both sides use."""

from shared.contracts.http.recsys import (
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

__all__ = [
    "BecauseItemOut",
    "ItemOut",
    "ItemsOut",
    "ModelsOut",
    "RecommendationsOut",
    "RecommendedItemOut",
    "SessionRequest",
    "TrainRequest",
    "TrainResponse",
]
