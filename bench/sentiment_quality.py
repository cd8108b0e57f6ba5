"""Held-out accuracy of VADER, frozen MiniLM + logistic regression, our fine-tuned network (MiniLM or
MPNet), the served English model, and (Chinese) our models (the character n-gram NB-LR alone, the
fine-tuned e5 alone, the served one) against snownlp's own, on every test split, in one run.

    .venv/bin/python bench/sentiment_quality.py [--data-dir var/sentiment] [--english-only | --chinese-only]

Uses the models the server would load from <data-dir>/models (trains the first-start and Chinese ones if
missing; the fine-tune and its ensemble are `crm sentiment train`). The "served" column is exactly what
the server runs: the model it picks (the most accurate on validation data, or CRM_SENTIMENT_MODEL_VERSION;
on a fresh install the first start's frozen MiniLM + word/character n-gram ensemble) in its CPU backend (CRM_SENTIMENT_CPU_BACKEND; by default bf16 on a CPU with AMX, else torch int8 for
MiniLM and ONNX int8 for MPNet); the headline keys (finefood_acc, rt_acc) are that column. The
fine-tuned network alone (float32 torch) and, for an ensemble, its n-gram model alone are scored beside
it (`--zh-backends torch,int8,onnx-int8` also scores the Chinese ensemble in each of those backends,
with its texts/s). Chinese likewise: zh_acc is the Chinese model the server picks (the newest
`crm sentiment train-chinese` ensemble or fine-tune, or CRM_SENTIMENT_ZH_MODEL_VERSION, else the n-gram
model) in the server's backend and batches.

`--english-only` (`--chinese-only`) scores one language and keeps the other's figures from the results
file's previous run, marked `zh_carried_over` (`english_carried_over`): for a machine where only one of
the two fine-tunes has been trained. Writes bench/results/sentiment_quality.json.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import cast

import numpy as np

from services.sentiment import data
from services.sentiment.model import (
    ENSEMBLE_KINDS,
    KIND_CHINESE,
    KIND_FROZEN_ENSEMBLE,
    KIND_ZH_ENSEMBLE,
    Backend,
    NetworkModel,
    list_models,
    load_chinese,
    load_network,
    predict_in_server_batches,
    read_metadata,
)
from services.sentiment.service import chinese_model_dir, english_model_dir
from services.sentiment.settings import SentimentSettings, get_settings
from services.sentiment.training import accuracy, train_chinese, train_first_start
from shared.logging import configure_logging

RESULTS = Path(__file__).parent / "results" / "sentiment_quality.json"


def vader_proba(texts: list[str]) -> np.ndarray:
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    analyzer = SentimentIntensityAnalyzer()
    # compound in [-1, 1] -> [0, 1]; >= 0.5 (compound >= 0) counts as positive.
    return np.array([(analyzer.polarity_scores(t)["compound"] + 1) / 2 for t in texts])


def snownlp_proba(texts: list[str]) -> np.ndarray:
    from snownlp import SnowNLP

    return np.array([SnowNLP(t).sentiments for t in texts])


Row = tuple[str, str, float, int]


def as_served(settings: SentimentSettings, model_dir: Path, backend: Backend) -> NetworkModel:
    """Exactly what the server runs on this machine: its model, its backend (default: auto)."""
    return load_network(
        model_dir,
        device=settings.device,
        backend=backend,
        threads=settings.threads,
        token_budget=settings.token_budget,
    )


def is_chinese_key(key: str) -> bool:
    return key.startswith("zh_") or key.endswith("_zh_acc")


def carry_over(chinese: bool, results: dict[str, float], footer: list[str]) -> None:
    """Keeps the Chinese (or English) figures of the results file's previous run, marked as carried over."""
    previous = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    kept = {
        k: v for k, v in previous.items() if is_chinese_key(k) == chinese and not k.endswith("_carried_over")
    }
    language, headline, option = (
        ("chinese", "zh_acc", "--english-only") if chinese else ("english", "finefood_acc", "--chinese-only")
    )
    if headline not in kept:
        raise SystemExit(f"{option}: {RESULTS} holds no {language} figures to keep")
    results.update(kept)
    results["zh_carried_over" if chinese else "english_carried_over"] = True
    print(f"  {language}: not scored; kept from {RESULTS.name}: {kept}", flush=True)
    footer.append(f"{language}: not scored (kept from the previous run)")


def score_english(settings: SentimentSettings, rows: list[Row], results: dict[str, float]) -> str:
    """Scores every English test set; returns the footer line naming the models."""
    models_dir = Path(settings.data_dir) / "models"
    first_start = next(iter(list_models(models_dir, KIND_FROZEN_ENSEMBLE)), None) or train_first_start(
        settings.data_dir, per_set_cap=settings.first_start_cap
    )
    frozen_dir = models_dir / read_metadata(first_start)["network"]
    served_dir = english_model_dir(settings)
    assert served_dir is not None  # the first-start model exists by now
    served_meta = read_metadata(served_dir)
    # An ensemble's network (for the first start's ensemble: the frozen network, no fine-tune).
    ft_dir = models_dir / served_meta["network"] if served_meta["kind"] in ENSEMBLE_KINDS else served_dir
    frozen = load_network(frozen_dir)
    finetuned = load_network(ft_dir) if ft_dir != frozen_dir else None
    served = as_served(settings, served_dir, settings.cpu_backend)
    short = {"rotten_tomatoes": "rt", "finefood": "finefood", "pang_lee": "pang_lee"}
    for ds in data.english_datasets(settings.data_dir):
        key = short[ds.name]
        started = time.perf_counter()
        scores = {
            "vader": accuracy(vader_proba(ds.test.texts), ds.test.labels),
            "frozen": accuracy(frozen.predict_proba(ds.test.texts), ds.test.labels),
        }
        if finetuned is not None:
            scores["finetuned"] = accuracy(finetuned.predict_proba(ds.test.texts), ds.test.labels)
        if served.ngram is not None:
            ngram = served.ngram.predict_proba(ds.test.texts)[:, 1]
            scores["ngram"] = accuracy(ngram, ds.test.labels)
        # In random batches of the server's size: int8 scores depend on a text's batch neighbours.
        served_probs = predict_in_server_batches(served, ds.test.texts, settings.max_batch_size)
        scores["served"] = accuracy(served_probs, ds.test.labels)
        for model, acc in scores.items():
            rows.append((ds.name, model, acc, len(ds.test)))
            results[f"{model}_{key}_acc"] = round(acc, 4)
        # The headline keys: exactly the served English model.
        results[f"{key}_acc"] = round(scores["served"], 4)
        print(f"  {ds.name}: {time.perf_counter() - started:.0f}s", flush=True)
    return (
        f"frozen: {frozen.version}  fine-tuned: {finetuned.version if finetuned else 'none (run crm sentiment train)'}"
        f"  served: {served.version} ({served.kind}, {served.backend}, n-gram weight {served.ngram_weight})"
    )


def score_chinese(
    settings: SentimentSettings, zh_backends: list[str], rows: list[Row], results: dict[str, float]
) -> str:
    """Scores the Chinese test split, ours against snownlp's; returns the footer line naming our model."""
    models_dir = Path(settings.data_dir) / "models"
    zh_dir = next(iter(list_models(models_dir, KIND_CHINESE)), None) or train_chinese(settings.data_dir)
    zh = data.chinese()
    started = time.perf_counter()
    ngram_zh = accuracy(load_chinese(zh_dir).predict_proba(zh.test.texts), zh.test.labels)
    rows.append(("chinese", "char n-gram NB-LR alone", ngram_zh, len(zh.test)))
    results["ngram_zh_acc"] = round(ngram_zh, 4)
    served_zh_dir = chinese_model_dir(settings)
    assert served_zh_dir is not None  # the n-gram model exists by now
    served_zh_meta = read_metadata(served_zh_dir)
    if served_zh_meta["kind"] == KIND_CHINESE:
        served_zh_name, ours = served_zh_dir.name, ngram_zh
    else:
        zh_network_dir = (
            models_dir / served_zh_meta["network"]
            if served_zh_meta["kind"] == KIND_ZH_ENSEMBLE
            else served_zh_dir
        )
        zh_network = accuracy(load_network(zh_network_dir).predict_proba(zh.test.texts), zh.test.labels)
        rows.append(("chinese", "fine-tuned e5 alone", zh_network, len(zh.test)))
        results["finetuned_zh_acc"] = round(zh_network, 4)
        served_zh = as_served(settings, served_zh_dir, settings.zh_cpu_backend)
        ours = accuracy(
            predict_in_server_batches(served_zh, zh.test.texts, settings.max_batch_size), zh.test.labels
        )
        served_zh_name = f"{served_zh.version} ({served_zh.kind}, {served_zh.backend})"
        rows.append(("chinese", "served", ours, len(zh.test)))
        for backend in zh_backends:
            candidate = as_served(settings, served_zh_dir, cast(Backend, backend))
            began = time.perf_counter()
            probs = predict_in_server_batches(candidate, zh.test.texts, settings.max_batch_size)
            speed = len(zh.test) / (time.perf_counter() - began)
            acc = accuracy(probs, zh.test.labels)
            rows.append(("chinese", f"served in {candidate.backend} ({speed:.0f}/s)", acc, len(zh.test)))
            results[f"zh_{candidate.backend.replace('-', '_')}_acc"] = round(acc, 4)
    theirs = accuracy(snownlp_proba(zh.test.texts), zh.test.labels)
    rows.append(("chinese", "snownlp", theirs, len(zh.test)))
    print(f"  chinese: {time.perf_counter() - started:.0f}s", flush=True)
    results.update(
        {
            "zh_acc": round(ours, 4),
            "zh_snownlp_acc": round(theirs, 4),
            "zh_margin_points": round(100 * (ours - theirs), 2),
        }
    )
    return f"chinese: {served_zh_name}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-dir", default=os.environ.get("CRM_SENTIMENT_DATA_DIR", "var/sentiment"))
    parser.add_argument(
        "--zh-backends",
        default="",
        help="Comma-separated CPU backends (e.g. torch,int8,onnx-int8) to also score the served Chinese "
        "network ensemble in, with texts/s, for choosing CRM_SENTIMENT_ZH_CPU_BACKEND.",
    )
    only = parser.add_mutually_exclusive_group()
    only.add_argument(
        "--english-only",
        action="store_true",
        help="Score the English sets only and keep the Chinese figures of the results file's previous run "
        "(marked zh_carried_over), e.g. on a machine where the Chinese fine-tune has not been trained.",
    )
    only.add_argument(
        "--chinese-only",
        action="store_true",
        help="Score the Chinese split only and keep the English figures of the results file's previous run "
        "(marked english_carried_over), e.g. on a machine where the English fine-tune has not been trained.",
    )
    args = parser.parse_args()
    configure_logging("WARNING", json=False)
    settings = get_settings().model_copy(update={"data_dir": args.data_dir})
    rows: list[Row] = []
    results: dict[str, float] = {}
    footer: list[str] = []
    if args.chinese_only:
        carry_over(False, results, footer)
    else:
        footer.append(score_english(settings, rows, results))
    if args.english_only:
        carry_over(True, results, footer)
    else:
        footer.append(score_chinese(settings, list(filter(None, args.zh_backends.split(","))), rows, results))
    write_table(rows, results, footer)


def write_table(rows: list[Row], results: dict[str, float], footer: list[str]) -> None:
    results["vader_finefood_acc"] = results.get("vader_finefood_acc", float("nan"))
    print(f"\n{'test set':<18}{'model':<28}{'accuracy':>9}{'n':>7}")
    for name, model, acc, n in rows:
        print(f"{name:<18}{model:<28}{acc:>9.4f}{n:>7}")
    print("\n" + "  ".join(footer))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
