"""Intent classification: a sentence-embedding logistic regression averaged with a character n-gram one,
a calibrated confidence, and ``unknown`` below a threshold chosen on validation data.

Fitting is seconds on a catalog of a few hundred examples, so a catalog change refits in the background
and the new model is swapped in whole (no retraining step for the user). The confidence is calibrated on
out-of-fold predictions of the catalog's own examples plus out-of-scope validation messages: an isotonic
map from the ensemble's top probability to "this answer is right", and the abstention threshold is the
one that maximises the mean of in-scope accuracy and out-of-scope recall on those same predictions.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from threadpoolctl import threadpool_limits

UNKNOWN = "unknown"
Encode = Callable[[Sequence[str]], np.ndarray]
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


def detect_language(text: str) -> str:
    """``zh`` when a fifth of the letters are CJK ideographs, else ``en`` (the catalog's two languages)."""
    letters = [c for c in text if c.isalpha()]
    if not letters:
        return "en"
    cjk = sum(1 for c in letters if _CJK.match(c))
    return "zh" if cjk / len(letters) >= 0.2 else "en"


@dataclass(frozen=True)
class LabelledText:
    text: str
    intent: str
    language: str = "en"


@dataclass(frozen=True)
class ClassifierConfig:
    embedding_c: float = 10.0
    ngram_c: float = 20.0
    embedding_weight: float = 0.5
    folds: int = 3
    # The threshold maximises (1 - w) * in-scope accuracy + w * out-of-scope recall on validation data.
    oos_weight: float = 0.5
    # Used when a catalog is too small to cross-validate (fewer than two examples for some intent).
    fallback_threshold: float = 0.5


@dataclass(frozen=True)
class IntentPrediction:
    intent: str  # UNKNOWN when the confidence is under the threshold
    confidence: float  # calibrated probability that the top intent is right
    top_intent: str  # the best in-scope intent, even when abstaining
    alternatives: list[tuple[str, float]] = field(default_factory=list)


class Encoders:
    """One sentence encoder per language (MiniLM for English, e5 for Chinese); a language without its own
    encoder uses the default one. Each maps texts to unit vectors."""

    def __init__(self, default: Encode, by_language: dict[str, Encode] | None = None) -> None:
        self.default = default
        self.by_language = dict(by_language or {})

    @property
    def spaces(self) -> list[str]:
        return ["default", *sorted(self.by_language)]

    def encoder(self, space: str) -> Encode:
        return self.default if space == "default" else self.by_language[space]

    def space_of(self, language: str) -> str:
        return language if language in self.by_language else "default"

    def for_messages(self, space: str) -> Encode:
        """The encoder for customers' messages: never a memoising one (messages are unique, and an erased
        customer's text must not stay in memory)."""
        encoder = self.encoder(space)
        uncached: Encode = getattr(encoder, "uncached", encoder)
        return uncached


class _Ensemble:
    """Per embedding space a logistic regression on the vectors, plus one on character n-grams; a text's
    probabilities average its language's embedding model with the n-gram model."""

    def __init__(self, config: ClassifierConfig) -> None:
        self.config = config
        self.ngrams = TfidfVectorizer(
            analyzer="char_wb", ngram_range=(1, 4), sublinear_tf=True, lowercase=True
        )
        self.ngram_lr = LogisticRegression(C=config.ngram_c, max_iter=2000)
        self.embed_lr: dict[str, LogisticRegression] = {}
        self.vectors: dict[str, np.ndarray] = {}
        self.labels: np.ndarray = np.zeros(0)
        self.classes: list[str] = []

    def fit(self, texts: Sequence[str], vectors: dict[str, np.ndarray], labels: Sequence[str]) -> _Ensemble:
        self.ngram_lr.fit(self.ngrams.fit_transform(texts), labels)
        self.classes = [str(c) for c in self.ngram_lr.classes_]
        self.labels = np.array(labels)
        for space, matrix in vectors.items():
            self.embed_lr[space] = LogisticRegression(C=self.config.embedding_c, max_iter=2000).fit(
                matrix, labels
            )
            self.vectors[space] = matrix
        return self

    def scores(self, texts: Sequence[str], vectors: np.ndarray, space: str) -> tuple[np.ndarray, np.ndarray]:
        """Class probabilities and each text's best cosine similarity to a catalog example."""
        w = self.config.embedding_weight
        p_ngram = self.ngram_lr.predict_proba(self.ngrams.transform(texts))
        p_embed = self.embed_lr[space].predict_proba(vectors)
        nearest = (vectors @ self.vectors[space].T).max(axis=1)
        proba: np.ndarray = w * p_embed + (1 - w) * p_ngram
        return proba, nearest


def _confidence_features(proba: np.ndarray, nearest: np.ndarray) -> np.ndarray:
    ranked = np.sort(proba, axis=1)
    margin = ranked[:, -1] - (ranked[:, -2] if proba.shape[1] > 1 else 0.0)
    return np.column_stack([ranked[:, -1], margin, nearest])


class IntentClassifier:
    """Fit on a catalog's examples; :meth:`predict` answers an intent or ``unknown`` with a confidence."""

    def __init__(self, encoders: Encoders | Encode, config: ClassifierConfig | None = None) -> None:
        self.encoders = encoders if isinstance(encoders, Encoders) else Encoders(encoders)
        self.config = config or ClassifierConfig()
        self.model: _Ensemble | None = None
        self.calibration: dict[str, LogisticRegression] = {}
        self.thresholds: dict[str, float] = {}
        self.intents: list[str] = []

    def _vectors(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        return {space: self.encoders.encoder(space)(texts) for space in self.encoders.spaces}

    def fit(self, examples: Sequence[LabelledText], out_of_scope: Sequence[str] = ()) -> IntentClassifier:
        """Out-of-scope messages are learnt as one more class, ``unknown``; on top of it, a message whose
        calibrated confidence is under its space's threshold is ``unknown`` too."""
        texts = [e.text for e in examples] + list(out_of_scope)
        labels = [e.intent for e in examples] + [UNKNOWN] * len(out_of_scope)
        vectors = self._vectors(texts)
        # One BLAS thread: these small lbfgs fits were 20x slower with a thread pool on a busy 2-core machine.
        with threadpool_limits(limits=1):
            self.model = _Ensemble(self.config).fit(texts, vectors, labels)
            self.intents = [c for c in self.model.classes if c != UNKNOWN]
            self._calibrate(texts, vectors, labels)
        return self

    def _raw(
        self, model: _Ensemble, texts: Sequence[str], vectors: dict[str, np.ndarray] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Probabilities and nearest-example similarity, each text in its language's embedding space."""
        proba = np.zeros((len(texts), len(model.classes)))
        nearest = np.zeros(len(texts))
        groups: dict[str, list[int]] = {}
        for i, text in enumerate(texts):
            groups.setdefault(self.encoders.space_of(detect_language(text)), []).append(i)
        for space, rows in groups.items():
            subset = [texts[i] for i in rows]
            matrix = (
                vectors[space][rows] if vectors is not None else self.encoders.for_messages(space)(subset)
            )
            proba[rows], nearest[rows] = model.scores(subset, matrix, space)
        return proba, nearest

    def _calibrate(self, texts: list[str], vectors: dict[str, np.ndarray], labels: list[str]) -> None:
        """Out-of-fold predictions of every example: a logistic calibration of "the answer is right" per
        embedding space, and the threshold that maximises in-scope accuracy and out-of-scope recall."""
        self.calibration, self.thresholds = {}, {}
        counts = {label: labels.count(label) for label in set(labels)}
        folds = min(self.config.folds, min(counts.values()))
        if folds < 2 or len(counts) < 2:
            return
        features = np.zeros((len(texts), 3))
        predicted = np.empty(len(texts), dtype=object)
        label_array = np.array(labels, dtype=object)
        splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=0)
        for train, held in splitter.split(texts, labels):
            fold = _Ensemble(self.config).fit(
                [texts[i] for i in train], {s: v[train] for s, v in vectors.items()}, label_array[train]
            )
            proba, nearest = self._raw(
                fold, [texts[i] for i in held], {s: v[held] for s, v in vectors.items()}
            )
            features[held] = _confidence_features(proba, nearest)
            predicted[held] = np.array(fold.classes, dtype=object)[proba.argmax(axis=1)]
        correct = (predicted == label_array).astype(float)
        space_of_text = np.array([self.encoders.space_of(detect_language(t)) for t in texts])
        for space in self.encoders.spaces:
            mask = space_of_text == space
            if not mask.any() or len(set(correct[mask].tolist())) < 2:
                continue
            model = LogisticRegression(C=1.0, max_iter=1000).fit(features[mask], correct[mask])
            self.calibration[space] = model
            self.thresholds[space] = self._choose_threshold(
                model.predict_proba(features[mask])[:, 1], predicted[mask], label_array[mask]
            )

    def _choose_threshold(self, confidence: np.ndarray, predicted: np.ndarray, labels: np.ndarray) -> float:
        in_scope = labels != UNKNOWN
        best, best_score = 0.0, -1.0
        for candidate in np.unique(np.concatenate([confidence, [0.0]])):
            final = np.where((predicted != UNKNOWN) & (confidence >= candidate), predicted, UNKNOWN)
            in_acc = float(np.mean(final[in_scope] == labels[in_scope])) if in_scope.any() else 1.0
            oos_recall = float(np.mean(final[~in_scope] == UNKNOWN)) if (~in_scope).any() else 1.0
            score = (1 - self.config.oos_weight) * in_acc + self.config.oos_weight * oos_recall
            if score > best_score + 1e-9:
                best, best_score = float(candidate), score
        return best

    @property
    def threshold(self) -> float:
        """The English (default space) threshold; :attr:`thresholds` has one per space."""
        return self.thresholds.get("default", self.config.fallback_threshold)

    def predict(self, texts: Sequence[str]) -> list[IntentPrediction]:
        if self.model is None:
            raise RuntimeError("the intent classifier is not fitted")
        proba, nearest = self._raw(self.model, texts)
        features = _confidence_features(proba, nearest)
        out = []
        for i, (text, row) in enumerate(zip(texts, proba, strict=True)):
            space = self.encoders.space_of(detect_language(text))
            calibration = self.calibration.get(space)
            conf = (
                float(calibration.predict_proba(features[i : i + 1])[0, 1])
                if calibration
                else float(row.max())
            )
            threshold = self.thresholds.get(space, self.config.fallback_threshold)
            classes = self.model.classes
            order = [int(j) for j in np.argsort(-row)]
            top = classes[order[0]]
            best = next(classes[j] for j in order if classes[j] != UNKNOWN)
            out.append(
                IntentPrediction(
                    intent=top if top != UNKNOWN and conf >= threshold else UNKNOWN,
                    confidence=conf,
                    top_intent=best,
                    alternatives=[(classes[j], float(row[j])) for j in order[:3]],
                )
            )
        return out


class TfidfBaseline:
    """The bench's baseline: word + character TF-IDF and logistic regression, abstaining on its top
    probability with the threshold chosen the same way (out-of-fold on the catalog and OOS validation)."""

    def __init__(self) -> None:
        from sklearn.pipeline import FeatureUnion, make_pipeline

        features = FeatureUnion(
            [
                ("word", TfidfVectorizer(analyzer="word", ngram_range=(1, 2), sublinear_tf=True)),
                ("char", TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 4), sublinear_tf=True)),
            ]
        )
        self.pipeline = make_pipeline(features, LogisticRegression(C=10.0, max_iter=2000))
        self.threshold = 0.0

    def fit(self, examples: Sequence[LabelledText], out_of_scope: Sequence[str] = ()) -> TfidfBaseline:
        """Given the same out-of-scope messages as the model: as a class, and for its threshold."""
        texts = [e.text for e in examples] + list(out_of_scope)
        labels = [e.intent for e in examples] + [UNKNOWN] * len(out_of_scope)
        with threadpool_limits(limits=1):
            self.pipeline.fit(texts, labels)
            folds = min(3, min(labels.count(x) for x in set(labels)))
            if folds < 2:
                return self
            from sklearn.model_selection import cross_val_predict

            proba = cross_val_predict(self.pipeline, texts, labels, cv=folds, method="predict_proba")
        classes = np.array(sorted(set(labels)), dtype=object)
        predicted = classes[proba.argmax(axis=1)]
        truth = np.array(labels, dtype=object)
        in_scope = truth != UNKNOWN
        best, best_score = 0.0, -1.0
        for t in np.unique(np.concatenate([proba.max(axis=1), [0.0]])):
            final = np.where((predicted != UNKNOWN) & (proba.max(axis=1) >= t), predicted, UNKNOWN)
            oos = float(np.mean(final[~in_scope] == UNKNOWN)) if (~in_scope).any() else 1.0
            score = (float(np.mean(final[in_scope] == truth[in_scope])) + oos) / 2
            if score > best_score + 1e-9:
                best, best_score = float(t), score
        self.threshold = best
        return self

    def predict(self, texts: Sequence[str]) -> list[str]:
        proba = self.pipeline.predict_proba(list(texts))
        classes = self.pipeline.classes_
        return [
            str(classes[i]) if p[i] >= self.threshold and classes[i] != UNKNOWN else UNKNOWN
            for p, i in zip(proba, proba.argmax(1), strict=True)
        ]
