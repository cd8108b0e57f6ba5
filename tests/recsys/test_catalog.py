"""The item catalog: crm.item_updated.v1 events (the demo's MovieLens u.item, a shop's product feed) name
every recommended item and every "because" item, and GET /items/{id} answers an item's entry."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from fastapi.testclient import TestClient

from services.recsys.app import create_app
from services.recsys.consumers import make_handler
from services.recsys.settings import RecsysSettings
from shared.contracts import CloudEvent, EventTypeName, Topic
from shared.contracts.catalog import ItemUpdated
from shared.db import unit_of_work
from shared.kafka import EventPublisher, InboundEvent, parse_record
from shared.replay import movielens_catalog_events
from shared.settings import KafkaSettings


def apply(client: TestClient, events: list[InboundEvent]) -> None:
    """Apply events the way the consumer does: its handler, in one transaction."""
    service = client.app.state.recsys_service  # type: ignore[attr-defined]
    with unit_of_work(service.session_factory) as session:
        make_handler(service)(events, session)


def catalog_events() -> list[InboundEvent]:
    """The demo's catalog (MovieLens u.item), parsed exactly as the consumer parses records."""
    out = []
    for offset, item in enumerate(movielens_catalog_events(now=datetime.now(UTC))):
        envelope, payload = parse_record(item.event.to_json_bytes())
        out.append(InboundEvent(envelope, payload, Topic.ITEM_UPDATED, 0, offset))
    return out


def item_event(item_id: str, name: str, at: datetime, categories: list[str] | None = None) -> InboundEvent:
    payload = ItemUpdated(item_id=item_id, name=name, categories=categories or [])
    envelope = CloudEvent.new(EventTypeName.ITEM_UPDATED, payload, source="/shop/catalog", time=at)
    return InboundEvent(envelope, payload, Topic.ITEM_UPDATED, 0, 0)


def test_recommendations_and_their_reasons_carry_names(data_dir_with_model: Path, database_url: str) -> None:
    settings = RecsysSettings(
        data_dir=str(data_dir_with_model), database_url=database_url, consume_events=False, auto_train=False
    )
    with TestClient(create_app(settings)) as client:
        bare = client.post("/recommendations/session", json={"item_ids": ["movie-50"], "k": 5}).json()
        assert all(item["name"] is None for item in bare["items"])  # no catalog yet: ids only, said so
        apply(client, catalog_events())
        for body in (
            client.post(
                "/recommendations/session", json={"item_ids": ["movie-50", "movie-181"], "k": 10}
            ).json(),
            client.get("/items/movie-50/similar", params={"k": 10}).json(),
            client.get("/recommendations/never-seen", params={"k": 10}).json(),  # popularity
        ):
            assert len(body["items"]) == 10
            for item in body["items"]:
                assert item["name"], item
                assert item["categories"], item  # every ml-100k movie but one has a genre
                assert [b["item_id"] for b in item["because_items"]] == item["because"]
                assert [b["weight"] for b in item["because_items"]] == item["because_weights"]
                assert all(b["name"] for b in item["because_items"]), item
        session = client.post("/recommendations/session", json={"item_ids": ["movie-50"], "k": 10}).json()
        assert {b["name"] for item in session["items"] for b in item["because_items"]} == {"Star Wars (1977)"}

        star_wars = client.get("/items/movie-50").json()
        assert star_wars["name"] == "Star Wars (1977)"
        assert star_wars["categories"] == ["Action", "Adventure", "Romance", "Sci-Fi", "War"]
        assert star_wars["attributes"] == {"year": 1977}
        assert star_wars["in_model"] is True
        several = client.get("/items", params={"item_id": ["movie-181", "nope", "movie-50"]}).json()
        assert [i["item_id"] for i in several["items"]] == ["movie-181", "movie-50"]
        missing = client.get("/items/nope")
        assert missing.status_code == 404
        assert missing.json()["error"] == "ItemNotFound"


def test_the_newest_catalog_event_wins_whatever_the_arrival_order(tmp_path: Path, database_url: str) -> None:
    settings = RecsysSettings(
        data_dir=str(tmp_path), database_url=database_url, consume_events=False, auto_train=False
    )
    t0 = datetime.now(UTC) - timedelta(days=1)
    with TestClient(create_app(settings)) as client:
        apply(client, [item_event("sku-1", "Blue mug", t0 + timedelta(hours=2), ["Kitchen"])])
        apply(client, [item_event("sku-1", "Mug", t0)])  # older, arrives late: ignored
        assert client.get("/items/sku-1").json()["name"] == "Blue mug"
        apply(client, [item_event("sku-1", "Blue mug, 350 ml", t0 + timedelta(hours=3))])
        body = client.get("/items/sku-1").json()
        assert body["name"] == "Blue mug, 350 ml"
        assert body["categories"] == []
        assert body["interactions"] == 0
        assert body["in_model"] is False
    # After a restart, from the database.
    with TestClient(create_app(settings)) as client:
        assert client.get("/items/sku-1").json()["name"] == "Blue mug, 350 ml"


def test_a_shop_publishes_an_item_event_and_the_service_names_it(
    tmp_path: Path, kafka_settings: KafkaSettings, unique: str
) -> None:
    settings = RecsysSettings(data_dir=str(tmp_path), kafka=kafka_settings, auto_train=False)
    publisher = EventPublisher(kafka_settings)
    try:
        with TestClient(create_app(settings)) as client:
            runtime = client.app.state.runtime  # type: ignore[attr-defined]
            deadline = time.monotonic() + 40
            while not runtime.consumers[0].assigned.is_set():
                assert time.monotonic() < deadline, "consumer never got partitions"
                time.sleep(0.1)
            item_id = f"sku-{unique}"
            payload = ItemUpdated(item_id=item_id, name="Espresso cup", categories=["Kitchen", "Coffee"])
            event = CloudEvent.new(EventTypeName.ITEM_UPDATED, payload, source="/shop/catalog")
            publisher.publish_and_wait([(Topic.ITEM_UPDATED, event, item_id)])
            deadline = time.monotonic() + 30
            while (response := client.get(f"/items/{item_id}")).status_code != 200:
                assert time.monotonic() < deadline, response.json()
                time.sleep(0.1)
            assert response.json()["name"] == "Espresso cup"
            assert response.json()["categories"] == ["Kitchen", "Coffee"]
    finally:
        publisher.close()
