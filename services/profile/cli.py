"""``crm profile ...``: migrate the database, fit CLV, cluster customers on RFM."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

app = typer.Typer(help="Profile service: database, CLV and RFM clustering jobs.", no_args_is_help=True)


def _factory() -> sessionmaker[Session]:
    from services.profile.db import migrate
    from services.profile.settings import get_settings
    from shared.db import make_engine, make_session_factory, sqlite_url

    settings = get_settings()
    engine = make_engine(settings.database_url or sqlite_url(settings.data_dir, "profile"))
    migrate(engine)
    return make_session_factory(engine)


def _as_of(value: str | None) -> datetime | None:
    if value is None:
        return None
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@app.command()
def migrate() -> None:
    """Create or upgrade the profile database schema (the service also does this at start-up)."""
    _factory()
    typer.echo("profile database is at the latest schema")


@app.command("fit-clv")
def fit_clv(
    horizon_days: int | None = typer.Option(
        None, help="Horizon of expected purchases/value (default from settings)."
    ),
    as_of: str | None = typer.Option(None, help="ISO date to score at (default: the latest purchase seen)."),
) -> None:
    """Fit BG/NBD + Gamma-Gamma on all buyers and write P(alive), expected purchases and value."""
    from tqdm import tqdm

    from services.profile.batch import fit_clv as run
    from services.profile.settings import get_settings

    horizon = horizon_days or get_settings().clv_horizon_days
    steps = ["loading profiles", "fitting BG/NBD", "fitting Gamma-Gamma", "writing profiles"]
    with tqdm(total=len(steps), desc="fit-clv", unit="step") as bar:

        def progress(step: str) -> None:
            bar.set_postfix_str(step)
            bar.update(1)

        result = run(_factory(), horizon_days=horizon, as_of=_as_of(as_of), progress=progress)
    params = result.bgnbd
    typer.echo(
        f"{result.version}: {result.customers} buyers, BG/NBD r={params.r:.3f} alpha={params.alpha:.3f} "
        f"a={params.a:.3f} b={params.b:.3f}"
        + (
            f", Gamma-Gamma p={result.gamma_gamma.p:.3f} q={result.gamma_gamma.q:.3f} v={result.gamma_gamma.v:.3f}"
            if result.gamma_gamma
            else ""
        )
    )


@app.command()
def cluster(
    max_k: int = typer.Option(8, min=2, max=20, help="Largest k tried; k is chosen by silhouette."),
    as_of: str | None = typer.Option(None, help="ISO date for recency (default: the latest purchase seen)."),
) -> None:
    """Cluster buyers with k-means on RFM features and name the clusters (champions, loyal, at risk, ...)."""
    from tqdm import tqdm

    from services.profile.batch import cluster_customers

    with tqdm(desc="k-means", unit="k") as bar:

        def progress(step: int, total: int) -> None:
            bar.total = total
            bar.update(1)

        result = cluster_customers(_factory(), max_k=max_k, as_of=_as_of(as_of), progress=progress)
    typer.echo(
        f"{result.version}: k={result.k} silhouette={result.silhouette:.3f} over {result.customers} buyers"
    )
    for name, size in sorted(result.names.items(), key=lambda kv: -kv[1]):
        typer.echo(f"  {name:<18} {size}")


@app.command()
def train(
    max_k: int = typer.Option(8, min=2, max=20, help="Largest k tried for the RFM clusters."),
    horizon_days: int | None = typer.Option(None, help="CLV horizon (default from settings)."),
) -> None:
    """The profile service's models: fit CLV, then cluster (the same as fit-clv and cluster)."""
    fit_clv(horizon_days=horizon_days, as_of=None)
    cluster(max_k=max_k, as_of=None)
