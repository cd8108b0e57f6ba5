"""Held-out quality of the support triage model against a TF-IDF + logistic-regression baseline, in one run.

    .venv/bin/python bench/support_quality.py [--chinese-encoder-dir var/support/models/e5-zh]
    .venv/bin/python bench/support_quality.py --banking77 DIR      # DIR/train.csv, DIR/test.csv (text,category)
    .venv/bin/python bench/support_quality.py --clinc150 data_full.json

On the project's set (services/support/data/): the model is fitted on the default catalog's examples, its
abstention threshold chosen on them (out of fold) and the out-of-scope validation messages; the held-out
test (in-scope and out-of-scope, en and zh) is scored once. Also with only 5 examples per intent (a seeded
draw; the same draw for both models), and suggestion hit@3: for in-scope test messages, whether one of the
top three knowledge-base articles is written for the message's true intent. Writes
bench/results/support_quality.json (or support_quality_<dataset>.json for the public sets).
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import f1_score

from services.support.ml.classifier import UNKNOWN, Encoders, IntentClassifier, LabelledText, TfidfBaseline
from services.support.ml.dataset import (
    OUT_OF_SCOPE,
    IntentDataset,
    default_articles,
    load_banking77,
    load_clinc150,
    project_dataset,
)
from services.support.ml.encoder import SentenceEncoder, e5_encoder
from services.support.ml.knowledge import Article, KnowledgeIndex
from services.support.service import CachedEncoder
from shared.e5 import build_base

RESULTS = Path(__file__).parent / "results"


def gold(label: str) -> str:
    return UNKNOWN if label == OUT_OF_SCOPE else label


def scores(predicted: list[str], test: list[LabelledText]) -> dict[str, float]:
    truth = [gold(x.intent) for x in test]
    oos = [p == UNKNOWN for p, t in zip(predicted, truth, strict=True) if t == UNKNOWN]
    return {
        "accuracy": float(np.mean([p == t for p, t in zip(predicted, truth, strict=True)])),
        "macro_f1": float(f1_score(truth, predicted, average="macro", zero_division=0)),
        "oos_recall": float(np.mean(oos)) if oos else float("nan"),
        "in_scope_accuracy": float(
            np.mean([p == t for p, t in zip(predicted, truth, strict=True) if t != UNKNOWN])
        ),
    }


def few_shot(train: list[LabelledText], k: int, seed: int = 7) -> list[LabelledText]:
    rng = random.Random(seed)
    by_intent: dict[str, list[LabelledText]] = {}
    for example in train:
        by_intent.setdefault(example.intent, []).append(example)
    return [x for rows in by_intent.values() for x in rng.sample(rows, min(k, len(rows)))]


def run(dataset: IntentDataset, encoders: Encoders, with_kb: bool) -> dict[str, object]:
    oos = [x.text for x in dataset.oos_validation]
    texts = [x.text for x in dataset.test]
    started = time.perf_counter()
    model = IntentClassifier(encoders).fit(dataset.train, oos)
    fit_s = time.perf_counter() - started
    predictions = model.predict(texts)
    ours = scores([p.intent for p in predictions], dataset.test)
    baseline = scores(TfidfBaseline().fit(dataset.train, oos).predict(texts), dataset.test)
    five = few_shot(dataset.train, 5)
    ours_5 = scores(
        [p.intent for p in IntentClassifier(encoders).fit(five, oos).predict(texts)], dataset.test
    )
    baseline_5 = scores(TfidfBaseline().fit(five, oos).predict(texts), dataset.test)
    result: dict[str, object] = {
        "dataset": dataset.name,
        **ours,
        "baseline_accuracy": baseline["accuracy"],
        "baseline_macro_f1": baseline["macro_f1"],
        "baseline_oos_recall": baseline["oos_recall"],
        "accuracy_5shot": ours_5["accuracy"],
        "oos_recall_5shot": ours_5["oos_recall"],
        "baseline_accuracy_5shot": baseline_5["accuracy"],
        "thresholds": model.thresholds,
        "fit_s": fit_s,
        "train_examples": len(dataset.train),
        "test_messages": len(dataset.test),
        "intents": len(model.intents),
    }
    for language in sorted({x.language for x in dataset.test}):
        rows = [i for i, x in enumerate(dataset.test) if x.language == language]
        part = scores([predictions[i].intent for i in rows], [dataset.test[i] for i in rows])
        result[f"accuracy_{language}"] = part["accuracy"]
        result[f"oos_recall_{language}"] = part["oos_recall"]
    if with_kb:
        articles = [
            Article(a["id"], a["title"], a["body"], a["language"], tuple(a["intents"]), a.get("reply"))
            for a in default_articles()
        ]
        index = KnowledgeIndex(articles, {s: encoders.encoder(s) for s in encoders.spaces}, encoders.space_of)
        hits = []
        for message, prediction in zip(dataset.test, predictions, strict=True):
            if message.intent == OUT_OF_SCOPE:
                continue
            found = index.search(
                message.text, message.language, prediction.top_intent, prediction.confidence, {}, k=3
            )
            hits.append(any(message.intent in f.article.intents for f in found))
        result["hit_at_3"] = float(np.mean(hits))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--chinese-encoder-dir", type=Path, default=Path("var/support/models/e5-zh"))
    parser.add_argument("--banking77", type=Path, help="directory with train.csv and test.csv")
    parser.add_argument("--clinc150", type=Path, help="path of data_full.json")
    args = parser.parse_args()
    torch.set_num_threads(2)
    if not (args.chinese_encoder_dir / "config.json").is_file():
        print(f"building the Chinese encoder into {args.chinese_encoder_dir} ...")
        build_base(args.chinese_encoder_dir, chinese_only=True)
    english = CachedEncoder(SentenceEncoder())
    chinese = CachedEncoder(e5_encoder(args.chinese_encoder_dir))
    if args.banking77:
        dataset, name = load_banking77(args.banking77), "support_quality_banking77.json"
    elif args.clinc150:
        dataset, name = load_clinc150(args.clinc150), "support_quality_clinc150.json"
    else:
        dataset, name = project_dataset(), "support_quality.json"
    result = run(dataset, Encoders(english, {"zh": chinese}), with_kb=dataset.name == "crm-support")
    result["date"] = datetime.now(UTC).isoformat(timespec="seconds")
    result["machine"] = (
        f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads"
    )
    result["command"] = "python bench/support_quality.py"
    print(f"{'metric':<28}{'ours':>10}{'tf-idf+lr':>12}")
    for ours, base in [
        ("accuracy", "baseline_accuracy"),
        ("macro_f1", "baseline_macro_f1"),
        ("oos_recall", "baseline_oos_recall"),
        ("accuracy_5shot", "baseline_accuracy_5shot"),
    ]:
        print(f"{ours:<28}{result[ours]:>10.3f}{result[base]:>12.3f}")  # type: ignore[str-format]
    for key in ("accuracy_en", "accuracy_zh", "oos_recall_en", "oos_recall_zh", "hit_at_3"):
        if key in result:
            print(f"{key:<28}{result[key]:>10.3f}")  # type: ignore[str-format]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / name).write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {RESULTS / name}")


if __name__ == "__main__":
    main()
