"""End to end through the real embedded broker: events change the next answer; erasure and merge."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from services.recsys.app import create_app
from services.recsys.repository import has_customer
from services.recsys.settings import RecsysSettings
from shared.contracts import CloudEvent, EventTypeName, Topic
from shared.contracts import events as ev
from shared.contracts.events import CustomerRef
from shared.kafka import EventPublisher
from shared.settings import KafkaSettings
from tests.recsys.conftest import FAST_GRID


def wait_until(
    fetch: Callable[[], dict[str, Any]], ok: Callable[[dict[str, Any]], bool], timeout_s: float = 40
):
    deadline = time.monotonic() + timeout_s
    body = fetch()
    while not ok(body):
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not reached; last answer: {body}")
        time.sleep(0.1)
        body = fetch()
    return body


def resolved(customer_id: str, type_: str, payload: ev.Payload) -> tuple[str, CloudEvent, str]:
    """An interaction as the profile service republishes it: subject and key = canonical id."""
    return (
        Topic.INTERACTIONS_RESOLVED,
        CloudEvent.new(type_, payload, source="/test", subject=customer_id),
        customer_id,
    )


def rating(customer_id: str, item_id: str) -> tuple[str, CloudEvent, str]:
    ref = CustomerRef(customer_id=customer_id)
    return resolved(customer_id, EventTypeName.RATING, ev.Rating(customer=ref, item_id=item_id, rating=4))


def test_events_update_recommendations_merge_and_erasure(
    data_dir_with_model: Path, kafka_settings: KafkaSettings, unique: str
) -> None:
    settings = RecsysSettings(
        data_dir=str(data_dir_with_model), kafka=kafka_settings, tuning_grid=FAST_GRID, auto_train=False
    )
    customer, other = f"c-{unique}", f"d-{unique}"
    publisher = EventPublisher(kafka_settings)
    with TestClient(create_app(settings)) as client:
        runtime = client.app.state.runtime  # type: ignore[attr-defined]
        deadline = time.monotonic() + 40
        while not runtime.consumers[0].assigned.is_set():
            assert time.monotonic() < deadline, "consumer never got partitions"
            time.sleep(0.1)
        ready = client.get("/readyz")
        assert ready.status_code == 200, ready.text

        def recs(who: str = customer) -> dict[str, Any]:
            response = client.get(f"/recommendations/{who}", params={"k": 10})
            assert response.status_code == 200
            return response.json()

        # Unknown customer: popularity from the model's catalog, not an error.
        cold = recs(f"nobody-{unique}")
        assert cold["strategy"] == "popularity"
        assert len(cold["items"]) == 10

        # Star Wars, Return of the Jedi, Empire Strikes Back.
        seed_items = ["movie-50", "movie-181", "movie-172"]
        publisher.publish_and_wait([rating(customer, item) for item in seed_items])
        before = wait_until(recs, lambda b: b["history_size"] == 3)
        assert before["strategy"] == "personalized"
        assert before["model_version"].startswith("dlae-")
        assert not {i["item_id"] for i in before["items"]} & set(seed_items)
        assert all(set(i["because"]) <= set(seed_items) and i["because"] for i in before["items"])

        # The customer views the top recommendation X: X leaves the list and the list changes.
        top = before["items"][0]["item_id"]
        view = ev.ProductView(customer=CustomerRef(customer_id=customer), item_id=top)
        publisher.publish_and_wait([resolved(customer, EventTypeName.PRODUCT_VIEW, view)])
        after = wait_until(recs, lambda b: b["history_size"] == 4)
        after_items = [i["item_id"] for i in after["items"]]
        assert top not in after_items
        assert after_items != [i["item_id"] for i in before["items"]]

        # A merge folds the other customer's history into the survivor.
        publisher.publish_and_wait([rating(other, "movie-1")])
        wait_until(lambda: recs(other), lambda b: b["history_size"] == 1)
        merged = ev.CustomerMerged(merge_id=f"m-{unique}", survivor_id=customer, merged_id=other)
        publisher.publish_and_wait(
            [
                (
                    Topic.CUSTOMER_MERGED,
                    CloudEvent.new(EventTypeName.CUSTOMER_MERGED, merged, source="/test"),
                    customer,
                )
            ]
        )
        assert wait_until(recs, lambda b: b["history_size"] == 5)["strategy"] == "personalized"
        assert recs(other)["history_size"] == 0

        # Erasure removes the customer's history: back to popularity, nothing left in the database.
        erased = ev.CustomerErased(customer_id=customer, erasure_id=f"e-{unique}")
        publisher.publish_and_wait(
            [
                (
                    Topic.CUSTOMER_ERASED,
                    CloudEvent.new(EventTypeName.CUSTOMER_ERASED, erased, source="/test"),
                    customer,
                )
            ]
        )
        gone = wait_until(recs, lambda b: b["history_size"] == 0)
        assert gone["strategy"] == "popularity"
        with runtime.session_factory() as session:
            assert not has_customer(session, customer)
            assert not has_customer(session, other)

        # Reactions are counted per model version.
        version = before["model_version"]
        reaction = ev.RecommendationReaction(
            customer_id=f"r-{unique}", item_id=top, reaction="impression", model_version=version
        )
        click = ev.RecommendationReaction(
            customer_id=f"r-{unique}", item_id=top, reaction="click", model_version=version
        )
        publisher.publish_and_wait(
            [
                (
                    Topic.RECOMMENDATION_REACTION,
                    CloudEvent.new(EventTypeName.RECOMMENDATION_REACTION, r, source="/test"),
                    f"r-{unique}",
                )
                for r in (reaction, reaction, click)
            ]
        )
        models = wait_until(lambda: client.get("/models").json(), lambda b: version in b["online"])
        assert models["online"][version]["impressions"] == 2
        assert models["online"][version]["ctr"] == 0.5
    publisher.close()
