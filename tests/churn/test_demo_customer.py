"""A demo-like customer, end to end on replayed real data: CDNOW buyers and MovieLens raters, shifted to end
now as ``crm up`` replays them, go through the profile (identity resolution, then the CLV fit and RFM
clustering the fleet runs after the load), and the profile's resolved events through churn and recsys
(with the MovieLens catalog), exactly as their consumers apply them.

The 360's parts are then complete or say why not, the profile's recency and the churn service's "as of"
are one clock, and recommended items carry names."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from services.churn.app import create_app as create_churn
from services.churn.settings import ChurnSettings
from services.profile.batch import BatchScheduler
from services.profile.schemas import CustomerProfile
from services.profile.settings import ProfileSettings
from services.recsys.app import create_app as create_recsys
from services.recsys.consumers import make_handler
from services.recsys.settings import RecsysSettings
from shared.contracts import CloudEvent, Topic
from shared.datasets import cdnow_transactions
from shared.db import unit_of_work
from shared.kafka import InboundEvent, parse_record
from shared.replay import (
    ReplayEvent,
    cdnow_customer_id,
    cdnow_events,
    movielens_catalog_events,
    movielens_customer_id,
    movielens_events,
)
from tests.profile.conftest import Store
from tests.recsys.conftest import FAST_GRID

ML_USERS = [str(n) for n in range(1, 121)]
CDNOW_CUSTOMERS = sorted({t.customer_id for t in cdnow_transactions(sample=True)})[:150]
RECENCY = re.compile(r"^no purchase for (\d+) days")


def parsed(items: Sequence[tuple[str, CloudEvent | bytes]]) -> list[InboundEvent]:
    """Records as a consumer gets them: parsed from their bytes."""
    out = []
    for offset, (topic, value) in enumerate(items):
        envelope, payload = parse_record(value if isinstance(value, bytes) else value.to_json_bytes())
        out.append(InboundEvent(envelope, payload, topic, 0, offset))
    return out


def batches(events: list[Any], size: int = 500) -> Iterator[list[Any]]:
    for start in range(0, len(events), size):
        yield events[start : start + size]


@dataclass
class Demo:
    store: Store
    churn: TestClient
    recsys: TestClient
    fit: dict[str, Any]

    def profile(self, customer_id: str) -> CustomerProfile:
        with self.store.factory() as session:
            return self.store.service.full_view(session, self.store.service.active_row(session, customer_id))


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory, model_dir: Path) -> Iterator[Demo]:
    root = tmp_path_factory.mktemp("demo")
    now = datetime.now(UTC)
    replayed: list[ReplayEvent] = [
        *movielens_events(users=ML_USERS, now=now),
        *cdnow_events(sample=True, customers=CDNOW_CUSTOMERS, now=now),
    ]
    replayed.sort(key=lambda e: e.event.time)
    # The profile resolves identities and republishes every interaction, keyed by the canonical id.
    store = Store(f"sqlite:///{root}/profile.db")
    resolved: list[tuple[str, CloudEvent | bytes]] = []
    for batch in batches([e.event for e in replayed]):
        resolved += [
            (topic, value) for topic, value, _ in store.apply(batch) if topic == Topic.INTERACTIONS_RESOLVED
        ]
    # What crm up asks for once the demo is applied.
    status = BatchScheduler(store.factory, ProfileSettings(data_dir=str(root), environment="test")).run_once()
    churn_settings = ChurnSettings(
        data_dir=str(root / "churn"), model_dir=str(model_dir), train_on_start=False, consume_events=False,
        environment="test",
    )  # fmt: skip
    recsys_settings = RecsysSettings(
        data_dir=str(root / "recsys"), consume_events=False, auto_train=False, tuning_grid=FAST_GRID
    )
    with (
        TestClient(create_churn(churn_settings)) as churn,
        TestClient(create_recsys(recsys_settings)) as recsys,
    ):
        churn_app: Any = churn.app
        for batch in batches(parsed(resolved)):
            with churn_app.state.runtime.session_factory() as session, session.begin():
                churn_app.state.churn.apply_events(batch, session)
        recsys_service = recsys.app.state.recsys_service  # type: ignore[attr-defined]
        catalog = [(Topic.ITEM_UPDATED, e.event) for e in movielens_catalog_events(now=now)]
        for batch in batches(parsed([*catalog, *resolved])):
            with unit_of_work(recsys_service.session_factory) as session:
                make_handler(recsys_service)(batch, session)
        trained = recsys.post("/models/train", json={"wait": True})
        assert trained.status_code == 202, trained.text
        yield Demo(store, churn, recsys, status.model_dump())
    store.engine.dispose()


def test_the_fit_the_fleet_runs_after_the_load_fits_clv_and_clusters(demo: Demo) -> None:
    outcomes = {job["job"]: job["outcome"] for job in demo.fit["jobs"]}
    assert outcomes == {"segments": "fitted", "clv": "fitted", "rfm_clusters": "fitted"}


@pytest.mark.parametrize("customer", [cdnow_customer_id(c) for c in CDNOW_CUSTOMERS[:40]])
def test_a_buyers_360_has_every_rfm_and_clv_part(demo: Demo, customer: str) -> None:
    view = demo.profile(customer)
    rfm, clv = view.rfm, view.clv
    assert rfm.reason is None
    assert None not in (rfm.recency_days, rfm.scores, rfm.cluster)
    assert clv.reason is None
    assert None not in (clv.p_alive, clv.expected_purchases, clv.expected_value, clv.model_version)
    # Against the present, as in a live shop: CDNOW's 18 months end now, not 28 years ago.
    assert rfm.recency_days is not None
    assert 0 <= rfm.recency_days < 600


@pytest.mark.parametrize("customer", [movielens_customer_id(u) for u in ML_USERS[:10]])
def test_a_customer_without_purchases_is_told_apart_from_a_missing_fit(demo: Demo, customer: str) -> None:
    view = demo.profile(customer)
    assert view.aggregates.rating_count > 0
    for part in (view.rfm, view.clv):
        assert part.reason == "no purchases yet"
    assert view.rfm.cluster is None
    assert view.clv.p_alive is None


def test_recency_is_one_clock_in_the_profile_and_in_churn(demo: Demo) -> None:
    compared = 0
    for raw in CDNOW_CUSTOMERS:
        customer = cdnow_customer_id(raw)
        churn = demo.churn.get(f"/churn/{customer}").json()
        view = demo.profile(customer)
        assert churn["has_history"], churn
        as_of = datetime.fromisoformat(churn["as_of"])
        assert abs(as_of - datetime.now(UTC)) < timedelta(minutes=10)  # the wall clock, not 1998
        assert view.aggregates.last_order_at is not None
        assert view.rfm.recency_days is not None
        churn_recency = (as_of - view.aggregates.last_order_at).total_seconds() / 86400
        assert churn_recency == pytest.approx(view.rfm.recency_days, abs=0.01)
        for reason in churn["reasons"]:
            if match := RECENCY.match(reason["text"]):
                assert abs(int(match.group(1)) - view.rfm.recency_days) <= 1, (reason, view.rfm)
                compared += 1
    assert compared > 0, "no churn reason named the purchase recency: nothing was compared"


def test_recommended_items_and_their_reasons_carry_names(demo: Demo) -> None:
    for user in ML_USERS[:10]:
        body = demo.recsys.get(f"/recommendations/{movielens_customer_id(user)}", params={"k": 10}).json()
        assert body["strategy"] == "personalized"
        assert len(body["items"]) == 10
        for item in body["items"]:
            assert item["name"], item
            assert item["because_items"], item
            assert all(b["name"] for b in item["because_items"]), item
