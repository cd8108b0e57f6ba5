"""The ``crm`` command line. Each service may add its own commands in ``services/<name>/cli.py``
(a ``typer.Typer`` named ``app``), mounted as ``crm <name> ...``; ``crm train <name>`` runs that
service's ``train`` command."""

from __future__ import annotations

import importlib
import itertools
import os
import subprocess
import sys
import threading
from enum import StrEnum
from pathlib import Path

import typer

from shared.logging import configure_logging

SERVICES = ("profile", "recsys", "sentiment", "churn", "gateway")

app = typer.Typer(
    help="AI-driven CRM: run the fleet, replay data, train models.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
contracts_app = typer.Typer(help="The event contract: JSON Schemas and the AsyncAPI document.")
app.add_typer(contracts_app, name="contracts")


@app.callback()
def _main(log_level: str = typer.Option("INFO", envvar="CRM_LOG_LEVEL")) -> None:
    configure_logging(log_level, json=False)


def _service_cli(name: str) -> typer.Typer | None:
    if not (Path(__file__).parent / name / "cli.py").exists():
        return None
    module = importlib.import_module(f"services.{name}.cli")
    return getattr(module, "app", None)


for _name in SERVICES:
    _sub = _service_cli(_name)
    if _sub is not None:
        app.add_typer(_sub, name=_name, help=f"Commands of the {_name} service.")


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def train(
    ctx: typer.Context, service: str = typer.Argument(..., help="Which service's model to train.")
) -> None:
    """Train a service's model: the same as `crm <service> train ...`."""
    if _service_cli(service) is None:
        raise typer.BadParameter(f"no service named {service!r} has commands; known: {', '.join(SERVICES)}")
    raise SystemExit(subprocess.call([sys.executable, "-m", "services.cli", service, "train", *ctx.args]))


class Dataset(StrEnum):
    movielens = "movielens"
    cdnow = "cdnow"


def _bootstrap_or_fail(bootstrap: str | None) -> str:
    value = bootstrap or os.environ.get("CRM_KAFKA_BOOTSTRAP")
    if not value:
        raise typer.BadParameter("no Kafka to publish to: pass --bootstrap or set CRM_KAFKA_BOOTSTRAP")
    return value


@app.command()
def replay(
    dataset: Dataset = typer.Argument(
        ..., help="movielens: ml-100k users and ratings; cdnow: CDNOW purchases."
    ),
    rate: float = typer.Option(0, help="Events per second; 0 publishes as fast as the broker acknowledges."),
    limit: int = typer.Option(0, help="Stop after this many events (0: all)."),
    sample: bool = typer.Option(
        False, help="CDNOW: the 1/10 sample (2,357 customers) instead of all 23,570."
    ),
    views: bool = typer.Option(False, help="MovieLens: emit a product view before each rating."),
    to_now: bool = typer.Option(
        True,
        "--to-now/--original-times",
        help="Shift event times by whole days so the data set ends now (the fleet's clock is the wall clock).",
    ),
    bootstrap: str | None = typer.Option(None, help="Kafka bootstrap servers; default $CRM_KAFKA_BOOTSTRAP."),
) -> None:
    """Publish a real data set as CloudEvents, in time order, with a progress bar."""
    from shared.contracts import utcnow
    from shared.kafka import EventPublisher, ensure_topics
    from shared.replay import cdnow_events, movielens_events
    from shared.replay import replay as run_replay
    from shared.settings import KafkaSettings

    settings = KafkaSettings(bootstrap=_bootstrap_or_fail(bootstrap))
    now = utcnow() if to_now else None
    events = (
        movielens_events(with_views=views, now=now)
        if dataset is Dataset.movielens
        else cdnow_events(sample=sample, now=now)
    )
    if limit:
        events = itertools.islice(events, limit)
    from shared.contracts import Topic

    ensure_topics(settings, [Topic.INTERACTIONS])
    publisher = EventPublisher(settings, client_id="crm-replay")
    try:
        sent = run_replay(events, publisher, rate=rate or None, description=dataset.value)
    finally:
        publisher.close()
    typer.echo(f"published {sent} events from {dataset.value}")


@app.command()
def broker(port: int = typer.Option(9092, help="Port to listen on (127.0.0.1).")) -> None:
    """Run the embedded Kafka-compatible broker (Tansu, memory only) in the foreground."""
    from shared.broker import EmbeddedBroker

    stop = threading.Event()
    from services.fleet import install_stop_signals

    install_stop_signals(stop)
    with EmbeddedBroker(port=port) as embedded:
        typer.echo(f"Kafka-compatible broker at {embedded.bootstrap} (memory only). Ctrl-C stops it.")
        stop.wait()


@app.command()
def up(
    demo: bool = typer.Option(
        True, help="Replay MovieLens 100k and the CDNOW sample once the fleet is ready."
    ),
    demo_rate: float = typer.Option(3000, help="Demo events per second."),
    data_dir: Path = typer.Option(Path("var"), help="SQLite files, model versions and logs."),
    ready_timeout: float = typer.Option(300, help="Seconds to wait for every /readyz."),
    port_offset: int = typer.Option(0, help="Add this to every service port (8000-8004)."),
) -> None:
    """Start the broker and every service, load demo data, print the URLs; Ctrl-C stops everything."""
    from services.fleet import DemoLoad, Fleet, FleetError, FleetInterrupted, install_stop_signals

    stop = threading.Event()
    install_stop_signals(stop)
    fleet = Fleet(data_dir=data_dir, port_offset=port_offset)
    typer.echo(f"Starting {', '.join(fleet.services)} (logs in {data_dir}/logs) ...")
    try:
        fleet.start()
        ready = fleet.wait_ready(ready_timeout, stop)
        typer.echo(
            f"Kafka: {fleet.bootstrap}"
            + (" (embedded broker)" if "CRM_KAFKA_BOOTSTRAP" not in os.environ else "")
        )
        for name in fleet.services:
            typer.echo(
                f"  {name:<10} {fleet.url_of(name)}  (docs: {fleet.url_of(name)}/docs, ready in {ready[name]:.0f}s)"
            )
        if "gateway" in fleet.services:
            typer.echo(f"\nOpen {fleet.url_of('gateway')}/docs  — admin API key: {fleet.admin_key}")
            typer.echo(
                f"Console: {fleet.url_of('gateway')}/console  — sign in with the admin API key above"
                f" (kept in {data_dir}/dev-admin-key)"
            )
        if demo:
            DemoLoad(fleet, demo_rate, stop).start()
        typer.echo("The fleet is up. Ctrl-C stops everything.")
        stop.wait()
    except FleetInterrupted:
        pass
    except FleetError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    finally:
        typer.echo("Stopping the fleet ...")
        fleet.stop()
        typer.echo("Stopped; no process left behind.")


@contracts_app.command("export")
def contracts_export(
    out: Path = typer.Option(Path("docs"), help="Writes <out>/asyncapi.yaml and <out>/schemas/*.json."),
) -> None:
    """Regenerate the JSON Schemas and the AsyncAPI document from the payload models."""
    from shared.contracts.docs import write_contract_docs

    for path in write_contract_docs(out):
        typer.echo(f"wrote {path}")


if __name__ == "__main__":
    app()
