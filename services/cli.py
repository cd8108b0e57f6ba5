"""The ``crm`` command line. Each service may add its own commands in ``services/<name>/cli.py``
(a ``typer.Typer`` named ``app``), mounted as ``crm <name> ...``; ``crm train <name>`` runs that
service's ``train`` command."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import typer

from shared.logging import configure_logging

SERVICES = ("profile", "recsys", "sentiment", "churn", "gateway")

app = typer.Typer(help="AI-driven CRM: run the fleet, replay data, train models.", no_args_is_help=True)


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
def train(ctx: typer.Context, service: str = typer.Argument(..., help="Which service's model to train.")) -> None:
    """Train a service's model: the same as `crm <service> train ...`."""
    if _service_cli(service) is None:
        raise typer.BadParameter(f"no service named {service!r} has commands; known: {', '.join(SERVICES)}")
    raise SystemExit(subprocess.call([sys.executable, "-m", "services.cli", service, "train", *ctx.args]))


if __name__ == "__main__":
    app()
