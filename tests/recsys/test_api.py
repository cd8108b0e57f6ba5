"""HTTP API and cold start, on SQLite and PostgreSQL (consumers off: events are applied the way the
consumer applies them, inside a transaction, so these tests need no broker)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

from fastapi.testclient import TestClient

from services.recsys.app import create_app
from services.recsys.data import load_movielens_100k
from services.recsys.repository import NewInteraction
from services.recsys.service import ModelStore, RecsysService
from services.recsys.settings import RecsysSettings
from shared.db import unit_of_work
from tests.recsys.conftest import FAST_GRID


def seed_movielens(service: RecsysService, users: int) -> int:
    """Apply the ratings of the first ``users`` ml-100k users as committed interactions."""
    names, items, _, _ = load_movielens_100k()
    wanted = {f"ml-{n}" for n in range(1, users + 1)}
    now = datetime.now(UTC)
    rows = [
        NewInteraction(f"e-{n}", customer, item, "rating", 1.0, now)
        for n, (customer, item) in enumerate(zip(names, items, strict=True))
        if customer in wanted
    ]
    with unit_of_work(service.session_factory) as session:
        service.record_interactions(session, rows)
    return len(rows)


def test_endpoints_with_a_served_model(data_dir_with_model: Path) -> None:
    settings = RecsysSettings(data_dir=str(data_dir_with_model), consume_events=False, auto_train=False)
    with TestClient(create_app(settings)) as client:
        ready = client.get("/readyz")
        assert ready.status_code == 200
        models = client.get("/models").json()
        assert models["serving"].startswith("dlae-")
        assert any(name == f"model:{models['serving']}" for name in ready.json()["checks"])
        assert models["index"]["kind"] == "flat"
        assert [v["serving"] for v in models["versions"]] == [True]

        unknown = client.get("/recommendations/never-seen", params={"k": 5}).json()
        assert unknown["strategy"] == "popularity"
        assert len(unknown["items"]) == 5
        assert unknown["items"][0]["score"] == 1.0

        session = client.post(
            "/recommendations/session", json={"item_ids": ["movie-50", "movie-181"], "k": 7}
        )
        assert session.status_code == 200
        body = session.json()
        assert body["strategy"] == "personalized"
        assert len(body["items"]) == 7
        assert not {i["item_id"] for i in body["items"]} & {"movie-50", "movie-181"}
        assert all(i["because"] for i in body["items"])

        similar = client.get("/items/movie-50/similar", params={"k": 5}).json()
        assert similar["strategy"] == "item_similarity"
        assert "movie-50" not in [i["item_id"] for i in similar["items"]]
        # Return of the Jedi and The Empire Strikes Back are what Star Wars fans watch.
        assert {"movie-181", "movie-172"} & {i["item_id"] for i in similar["items"]}

        missing = client.get("/items/no-such-item/similar")
        assert missing.status_code == 404
        assert missing.json()["error"] == "ItemNotFound"
        assert client.get("/recommendations/x", params={"k": 0}).json()["error"] == "InvalidRequest"


def test_cold_start_serves_popularity_then_trains_from_seen_interactions(
    tmp_path: Path, database_url: str
) -> None:
    settings = RecsysSettings(
        data_dir=str(tmp_path),
        database_url=database_url,
        consume_events=False,
        tuning_grid=FAST_GRID,
        min_train_interactions=5000,
        retrain_check_s=0.2,
        serving_rank=0,  # exact B keeps this test fast; test_model covers the low-rank path
    )
    with TestClient(create_app(settings)) as client:
        assert client.get("/readyz").status_code == 200
        service: RecsysService = client.app.state.recsys_service  # type: ignore[attr-defined]
        empty = client.get("/recommendations/ml-1").json()
        assert (empty["strategy"], empty["items"], empty["model_version"]) == ("popularity", [], "popularity")

        seeded = seed_movielens(service, users=150)
        assert seeded > 5000
        # Popularity from live counts while the background trainer fits the first version.
        first = client.get("/recommendations/someone-new", params={"k": 3}).json()
        assert first["strategy"] == "popularity"
        assert len(first["items"]) == 3
        deadline = time.monotonic() + 60
        while client.get("/models").json()["serving"] == "popularity":
            assert time.monotonic() < deadline, client.get("/models").json()
            time.sleep(0.2)
        personal = client.get("/recommendations/ml-1").json()
        assert personal["strategy"] == "personalized"
        assert personal["history_size"] > 20
        first_version = personal["model_version"]

        trained = client.post("/models/train", json={"wait": True})
        assert trained.status_code == 202
        assert trained.json()["status"] == "trained"
        models = client.get("/models").json()
        assert models["serving"] == trained.json()["model"]["version"] != first_version
        assert len(models["versions"]) == 2
        assert models["interactions"] == seeded


def test_a_version_published_on_disk_is_swapped_in(data_dir_with_model: Path) -> None:
    settings = RecsysSettings(
        data_dir=str(data_dir_with_model), consume_events=False, auto_train=False, retrain_check_s=0.1
    )
    store = ModelStore(settings.models_dir(), keep=5)
    with TestClient(create_app(settings)) as client:
        old = client.get("/models").json()["serving"]
        model = store.load(old)
        model.version = "dlae-from-cli"
        store.publish(model)  # what `crm recsys train` does
        deadline = time.monotonic() + 20
        while client.get("/models").json()["serving"] != "dlae-from-cli":
            assert time.monotonic() < deadline
            time.sleep(0.1)
        body = client.get("/recommendations/someone", params={"k": 3}).json()
        assert body["model_version"] == "dlae-from-cli"
        assert "model:dlae-from-cli" in client.get("/readyz").json()["checks"]
        assert {v["version"] for v in client.get("/models").json()["versions"]} == {old, "dlae-from-cli"}
