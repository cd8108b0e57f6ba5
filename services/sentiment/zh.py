"""Pieces of the n-gram models (the Chinese model, the English ensemble's NB-LR) that must be importable
by name (they live inside their pickles)."""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, TransformerMixin


class NBWeighting(TransformerMixin, BaseEstimator):  # type: ignore[misc]
    """Scales binary n-gram features by their naive-Bayes log-count ratio (Wang & Manning's NB-LR)."""

    def __init__(self, alpha: float = 1.0) -> None:
        self.alpha = alpha

    def fit(self, x: Any, y: Any) -> NBWeighting:
        labels = np.asarray(y)
        pos = self.alpha + np.asarray(x[labels == 1].sum(0)).ravel()
        neg = self.alpha + np.asarray(x[labels == 0].sum(0)).ravel()
        self.ratio_ = np.log((pos / pos.sum()) / (neg / neg.sum()))
        return self

    def transform(self, x: Any) -> Any:
        return x @ sp.diags(self.ratio_)


class WeightedAverage(BaseEstimator):  # type: ignore[misc]
    """P(positive) as a weighted mean of fitted pipelines' (the first start's word and character n-gram
    NB-LRs); ``weights`` sum to 1."""

    def __init__(self, pipelines: list[Any], weights: list[float]) -> None:
        self.pipelines = pipelines
        self.weights = weights

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        positive = sum(
            w * p.predict_proba(texts)[:, 1] for p, w in zip(self.pipelines, self.weights, strict=True)
        )
        positive = np.asarray(positive, dtype=np.float64)
        return np.stack([1 - positive, positive], axis=1)
