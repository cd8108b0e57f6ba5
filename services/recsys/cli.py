"""``crm recsys ...``: train a model version, list versions."""

from __future__ import annotations

import json

import typer

app = typer.Typer(help="Recommendations: train and inspect model versions.", no_args_is_help=True)


@app.command()
def train(
    from_movielens: bool = typer.Option(
        False, "--from-movielens", help="Train on ml-100k from the installed recbole package (demo/bench)."
    ),
    data_dir: str | None = typer.Option(None, help="Overrides CRM_RECSYS_DATA_DIR."),
) -> None:
    """Train a new model version (from the service database, or ml-100k) and make it current."""
    from services.recsys.settings import RecsysSettings

    settings = RecsysSettings(data_dir=data_dir) if data_dir else RecsysSettings()
    if from_movielens:
        from services.recsys.data import load_movielens_100k
        from services.recsys.service import ModelStore
        from services.recsys.training import DEFAULT_GRID, train_dlae

        users, items, _, _ = load_movielens_100k()
        model = train_dlae(
            users,
            items,
            grid=settings.tuning_grid or DEFAULT_GRID,
            max_items=settings.max_model_items,
            progress=True,
            serving_rank=settings.serving_rank,
        )
        ModelStore(settings.models_dir(), settings.keep_versions).publish(model)
        meta = model.meta()
    else:
        from services.recsys import repository
        from services.recsys.service import RecsysService
        from shared.db import make_engine, make_session_factory, sqlite_url

        engine = make_engine(settings.database_url or sqlite_url(settings.data_dir, "recsys"))
        repository.create_tables(engine)
        service = RecsysService(settings, make_session_factory(engine))
        meta = service.train(progress=True)
        engine.dispose()
    typer.echo(json.dumps(meta, indent=2))


@app.command()
def models(data_dir: str | None = typer.Option(None, help="Overrides CRM_RECSYS_DATA_DIR.")) -> None:
    """List model versions on disk with their offline metrics."""
    from services.recsys.service import ModelStore
    from services.recsys.settings import RecsysSettings

    settings = RecsysSettings(data_dir=data_dir) if data_dir else RecsysSettings()
    store = ModelStore(settings.models_dir(), settings.keep_versions)
    current = store.current_version()
    for meta in store.versions():
        marker = "*" if meta["version"] == current else " "
        typer.echo(f"{marker} {meta['version']}  items={meta['items']}  {json.dumps(meta['metrics'])}")
