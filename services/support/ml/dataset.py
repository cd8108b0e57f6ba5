"""The project's labelled support messages and default catalog (``services/support/data/``, written for this
project, Apache-2.0 like the code), and loaders for the public BANKING77 and CLINC150 file formats.

``catalog.json`` is the default intent catalog: its examples are the only training data. ``oos_validation.jsonl``
holds out-of-scope messages used to calibrate and choose the abstention threshold. ``test.jsonl`` is the
held-out test set (in-scope and ``out_of_scope`` rows), never used for fitting or thresholds."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

from services.support.ml.classifier import LabelledText

OUT_OF_SCOPE = "out_of_scope"


def _data(name: str) -> str:
    return (files("services.support") / "data" / name).read_text(encoding="utf-8")


def _jsonl(name: str) -> list[LabelledText]:
    rows = [json.loads(line) for line in _data(name).splitlines() if line.strip()]
    return [LabelledText(r["text"], r["intent"], r.get("language", "en")) for r in rows]


def default_catalog() -> list[dict[str, Any]]:
    """Intents of the shipped catalog: ``name``, ``description``, ``examples`` (``text``, ``language``)."""
    intents: list[dict[str, Any]] = json.loads(_data("catalog.json"))["intents"]
    return intents


def default_articles() -> list[dict[str, Any]]:
    articles: list[dict[str, Any]] = json.loads(_data("articles.json"))["articles"]
    return articles


def catalog_examples(catalog: list[dict[str, Any]] | None = None) -> list[LabelledText]:
    return [
        LabelledText(example["text"], intent["name"], example.get("language", "en"))
        for intent in (catalog if catalog is not None else default_catalog())
        for example in intent["examples"]
    ]


def out_of_scope_validation() -> list[LabelledText]:
    return _jsonl("oos_validation.jsonl")


def held_out_test() -> list[LabelledText]:
    return _jsonl("test.jsonl")


@dataclass(frozen=True)
class IntentDataset:
    name: str
    train: list[LabelledText]
    oos_validation: list[LabelledText]
    test: list[LabelledText]


def project_dataset() -> IntentDataset:
    return IntentDataset("crm-support", catalog_examples(), out_of_scope_validation(), held_out_test())


def load_banking77(directory: Path) -> IntentDataset:
    """BANKING77's ``train.csv`` and ``test.csv`` (``text,category``); it has no out-of-scope rows."""

    def read(name: str) -> list[LabelledText]:
        with (directory / name).open(newline="", encoding="utf-8") as handle:
            return [LabelledText(row["text"], row["category"]) for row in csv.DictReader(handle)]

    return IntentDataset("banking77", read("train.csv"), [], read("test.csv"))


def load_clinc150(path: Path) -> IntentDataset:
    """CLINC150's ``data_full.json``: ``train``/``val``/``test`` and ``oos_*`` lists of ``[text, label]``."""
    data = json.loads(path.read_text(encoding="utf-8"))

    def rows(key: str, oos: bool = False) -> list[LabelledText]:
        return [LabelledText(text, OUT_OF_SCOPE if oos else label) for text, label in data.get(key, [])]

    return IntentDataset(
        "clinc150",
        rows("train"),
        rows("oos_val", oos=True),
        rows("test") + rows("oos_test", oos=True),
    )
