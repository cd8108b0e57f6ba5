"""``crm gateway ...``: API keys from the command line."""

from __future__ import annotations

import typer

app = typer.Typer(help="The public API gateway: API keys.", no_args_is_help=True)


@app.command("new-key")
def new_key() -> None:
    """Print a fresh key to use as CRM_GATEWAY_BOOTSTRAP_ADMIN_KEY (nothing is stored)."""
    from shared.auth import generate_api_key

    typer.echo(generate_api_key()[1])


def _store() -> object:
    from services.gateway.models import Base
    from services.gateway.security import GatewayKeyStore
    from services.gateway.settings import get_settings
    from shared.db import make_engine, make_session_factory, sqlite_url

    settings = get_settings()
    engine = make_engine(settings.database_url or sqlite_url(settings.data_dir, "gateway"))
    Base.metadata.create_all(engine)
    return GatewayKeyStore(
        make_session_factory(engine),
        bootstrap_key=None,
        cache_s=0,
        pepper=settings.api_key_pepper.get_secret_value(),
    )


@app.command("create-key")
def create_key(
    name: str = typer.Option(..., help="Who uses the key."),
    scope: list[str] = typer.Option(..., "--scope", help="Repeat: events:write, customers:read, ..., admin."),
    rate_limit: float | None = typer.Option(None, help="Requests/s for this key (default: the gateway's)."),
) -> None:
    """Create an API key in the gateway's database and print it (shown once)."""
    from services.gateway.security import GatewayKeyStore

    store = _store()
    assert isinstance(store, GatewayKeyStore)
    row, key = store.create(name, scope, rate_limit)
    typer.echo(f"key_id={row.key_id} scopes={','.join(row.scopes)}")
    typer.echo(key)


@app.command("list-keys")
def list_keys(include_revoked: bool = typer.Option(False)) -> None:
    """List API keys (ids, names, scopes; never the keys)."""
    from services.gateway.security import GatewayKeyStore

    store = _store()
    assert isinstance(store, GatewayKeyStore)
    for row in store.list(include_revoked):
        state = "active" if row.active else "revoked"
        typer.echo(f"{row.key_id}\t{state}\t{row.name}\t{','.join(row.scopes)}")


@app.command("revoke-key")
def revoke_key(key_id: str) -> None:
    """Revoke an API key (running gateways notice within CRM_GATEWAY_KEY_CACHE_S)."""
    from services.gateway.security import GatewayKeyStore

    store = _store()
    assert isinstance(store, GatewayKeyStore)
    if store.revoke(key_id) is None:
        raise typer.BadParameter(f"no API key {key_id!r}")
    typer.echo(f"revoked {key_id}")
