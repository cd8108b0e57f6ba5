"""Churn model quality on IBM Telco (bring-your-own-table path) and CDNOW (from-events path).

Telco: fit on the package's train.csv minus the rows that also appear in its test.csv (all 2,113 test
rows are duplicated in train.csv), tune and calibrate on a validation split carved from that, report
ROC-AUC, Brier and a reliability table on test.csv, next to a logistic-regression baseline.

CDNOW: cutoff T0 = 90 days before the data ends; label = no purchase in (T0, T0 + 90 days]. Training
rows are point-in-time snapshots at earlier cutoffs whose label windows end by T0. Baselines on the same
customers, each a churn score (higher = more likely to churn): BG/NBD fitted on data up to T0, scored as
1 - P(alive) and as minus its expected purchases in the label window; days since the last purchase.

    .venv/bin/python bench/churn_quality.py [--tune-events]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from services.churn.ml import bgnbd
from services.churn.ml.features import cdnow_histories, cutoffs_before, snapshots
from services.churn.ml.table import telco_files, train_table
from services.churn.ml.training import brier, roc_auc, train_events

RESULTS = Path(__file__).parent / "results" / "churn_quality.json"


def telco() -> dict[str, float]:
    train_path, test_path = telco_files()
    started = time.perf_counter()
    run = train_table(train_path, test_path, tune=True)
    m = run.metrics
    print(
        f"\nTelco: {m['rows_fit']} fit + {m['rows_validation']} validation rows "
        f"({m['train_rows_dropped_as_in_test']} train rows dropped: they are the test rows), "
        f"{m['test_rows']} test rows, refit on all training rows: {m['refit_on_all_rows']}, "
        f"{time.perf_counter() - started:.1f} s"
    )
    print(f"  chosen: trees={m['trees']} gbt_weight={m['gbt_weight']} params={run.fit.model.params}")
    print("  reliability (test):  bin          n   mean predicted   observed")
    for row in m["test_reliability"]:
        print(
            f"                       {row['bin_low']:.1f}-{row['bin_high']:.1f}  {row['count']:5d}"
            f"   {row['mean_predicted']:14.3f}   {row['observed_rate']:8.3f}"
        )
    leaky = train_table(train_path, test_path, tune=False, drop_test_ids_from_train=False).metrics["test_auc"]
    return {
        "telco_auc": m["test_auc"],
        "telco_brier": m["test_brier"],
        "telco_lr_auc": m["test_lr_auc"],
        "telco_validation_auc": m["validation_auc"],
        "telco_train_rows": m["rows_fit"] + m["rows_validation"],
        "telco_test_rows": m["test_rows"],
        "telco_auc_if_test_rows_left_in_train": leaky,
    }


def model_choice() -> dict[str, float]:
    """LightGBM vs scikit-learn HistGradientBoosting, alone, same fit/validation split, each tuned on it."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    from services.churn.ml.table import engineer, read_table, spec_for
    from services.churn.ml.training import _split, fit_model

    train_path, test_path = telco_files()
    train, y = read_table(train_path, "churn")
    test, y_test = read_table(test_path, "churn")
    keep = ~train["customerid"].isin(set(test["customerid"]))
    train, y = train[keep].reset_index(drop=True), y[keep.to_numpy()]
    features = engineer(train)
    spec = spec_for(features, "customerid")
    X, X_test = spec.frame_matrix(features), spec.frame_matrix(engineer(test))
    fit_idx, val_idx = _split(len(y), y, None, 0.25, 7)
    categorical = np.array([False] * len(spec.numeric) + [True] * len(spec.categorical))
    best: tuple[float, object] | None = None
    for lr in (0.02, 0.05):
        for leaves in (4, 8, 16):
            for l2 in (1.0, 10.0):
                hgb = HistGradientBoostingClassifier(
                    learning_rate=lr, max_leaf_nodes=leaves, l2_regularization=l2, max_iter=2000,
                    min_samples_leaf=40, early_stopping=True, validation_fraction=0.2, n_iter_no_change=50,
                    categorical_features=categorical, random_state=7,
                ).fit(X[fit_idx], y[fit_idx])  # fmt: skip
                auc = roc_auc(y[val_idx], hgb.predict_proba(X[val_idx])[:, 1])
                if best is None or auc > best[0]:
                    best = (auc, hgb)
    assert best is not None
    lgbm = fit_model(X, y, spec, kind="table", blend=False)
    out = {
        "telco_hgb_validation_auc": best[0],
        "telco_hgb_auc": roc_auc(y_test, best[1].predict_proba(X_test)[:, 1]),  # type: ignore[attr-defined]
        "telco_lgbm_only_validation_auc": lgbm.validation_auc,
        "telco_lgbm_only_auc": roc_auc(y_test, lgbm.model.probability(X_test)),
    }
    print("\nModel choice on the validation split (GBT alone):")
    print(
        f"  HistGradientBoosting validation AUC {out['telco_hgb_validation_auc']:.4f}, "
        f"LightGBM {out['telco_lgbm_only_validation_auc']:.4f}"
    )
    return out


def cdnow(label_days: float, tune: bool) -> dict[str, float]:
    started = time.perf_counter()
    histories = cdnow_histories()
    end = max(a.time for h in histories.values() for a in h)
    t0 = end - label_days
    train_cutoffs = cutoffs_before(t0, label_days, 3, 90)
    fit = train_events(histories, train_cutoffs, label_days, tune=tune)
    test = snapshots(histories, [t0], label_days)
    model = fit.model
    p = model.probability(model.matrix(test.rows))
    y = test.labels
    # BG/NBD baseline on the same customers, fitted on everything up to T0.
    params = test.params
    assert params is not None
    palive = np.array([r["p_alive"] for r in test.rows])
    x = np.array([r["active_days"] - 1 for r in test.rows])
    age = np.array([r["tenure_days"] for r in test.rows]) / 7.0
    t_x = np.maximum(age - np.array([r["recency_days"] for r in test.rows]) / 7.0, 0.0)
    expected = bgnbd.expected_transactions(params, label_days / 7.0, x, t_x, age)
    recency = np.array([r["recency_days"] for r in test.rows])
    out = {
        "cdnow_auc": roc_auc(y, p),
        "cdnow_brier": brier(y, p),
        # Churn scores, higher = more likely to churn (y = 1: no purchase in the label window).
        "cdnow_palive_auc": roc_auc(y, 1.0 - palive),
        "cdnow_bgnbd_expected_auc": roc_auc(y, -expected),
        "cdnow_recency_auc": roc_auc(y, recency),
        # Why 1 - P(alive) ranks below chance: BG/NBD gives P(alive) = 1 to every customer without a repeat
        # purchase, and most churners are such customers.
        "cdnow_churners_without_repeat_share": float(np.mean(x[y == 1] == 0)),
        "cdnow_customers": float(len(y)),
        "cdnow_churn_rate": float(y.mean()),
        "cdnow_train_rows": float(model.metrics["snapshot_rows"]),
        "cdnow_label_days": float(label_days),
    }
    print(
        f"\nCDNOW: {len(y)} customers at T0, churn rate {y.mean():.3f}, {model.metrics['snapshot_rows']} "
        f"training snapshot rows from cutoffs {len(train_cutoffs)}, {time.perf_counter() - started:.1f} s"
    )
    print(f"  BG/NBD at T0: r={params.r:.3f} alpha={params.alpha:.3f} a={params.a:.3f} b={params.b:.3f}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--label-days", type=float, default=90)
    parser.add_argument("--tune-events", action="store_true", help="Tune the CDNOW model's GBT too (slower).")
    args = parser.parse_args()
    results = {**telco(), **model_choice(), **cdnow(args.label_days, args.tune_events)}
    print("\n| metric | value |\n|---|---|")
    for key, value in results.items():
        print(f"| {key} | {value:.4f} |")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwrote {RESULTS}")


if __name__ == "__main__":
    main()
