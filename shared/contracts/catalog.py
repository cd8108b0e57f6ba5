"""The item catalog's event: what an item is called and where it belongs (a shop's product feed, the demo's
MovieLens ``u.item``). Items are not customer activity, so these travel on their own topic, keyed by item."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, StringConstraints

from shared.contracts.events import Identifier, Payload

ItemName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]
Category = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]


class ItemUpdated(Payload):
    """An item was added to the catalog or changed; the newest event per item wins (by event time)."""

    item_id: Identifier = Field(
        description="The id interactions name the item by (`item_id` of a rating, purchase line, ...)."
    )
    name: ItemName = Field(examples=["Toy Story (1995)"])
    categories: list[Category] = Field(
        default_factory=list, max_length=50, examples=[["Animation", "Comedy"]]
    )
    attributes: dict[
        Annotated[str, StringConstraints(min_length=1, max_length=100)], str | int | float | bool
    ] = Field(
        default_factory=dict,
        max_length=50,
        description="Flat extra facts shown with the item (year, brand, ...).",
        examples=[{"year": 1995}],
    )
