from __future__ import annotations

import numpy as np

from services.sentiment import data
from services.sentiment.model import detect_language, neutral_margin
from services.sentiment.service import label_for


def test_languages_are_detected_from_cjk_characters() -> None:
    assert detect_language("这本书写得很好") == "zh"
    assert detect_language("Great product, 好!") == "en"
    assert detect_language("Loved it") == "en"


def test_labels_are_neutral_inside_the_margin() -> None:
    assert label_for(0.55, 0.1) == "neutral"
    assert label_for(0.61, 0.1) == "positive"
    assert label_for(0.2, 0.1) == "negative"


def test_the_neutral_margin_reaches_the_target_precision_on_validation_data() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 2000)
    # Confident predictions are right, those near 0.5 are coin flips.
    probs = np.where(rng.random(2000) < 0.7, np.where(labels == 1, 0.9, 0.1), rng.uniform(0.4, 0.6, 2000))
    margin = neutral_margin(probs, labels, target_precision=0.9, max_neutral=0.5)

    keep = np.abs(probs - 0.5) >= margin
    assert 0 < margin <= 0.11
    assert ((probs[keep] >= 0.5) == labels[keep]).mean() >= 0.9


def test_rotten_tomatoes_test_split_is_disjoint_and_stable() -> None:
    ds = data.rotten_tomatoes()
    assert len(ds.test) > 900
    assert not set(ds.test.texts) & set(ds.train.texts)
    assert data.rotten_tomatoes().test.texts == ds.test.texts


def test_chinese_split_is_disjoint_and_balanced() -> None:
    ds = data.chinese()
    assert not set(ds.test.texts) & set(ds.train.texts)
    assert 0.4 < sum(ds.test.labels) / len(ds.test) < 0.6
