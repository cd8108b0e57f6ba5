"""``crm churn ...``: train and inspect churn models. Heavy imports stay inside the commands."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

app = typer.Typer(
    help="Churn models: train (CDNOW, the service's own events, or a CSV table), list versions."
)


def _echo(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, default=str))


@app.command()
def train(
    source: str = typer.Option("cdnow", help="cdnow | db (the service's stored events) | table (a CSV)."),
    csv: Path | None = typer.Option(None, help="Table source: training CSV (default: IBM Telco train.csv)."),
    test_csv: Path | None = typer.Option(
        None, help="Table source: test CSV for metrics (default: Telco test)."
    ),
    label: str = typer.Option("churn", help="Table source: the label column (yes/no or 0/1)."),
    id_column: str = typer.Option("customerid", help="Table source: the id column (not a feature)."),
    max_customers: int | None = typer.Option(None, help="cdnow: use a random sample of customers."),
    tune: bool = typer.Option(True, help="Choose GBT parameters on the validation split."),
    data_dir: str | None = typer.Option(None, help="Overrides CRM_CHURN_DATA_DIR / CRM_CHURN_MODEL_DIR."),
) -> None:
    """Train a model, save it as a new version (with its metrics) and make it current."""
    from services.churn.ml.features import cdnow_histories, cutoffs_before
    from services.churn.ml.training import save_version, train_events
    from services.churn.settings import get_settings

    settings = get_settings()
    target = Path(data_dir) if data_dir else settings.models_path()
    if source == "table":
        from services.churn.ml.table import telco_files, train_table

        default_train, default_test = telco_files()
        run = train_table(
            csv or default_train,
            test_csv if test_csv or csv else default_test,
            label=label,
            id_column=id_column or None,
            tune=tune,
            calibration=settings.calibration,
        )
        save_version(run.fit.model, target)
        _echo(
            {
                "version": run.fit.model.version,
                **{k: v for k, v in run.metrics.items() if not isinstance(v, list)},
            }
        )
        return
    if source == "cdnow":
        histories = cdnow_histories(max_customers=max_customers)
    elif source == "db":
        histories = _db_histories(settings)
    else:
        raise typer.BadParameter("source must be cdnow, db or table")
    if not histories:
        raise typer.BadParameter("no events to train on")
    end = max(a.time for h in histories.values() for a in h)
    cutoffs = cutoffs_before(end, settings.label_days, settings.snapshot_count, settings.snapshot_step_days)
    result = train_events(histories, cutoffs, settings.label_days, tune=tune, calibration=settings.calibration,
                          progress=True, source=source)  # fmt: skip
    save_version(result.model, target)
    _echo({"version": result.model.version, "seconds": round(result.seconds, 1), **result.model.metrics})


def _db_histories(settings: Any) -> dict[str, list[Any]]:
    from sqlalchemy import select

    from services.churn.ml.features import Activity
    from services.churn.models import ActivityRow
    from shared.db import make_engine, sqlite_url

    engine = make_engine(settings.database_url or sqlite_url(settings.data_dir, "churn"))
    histories: dict[str, list[Activity]] = {}
    table = ActivityRow.__table__
    with engine.connect() as connection:
        rows = connection.execute(
            select(table.c.customer_id, table.c.time, table.c.kind, table.c.amount, table.c.value)
        )
        for customer, time, kind, amount, value in rows:
            histories.setdefault(customer, []).append(
                Activity(time, kind, amount or 0.0, float("nan") if value is None else value)
            )
    engine.dispose()
    return histories


@app.command()
def versions(data_dir: str | None = typer.Option(None, help="Overrides CRM_CHURN_DATA_DIR.")) -> None:
    """List saved model versions with their metrics (the current one marked)."""
    from services.churn.ml.training import list_versions
    from services.churn.settings import get_settings

    root = Path(data_dir) if data_dir else get_settings().models_path()
    _echo({"events": list_versions(root, "events"), "table": list_versions(root, "table")})
