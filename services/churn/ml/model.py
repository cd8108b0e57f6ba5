"""The churn model: gradient-boosted trees (LightGBM) blended in log-odds with a logistic regression,
calibrated on a validation split, explained per customer by exact additive contributions.

The raw score of a row is ``w * gbt_log_odds + (1 - w) * lr_log_odds``. Its explanation is
``w * TreeSHAP(gbt) + (1 - w) * linear contributions(lr)``, one number per input feature in log-odds,
plus a base value; base + contributions == raw score exactly (TreeSHAP is exact for trees and the
linear part is exact by construction). The probability is ``calibrator(raw score)``.

LightGBM, scikit-learn and pandas are imported inside functions so ``crm --help`` stays fast.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

MODEL_FILE = "model.json"
BOOSTER_FILE = "booster.txt"


@dataclass
class FeatureSpec:
    """Which input columns the model reads, their categories, and how to say each in words."""

    numeric: list[str]
    categorical: dict[str, list[str]] = field(default_factory=dict)
    # A str.format template per feature with {value}; features without one read "<name> = <value>".
    templates: dict[str, str] = field(default_factory=dict)
    # What to say when a feature has no value (e.g. no ratings yet).
    missing: dict[str, str] = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        return [*self.numeric, *self.categorical]

    def to_dict(self) -> dict[str, Any]:
        return {
            "numeric": self.numeric,
            "categorical": self.categorical,
            "templates": self.templates,
            "missing": self.missing,
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> FeatureSpec:
        return cls(
            list(raw["numeric"]),
            dict(raw.get("categorical", {})),
            dict(raw.get("templates", {})),
            dict(raw.get("missing", {})),
        )

    def __post_init__(self) -> None:
        self._cat_index = [{c: i for i, c in enumerate(cats)} for cats in self.categorical.values()]

    def matrix(self, rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Rows of ``{feature: value}`` to the float matrix the model reads (missing/unknown = NaN)."""
        n_numeric = len(self.numeric)
        X = np.empty((len(rows), n_numeric + len(self.categorical)))
        for j, name in enumerate(self.numeric):
            # Column at a time: numpy turns None into NaN with dtype=float.
            X[:, j] = np.array([row.get(name) for row in rows], dtype=float)
        for k, name in enumerate(self.categorical):
            index = self._cat_index[k]
            X[:, n_numeric + k] = np.array([index.get(str(row.get(name))) for row in rows], dtype=float)
        return X

    def columns_matrix(self, columns: Mapping[str, Sequence[Any]], n_rows: int) -> np.ndarray:
        """Column-oriented input (``{feature: [values...]}``) to the model matrix: the fast batch path."""
        n_numeric = len(self.numeric)
        X = np.full((n_rows, n_numeric + len(self.categorical)), np.nan)
        for j, name in enumerate(self.numeric):
            if name in columns:
                X[:, j] = np.asarray(columns[name], dtype=float)
        for k, name in enumerate(self.categorical):
            if name in columns:
                index = self._cat_index[k]
                X[:, n_numeric + k] = np.array([index.get(str(v)) for v in columns[name]], dtype=float)
        return X

    def frame_matrix(self, frame: Any) -> np.ndarray:
        """A pandas DataFrame with the spec's columns to the model matrix (vectorised)."""
        n_numeric = len(self.numeric)
        X = np.full((len(frame), n_numeric + len(self.categorical)), np.nan)
        for j, name in enumerate(self.numeric):
            X[:, j] = frame[name].to_numpy(dtype=float, na_value=np.nan)
        for k, (name, cats) in enumerate(self.categorical.items()):
            codes = frame[name].astype(str).map({c: i for i, c in enumerate(cats)})
            X[:, n_numeric + k] = codes.to_numpy(dtype=float, na_value=np.nan)
        return X

    def describe(self, name: str, value: Any) -> str:
        template = self.templates.get(name)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return self.missing.get(name, f"{name} unknown")
        if template:
            try:
                return template.format(value=value)
            except (ValueError, TypeError):
                pass
        if isinstance(value, float):
            return f"{name} = {value:.3g}"
        return f"{name} = {value}"


@dataclass(frozen=True)
class Reason:
    """One feature's push on the log-odds of churn, in words."""

    feature: str
    value: Any
    weight: float
    text: str

    def render(self) -> str:
        return f"{self.text}, {self.weight:+.2f}"


@dataclass
class Calibrator:
    """Maps raw log-odds to a probability: Platt (sigmoid of a line) or isotonic (piecewise linear)."""

    kind: str
    a: float = 1.0
    b: float = 0.0
    x: list[float] = field(default_factory=list)
    y: list[float] = field(default_factory=list)

    def __call__(self, raw: np.ndarray) -> np.ndarray:
        if self.kind == "isotonic":
            return np.asarray(np.clip(np.interp(raw, np.asarray(self.x), np.asarray(self.y)), 0.0, 1.0))
        return np.asarray(1.0 / (1.0 + np.exp(-(self.a * raw + self.b))))

    @classmethod
    def fit(cls, kind: str, raw: np.ndarray, y: np.ndarray) -> Calibrator:
        if kind == "isotonic":
            from sklearn.isotonic import IsotonicRegression

            iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(raw, y)
            return cls(
                "isotonic", x=[float(v) for v in iso.X_thresholds_], y=[float(v) for v in iso.y_thresholds_]
            )
        from sklearn.linear_model import LogisticRegression

        platt = LogisticRegression(C=1e6, max_iter=1000).fit(raw.reshape(-1, 1), y)
        return cls("platt", a=float(platt.coef_[0, 0]), b=float(platt.intercept_[0]))

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "a": self.a, "b": self.b, "x": self.x, "y": self.y}


@dataclass
class LinearPart:
    """A logistic regression over standardised numerics and one-hot categoricals, kept as arrays so that
    scoring one row costs microseconds and its contributions are exact."""

    mean: np.ndarray  # per numeric feature (imputation value and centre)
    scale: np.ndarray
    coef_numeric: np.ndarray
    coef_categorical: list[np.ndarray]  # per categorical feature, one coefficient per category
    freq_categorical: list[np.ndarray]  # training frequency of each category (the base value's centre)
    intercept: float

    def design(self, X: np.ndarray, n_numeric: int) -> np.ndarray:
        numeric = X[:, :n_numeric]
        z = (np.where(np.isnan(numeric), self.mean, numeric) - self.mean) / self.scale
        blocks = [z]
        for j, coefs in enumerate(self.coef_categorical):
            codes = X[:, n_numeric + j]
            onehot = np.zeros((X.shape[0], len(coefs)))
            valid = ~np.isnan(codes)
            onehot[np.nonzero(valid)[0], codes[valid].astype(int)] = 1.0
            blocks.append(onehot)
        return np.hstack(blocks)

    def base(self) -> float:
        return self.intercept + float(
            sum(c @ f for c, f in zip(self.coef_categorical, self.freq_categorical, strict=True))
        )

    def contributions(self, X: np.ndarray, n_numeric: int) -> np.ndarray:
        numeric = X[:, :n_numeric]
        z = (np.where(np.isnan(numeric), self.mean, numeric) - self.mean) / self.scale
        out = np.empty((X.shape[0], n_numeric + len(self.coef_categorical)))
        out[:, :n_numeric] = z * self.coef_numeric
        for j, (coefs, freq) in enumerate(zip(self.coef_categorical, self.freq_categorical, strict=True)):
            codes = X[:, n_numeric + j]
            valid = ~np.isnan(codes)
            picked = np.zeros(X.shape[0])
            picked[valid] = coefs[codes[valid].astype(int)]
            out[:, n_numeric + j] = picked - float(coefs @ freq)
        return out

    def raw(self, X: np.ndarray, n_numeric: int) -> np.ndarray:
        return np.asarray(self.base() + self.contributions(X, n_numeric).sum(axis=1))

    def to_dict(self) -> dict[str, Any]:
        return {
            "mean": self.mean.tolist(),
            "scale": self.scale.tolist(),
            "coef_numeric": self.coef_numeric.tolist(),
            "coef_categorical": [c.tolist() for c in self.coef_categorical],
            "freq_categorical": [f.tolist() for f in self.freq_categorical],
            "intercept": self.intercept,
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> LinearPart:
        return cls(
            np.asarray(raw["mean"], dtype=float),
            np.asarray(raw["scale"], dtype=float),
            np.asarray(raw["coef_numeric"], dtype=float),
            [np.asarray(c, dtype=float) for c in raw["coef_categorical"]],
            [np.asarray(f, dtype=float) for f in raw["freq_categorical"]],
            float(raw["intercept"]),
        )


class ChurnModel:
    """A trained, versioned churn model: matrix building, scoring, calibration and reasons."""

    def __init__(
        self,
        *,
        version: str,
        kind: str,
        spec: FeatureSpec,
        booster: Any,
        linear: LinearPart | None,
        gbt_weight: float,
        calibrator: Calibrator,
        base_rate: float,
        metrics: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        self.version = version
        self.kind = kind
        self.spec = spec
        self.booster = booster
        self.linear = linear
        self.gbt_weight = gbt_weight if linear is not None else 1.0
        self.calibrator = calibrator
        self.base_rate = base_rate
        self.metrics = metrics or {}
        self.params = params or {}
        self.extra = extra or {}
        self._n_numeric = len(spec.numeric)

    # -- inputs -------------------------------------------------------------------------------

    def matrix(self, rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
        return self.spec.matrix(rows)

    def frame_matrix(self, frame: Any) -> np.ndarray:
        return self.spec.frame_matrix(frame)

    def columns_matrix(self, columns: Mapping[str, Sequence[Any]], n_rows: int) -> np.ndarray:
        return self.spec.columns_matrix(columns, n_rows)

    # -- scores -------------------------------------------------------------------------------

    def raw_score(self, X: np.ndarray) -> np.ndarray:
        gbt = np.asarray(self.booster.predict(X, raw_score=True, num_threads=1), dtype=float)
        if self.linear is None or self.gbt_weight >= 1.0:
            return gbt
        return self.gbt_weight * gbt + (1.0 - self.gbt_weight) * self.linear.raw(X, self._n_numeric)

    def probability(self, X: np.ndarray) -> np.ndarray:
        return self.calibrator(self.raw_score(X))

    def contributions(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-feature log-odds contributions and the base value; ``base + contrib.sum(1) == raw``."""
        shap = np.asarray(self.booster.predict(X, pred_contrib=True, num_threads=1), dtype=float)
        contrib, base = shap[:, :-1], shap[:, -1]
        if self.linear is not None and self.gbt_weight < 1.0:
            w = self.gbt_weight
            contrib = w * contrib + (1.0 - w) * self.linear.contributions(X, self._n_numeric)
            base = w * base + (1.0 - w) * self.linear.base()
        return contrib, base

    def top_reasons(
        self, contrib: np.ndarray, rows: Sequence[Mapping[str, Any]], top: int = 5
    ) -> list[list[Reason]]:
        """The ``top`` strongest contributions per row (either sign), strongest first, in words."""
        names = self.spec.names
        k = min(top, contrib.shape[1])
        out: list[list[Reason]] = []
        for i, row in enumerate(rows):
            order = np.argpartition(-np.abs(contrib[i]), k - 1)[:k]
            order = order[np.argsort(-np.abs(contrib[i][order]))]
            reasons = []
            for j in order:
                weight = float(contrib[i, j])
                if abs(weight) < 1e-9:
                    continue
                value = _plain(row.get(names[j]))
                reasons.append(Reason(names[j], value, weight, self.spec.describe(names[j], value)))
            out.append(reasons)
        return out

    # -- files --------------------------------------------------------------------------------

    def save(self, directory: Path) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        self.booster.save_model(str(directory / BOOSTER_FILE))
        meta = {
            "version": self.version,
            "kind": self.kind,
            "spec": self.spec.to_dict(),
            "linear": self.linear.to_dict() if self.linear is not None else None,
            "gbt_weight": self.gbt_weight,
            "calibrator": self.calibrator.to_dict(),
            "base_rate": self.base_rate,
            "metrics": self.metrics,
            "params": self.params,
            "extra": self.extra,
        }
        (directory / MODEL_FILE).write_text(json.dumps(meta, indent=1, default=_plain))
        return directory

    @classmethod
    def load(cls, directory: Path) -> ChurnModel:
        import lightgbm as lgb

        meta = json.loads((directory / MODEL_FILE).read_text())
        booster = lgb.Booster(model_file=str(directory / BOOSTER_FILE))
        cal = meta["calibrator"]
        return cls(
            version=meta["version"],
            kind=meta["kind"],
            spec=FeatureSpec.from_dict(meta["spec"]),
            booster=booster,
            linear=LinearPart.from_dict(meta["linear"]) if meta.get("linear") else None,
            gbt_weight=float(meta["gbt_weight"]),
            calibrator=Calibrator(cal["kind"], cal["a"], cal["b"], cal["x"], cal["y"]),
            base_rate=float(meta["base_rate"]),
            metrics=meta.get("metrics", {}),
            params=meta.get("params", {}),
            extra=meta.get("extra", {}),
        )


def _plain(value: Any) -> Any:
    """JSON-friendly scalars (numpy types to Python)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value
