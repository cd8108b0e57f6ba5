"""Fitting a :class:`ChurnModel` from a feature table, its metrics, and the versioned model store.

Protocol (no information from the evaluation data reaches any choice): the training rows are split
into a fit part and a validation part (stratified; grouped by customer when rows are point-in-time
snapshots of the same customers). Hyper-parameters, the number of trees (early stopping) and the
GBT/LR blend weight are chosen on the validation part; the calibrator is fitted on the validation
part's raw scores. Nothing is resampled.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from services.churn.ml.features import event_spec, snapshots
from services.churn.ml.model import Calibrator, ChurnModel, FeatureSpec, LinearPart
from shared.logging import get_logger

log = get_logger(__name__)

CURRENT_FILE = "CURRENT"

# Small trees, strong regularisation: churn tables are small and noisy; deep trees overfit.
PARAM_GRID: tuple[dict[str, Any], ...] = (
    {"num_leaves": 4, "min_child_samples": 50, "reg_lambda": 5.0, "colsample_bytree": 0.5, "subsample": 0.8},
    {"num_leaves": 8, "min_child_samples": 40, "reg_lambda": 10.0, "colsample_bytree": 0.5, "subsample": 0.7},
    {"num_leaves": 3, "min_child_samples": 60, "reg_lambda": 5.0, "colsample_bytree": 0.4, "subsample": 0.8},
    {
        "num_leaves": 16,
        "min_child_samples": 80,
        "reg_lambda": 20.0,
        "colsample_bytree": 0.6,
        "subsample": 0.7,
    },
)
BLEND_WEIGHTS = (1.0, 0.8, 0.65, 0.5)


@dataclass
class FitResult:
    model: ChurnModel
    validation_auc: float
    seconds: float


def roc_auc(y: np.ndarray, score: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, score))


def brier(y: np.ndarray, p: np.ndarray) -> float:
    return float(np.mean((np.asarray(p) - np.asarray(y)) ** 2))


def reliability_table(y: np.ndarray, p: np.ndarray, bins: int = 10) -> list[dict[str, float]]:
    """Equal-width probability bins: count, mean predicted, observed churn rate."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    idx = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    rows = []
    for b in range(bins):
        mask = idx == b
        if mask.any():
            rows.append(
                {
                    "bin_low": float(edges[b]),
                    "bin_high": float(edges[b + 1]),
                    "count": int(mask.sum()),
                    "mean_predicted": float(p[mask].mean()),
                    "observed_rate": float(y[mask].mean()),
                }
            )
    return rows


def _split(
    n: int, y: np.ndarray, groups: np.ndarray | None, val_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    if groups is not None:
        unique = np.unique(groups)
        val_groups = set(
            rng.choice(unique, size=max(1, int(len(unique) * val_fraction)), replace=False).tolist()
        )
        val = np.array([g in val_groups for g in groups])
        return np.nonzero(~val)[0], np.nonzero(val)[0]
    fit_idx, val_idx = [], []
    for label in (0, 1):
        members = np.nonzero(y == label)[0]
        rng.shuffle(members)
        cut = round(len(members) * val_fraction)
        val_idx.append(members[:cut])
        fit_idx.append(members[cut:])
    return np.sort(np.concatenate(fit_idx)), np.sort(np.concatenate(val_idx))


def fit_linear(X: np.ndarray, y: np.ndarray, spec: FeatureSpec, C: float = 0.3) -> LinearPart:
    from sklearn.linear_model import LogisticRegression

    n_num = len(spec.numeric)
    numeric = X[:, :n_num]
    present = ~np.isnan(numeric)
    # Columns never observed (e.g. sentiment in a purchases-only data set) get centre 0, weight ~0.
    mean = np.where(present, numeric, 0.0).sum(axis=0) / np.maximum(present.sum(axis=0), 1)
    filled = np.where(np.isnan(numeric), mean, numeric)
    scale = filled.std(axis=0) if n_num else np.ones(0)
    scale = np.where(scale > 1e-12, scale, 1.0)
    freqs = []
    for j, cats in enumerate(spec.categorical.values()):
        codes = X[:, n_num + j]
        counts = np.bincount(codes[~np.isnan(codes)].astype(int), minlength=len(cats)).astype(float)
        freqs.append(counts / max(1.0, float(len(codes))))
    # Coefficients are fitted on the design the LinearPart itself builds, so serving matches training.
    probe = LinearPart(
        mean, scale, np.zeros(n_num), [np.zeros(len(c)) for c in spec.categorical.values()], freqs, 0.0
    )
    design = probe.design(X, n_num)
    lr = LogisticRegression(C=C, max_iter=5000).fit(design, y)
    coef = lr.coef_[0]
    cat_coefs, offset = [], n_num
    for cats in spec.categorical.values():
        cat_coefs.append(coef[offset : offset + len(cats)].copy())
        offset += len(cats)
    return LinearPart(mean, scale, coef[:n_num].copy(), cat_coefs, freqs, float(lr.intercept_[0]))


def _train_gbt(
    X: np.ndarray,
    y: np.ndarray,
    spec: FeatureSpec,
    params: dict[str, Any],
    rounds: int,
    valid: tuple[np.ndarray, np.ndarray] | None,
    seed: int,
    monotone: list[int] | None,
    learning_rate: float = 0.02,
) -> Any:
    import lightgbm as lgb

    cat_idx = list(range(len(spec.numeric), len(spec.names)))
    full = {
        "objective": "binary",
        "learning_rate": learning_rate,
        "subsample_freq": 1,
        "verbose": -1,
        "num_threads": 1,
        "seed": seed,
        "deterministic": True,
        "force_row_wise": True,
        "cat_smooth": 20,
        "min_data_per_group": 50,
        **params,
    }
    if monotone:
        full["monotone_constraints"] = monotone
        full["monotone_constraints_method"] = "advanced"
    train = lgb.Dataset(X, y, categorical_feature=cat_idx, feature_name=spec.names, free_raw_data=False)
    callbacks: list[Any] = []
    valid_sets = []
    if valid is not None:
        valid_sets = [lgb.Dataset(valid[0], valid[1], reference=train, categorical_feature=cat_idx)]
        callbacks.append(lgb.early_stopping(150, verbose=False))
    return lgb.train(full, train, num_boost_round=rounds, valid_sets=valid_sets, callbacks=callbacks)


def fit_model(
    X: np.ndarray,
    y: np.ndarray,
    spec: FeatureSpec,
    *,
    kind: str,
    groups: np.ndarray | None = None,
    tune: bool = True,
    calibration: str = "platt",
    val_fraction: float = 0.25,
    seed: int = 7,
    max_rounds: int = 3000,
    learning_rate: float = 0.02,
    blend: bool = True,
    refit: bool = False,
    monotone: dict[str, int] | None = None,
    extra: dict[str, Any] | None = None,
) -> FitResult:
    """Choose parameters on a validation split carved from ``X``, fit, calibrate on that split."""
    started = time.perf_counter()
    fit_idx, val_idx = _split(len(y), y, groups, val_fraction, seed)
    Xf, yf, Xv, yv = X[fit_idx], y[fit_idx], X[val_idx], y[val_idx]
    mono = [int((monotone or {}).get(n, 0)) for n in spec.names] if monotone else None
    grid = PARAM_GRID if tune else PARAM_GRID[:1]
    linear = fit_linear(Xf, yf, spec) if blend else None
    lr_val = linear.raw(Xv, len(spec.numeric)) if linear is not None else None
    best: tuple[float, dict[str, Any], float, Any] | None = None
    for params in grid:
        booster = _train_gbt(Xf, yf, spec, params, max_rounds, (Xv, yv), seed, mono, learning_rate)
        gbt_val = booster.predict(Xv, raw_score=True, num_iteration=booster.best_iteration)
        for w in BLEND_WEIGHTS if linear is not None else (1.0,):
            raw = gbt_val if lr_val is None else w * gbt_val + (1 - w) * lr_val
            auc = roc_auc(yv, raw)
            log.info(
                "churn_candidate",
                params=params,
                weight=w,
                trees=booster.best_iteration,
                val_auc=round(auc, 4),
            )
            if best is None or auc > best[0] + 1e-9:
                best = (auc, params, w, booster)
    assert best is not None
    val_auc, params, weight, booster = best
    trees = max(1, int(booster.best_iteration or max_rounds))
    # Re-train without the validation set attached so the saved booster holds exactly `trees` trees.
    booster = _train_gbt(Xf, yf, spec, params, trees, None, seed, mono, learning_rate)
    raw_val = booster.predict(Xv, raw_score=True)
    if linear is not None and weight < 1.0:
        raw_val = weight * raw_val + (1 - weight) * linear.raw(Xv, len(spec.numeric))
    calibrator = Calibrator.fit(calibration, np.asarray(raw_val), yv)
    p_val = calibrator(np.asarray(raw_val))
    if refit:
        # Same choices, all training rows: more data for the trees and the LR; the calibrator stays the one
        # fitted on validation scores of the fit-part models (the refit models' scores are on the same scale).
        booster = _train_gbt(
            X, y, spec, params, int(trees / (1 - val_fraction)), None, seed, mono, learning_rate
        )
        if linear is not None:
            linear = fit_linear(X, y, spec)
    version = f"{kind}-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S')}-{np.random.default_rng().integers(1 << 16):04x}"
    metrics = {
        "validation_auc": val_auc,
        "validation_brier": brier(yv, p_val),
        "rows_fit": len(fit_idx),
        "rows_validation": len(val_idx),
        "positive_rate": float(y.mean()),
        "trees": trees,
        "gbt_weight": weight if linear is not None else 1.0,
        "refit_on_all_rows": refit,
    }
    model = ChurnModel(
        version=version,
        kind=kind,
        spec=spec,
        booster=booster,
        linear=linear if weight < 1.0 else None,
        gbt_weight=weight,
        calibrator=calibrator,
        base_rate=float(y.mean()),
        metrics=metrics,
        params={**params, "learning_rate": learning_rate, "calibration": calibration},
        extra=extra,
    )
    return FitResult(model, val_auc, time.perf_counter() - started)


def evaluate(model: ChurnModel, X: np.ndarray, y: np.ndarray, prefix: str = "test") -> dict[str, Any]:
    p = model.probability(X)
    return {
        f"{prefix}_auc": roc_auc(y, p),
        f"{prefix}_brier": brier(y, p),
        f"{prefix}_rows": len(y),
        f"{prefix}_reliability": reliability_table(y, p),
    }


# -- the versioned model store ------------------------------------------------------------------


def model_root(data_dir: str | Path, kind: str) -> Path:
    return Path(data_dir) / "models" / kind


def save_version(model: ChurnModel, data_dir: str | Path, *, make_current: bool = True) -> Path:
    """Write ``models/<kind>/<version>/`` (booster + metadata with metrics) and point CURRENT at it."""
    root = model_root(data_dir, model.kind)
    directory = model.save(root / model.version)
    if make_current:
        tmp = root / f".{CURRENT_FILE}.tmp"
        tmp.write_text(model.version)
        tmp.replace(root / CURRENT_FILE)
    log.info("churn_model_saved", version=model.version, path=str(directory), metrics=_scalars(model.metrics))
    return directory


def load_current(data_dir: str | Path, kind: str) -> ChurnModel | None:
    root = model_root(data_dir, kind)
    pointer = root / CURRENT_FILE
    if not pointer.exists():
        return None
    directory = root / pointer.read_text().strip()
    if not directory.exists():
        return None
    return ChurnModel.load(directory)


def list_versions(data_dir: str | Path, kind: str) -> list[dict[str, Any]]:
    root = model_root(data_dir, kind)
    if not root.exists():
        return []
    current = (root / CURRENT_FILE).read_text().strip() if (root / CURRENT_FILE).exists() else None
    out = []
    for directory in sorted(p for p in root.iterdir() if p.is_dir()):
        meta_file = directory / "model.json"
        if meta_file.exists():
            meta = json.loads(meta_file.read_text())
            out.append(
                {
                    "version": meta["version"],
                    "current": meta["version"] == current,
                    **_scalars(meta["metrics"]),
                }
            )
    return out


def _scalars(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in metrics.items() if isinstance(v, int | float | str)}


def train_events(
    histories: dict[str, list[Any]],
    cutoffs: Sequence[float],
    label_days: float,
    *,
    tune: bool = False,
    calibration: str = "platt",
    progress: bool = False,
    source: str = "events",
    learning_rate: float = 0.05,
    max_rounds: int = 800,
) -> FitResult:
    """The from-events model: point-in-time snapshots at ``cutoffs`` (each label window must end inside
    the data), GBT (+LR blend when it helps on validation), BG/NBD parameters of the last cutoff kept
    for serving P(alive)."""
    snap = snapshots(histories, cutoffs, label_days, progress=progress)
    spec = event_spec()
    X = spec.matrix(snap.rows)
    # Only the latest cutoff's BG/NBD parameters are used online, where "as of" is later still.
    params = snap.params.as_dict() if snap.params is not None else None
    result = fit_model(
        X,
        snap.labels,
        spec,
        kind="events",
        groups=snap.groups,
        tune=tune,
        calibration=calibration,
        # Longer silence can only raise churn risk; recent activity can only lower it.
        monotone={"recency_days": 1, "activity_30": -1, "activity_90": -1},
        learning_rate=learning_rate,
        max_rounds=max_rounds,
        extra={"bgnbd": params, "label_days": label_days, "source": source, "cutoffs": list(cutoffs)},
    )
    result.model.metrics.update({"snapshot_rows": len(snap.rows), "customers": len(histories)})
    return result
