"""Held-out accuracy of VADER, frozen MiniLM + logistic regression, our fine-tuned MiniLM, and (Chinese)
our model against snownlp's own, on every test split, in one run.

    .venv/bin/python bench/sentiment_quality.py [--data-dir var/sentiment]

Uses the newest models under <data-dir>/models (trains the first-start and Chinese ones if missing; the
fine-tune is `crm sentiment train`). The fine-tuned model is scored in float32 torch and, as well, in the
CPU backend the server runs (``CRM_SENTIMENT_CPU_BACKEND``, ONNX Runtime int8 by default). Writes bench/results/sentiment_quality.json.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

from services.sentiment import data
from services.sentiment.model import (
    KIND_CHINESE,
    KIND_FINETUNED,
    KIND_FROZEN,
    list_models,
    load_chinese,
    load_english,
)
from services.sentiment.settings import get_settings
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-dir", default=os.environ.get("CRM_SENTIMENT_DATA_DIR", "var/sentiment"))
    args = parser.parse_args()
    configure_logging("WARNING", json=False)
    models_dir = Path(args.data_dir) / "models"
    frozen_dir = next(iter(list_models(models_dir, KIND_FROZEN)), None) or train_first_start(args.data_dir)
    zh_dir = next(iter(list_models(models_dir, KIND_CHINESE)), None) or train_chinese(args.data_dir)
    ft_dir = next(iter(list_models(models_dir, KIND_FINETUNED)), None)

    english = data.english_datasets(args.data_dir)
    frozen = load_english(frozen_dir)
    finetuned = load_english(ft_dir) if ft_dir else None
    # What the server runs on this machine's CPU (ONNX Runtime int8 by default): scored on the same texts.
    served_backend = get_settings().cpu_backend
    served = load_english(ft_dir, backend=served_backend) if ft_dir and served_backend != "torch" else None
    rows: list[tuple[str, str, float, int]] = []
    results: dict[str, float] = {}
    short = {"rotten_tomatoes": "rt", "finefood": "finefood", "pang_lee": "pang_lee"}
    for ds in english:
        key = short[ds.name]
        started = time.perf_counter()
        scores = {
            "vader": accuracy(vader_proba(ds.test.texts), ds.test.labels),
            "frozen": accuracy(frozen.predict_proba(ds.test.texts), ds.test.labels),
        }
        if finetuned is not None:
            scores["finetuned"] = accuracy(finetuned.predict_proba(ds.test.texts), ds.test.labels)
        if served is not None:
            scores[f"finetuned_{served.backend.replace('-', '_')}"] = accuracy(
                served.predict_proba(ds.test.texts), ds.test.labels
            )
        for model, acc in scores.items():
            rows.append((ds.name, model, acc, len(ds.test)))
            results[f"{model}_{key}_acc"] = round(acc, 4)
        # The headline keys: our served English model (fine-tuned when there is one).
        results[f"{key}_acc"] = round(scores.get("finetuned", scores["frozen"]), 4)
        print(f"  {ds.name}: {time.perf_counter() - started:.0f}s", flush=True)

    zh = data.chinese()
    ours = accuracy(load_chinese(zh_dir).predict_proba(zh.test.texts), zh.test.labels)
    theirs = accuracy(snownlp_proba(zh.test.texts), zh.test.labels)
    rows += [
        ("chinese", "ours (char n-gram NB-LR)", ours, len(zh.test)),
        ("chinese", "snownlp", theirs, len(zh.test)),
    ]
    results.update(
        {
            "zh_acc": round(ours, 4),
            "zh_snownlp_acc": round(theirs, 4),
            "zh_margin_points": round(100 * (ours - theirs), 2),
        }
    )
    results["vader_finefood_acc"] = results.get("vader_finefood_acc", float("nan"))

    print(f"\n{'test set':<18}{'model':<28}{'accuracy':>9}{'n':>7}")
    for name, model, acc, n in rows:
        print(f"{name:<18}{model:<28}{acc:>9.4f}{n:>7}")
    print(
        f"\nfrozen: {frozen.version}  fine-tuned: {finetuned.version if finetuned else 'none (run crm sentiment train)'}"
        f"  chinese: {zh_dir.name}"
    )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
