"""The churn service's machine learning, free of the service around it (no tables, no HTTP, no Kafka).

One-way dependencies, top to bottom (import-linter checks them):

- ``table``: the bring-your-own-table path (a CSV with a label column; IBM Telco);
- ``training``: fitting a model, its metrics, the versioned model store, the from-events training run;
- ``features``: features from a customer's event history as of a cutoff, point-in-time snapshots;
- ``model`` (the GBT + LR churn model and its explanations) and ``bgnbd`` (churn's use of
  ``shared.stats.bgnbd``).
"""
